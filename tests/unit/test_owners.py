"""Holders of accepted sockets (pre-forked servers): hold-back until the holder's close, the
/proc fallback, unresolved candidates, and --pid/--children on the holder, with exact counts."""

from __future__ import annotations

import pytest

from tests.unit.helpers import record
from tracer.explain.correlate import SETTLE_NS, Correlator
from tracer.explain.owners import GRACE_NS, HOLD_NS, OwnerResolver, PidScope
from tracer.explain.rules import explain
from tracer.model.record import FLAG_BITS, RecordType

pytestmark = pytest.mark.unit

MASTER, W1, W2 = 100, 101, 102
T = 10_000_000_000


def accepted(skaddr: int, rport: int, ts: int = T, **kw):
    """A reset received by an accepted socket: its owner is only the listener's (the master)."""
    base = dict(type=RecordType.RESET_RECEIVED, ts_ns=ts, state="ESTABLISHED", pid=MASTER, comm="nginx",
                thread="nginx", cur_pid=7, skaddr=skaddr, ino=skaddr & 0xffff, birth_ns=T - 10**9,
                laddr="10.0.0.2", lport=8080, raddr="10.0.0.1", rport=rport, netns=2,
                flags_raw=FLAG_BITS["accepted"] | FLAG_BITS["sock_known"], owner_source="listener")
    base.update(kw)
    return record(**base)


def owner(of, pid: int, ppid: int = MASTER, ts: int = T + 1_000_000):
    """The OWNER record the kernel sends when the holder closes the socket."""
    return record(type=RecordType.OWNER, ts_ns=ts, skaddr=of.skaddr, netns=of.netns, birth_ns=of.birth_ns,
                  pid=pid, comm="nginx", thread="nginx", cur_pid=ppid, owner_source="close")


class FakeProc:
    def __init__(self, held: dict[int, int]) -> None:
        self.held = held            # inode -> pid
        self.walked: list[list[int]] = []

    def tree(self, root):
        return [MASTER, W1, W2] if root == MASTER else [root]

    def holders(self, pids, inodes):
        pids = list(pids)
        self.walked.append(pids)
        return {i: (self.held[i], "nginx") for i in inodes if self.held.get(i) in pids}

    def parent(self, pid):
        return MASTER if pid in (W1, W2) else 1


def test_a_record_waits_for_its_holders_close_and_takes_its_pid():
    c = Correlator()
    r = accepted(0x1000, 40000)
    c.feed([r])
    assert c.release(T + SETTLE_NS * 5) == []              # settled, but its holder is unknown
    c.feed([owner(r, W2)])
    assert c.release(T + SETTLE_NS * 6) == []              # the holder's close is the last read
    c.feed([])                                             # the next read: nothing more
    (inc,) = c.release(T + SETTLE_NS * 7)
    e = explain(inc)
    assert (e.pid, e.comm) == (W2, "nginx")
    assert f"owner nginx pid {W2} (from its close)" in e.evidence
    assert c.owners.resolved["close"] == 1


def test_the_other_end_waits_too_so_both_ends_stay_linked():
    c = Correlator(peer_is_local=lambda a: True)
    srv = accepted(0x1000, 40000)
    cli = record(type=RecordType.RESET_SENT, ts_ns=T - 1000, state="CLOSE", reason="TCP_STATE", pid=7,
                 comm="client", skaddr=0x2000, netns=3, laddr="10.0.0.1", lport=40000, raddr="10.0.0.2",
                 rport=8080, flags_raw=FLAG_BITS["connected"] | FLAG_BITS["active"], owner_source="connect")
    c.feed([cli, srv])
    assert c.release(T + SETTLE_NS * 5) == []
    c.feed([owner(srv, W1)])
    assert c.release(T + SETTLE_NS * 6) == []
    c.feed([])
    out = c.release(T + SETTLE_NS * 7)
    assert len(out) == 2
    received = next(i for i in out if i.primary.type is RecordType.RESET_RECEIVED)
    assert received.primary.pid == W1 and received.peer is not None and received.peer.pid == 7


def test_a_holder_that_keeps_the_socket_is_found_in_proc_within_its_listeners_tree():
    r = accepted(0x1000, 40000)
    proc = FakeProc({r.ino: W1})
    c = Correlator(owners=OwnerResolver(lookup=proc))
    c.feed([r])
    assert c.release(T + HOLD_NS - 1) == []
    (inc,) = c.release(T + HOLD_NS)
    e = explain(inc)
    assert e.pid == W1 and "owner nginx pid 101 (found holding the socket in /proc)" in e.evidence
    assert proc.walked == [[MASTER, W1, W2]]


def test_when_nobody_tells_the_candidates_are_named_and_no_pid_is_guessed():
    r = accepted(0x1000, 40000)
    c = Correlator(owners=OwnerResolver(lookup=FakeProc({})))
    c.feed([r])
    assert c.release(T + HOLD_NS) == []                    # /proc missed: its close may be in flight
    assert c.release(T + HOLD_NS + GRACE_NS - 1) == []
    (inc,) = c.release(T + HOLD_NS + GRACE_NS)
    e = explain(inc)
    assert e.pid is None and e.comm == "nginx" and e.owner_candidates == (MASTER, W1, W2)
    assert "nginx pid 100 or one of its child processes (101, 102)" in e.explanation
    assert e.to_json()["owner_candidates"] == [MASTER, W1, W2]
    assert c.owners.unresolved == 1


def test_a_late_owner_record_within_the_grace_still_resolves():
    r = accepted(0x1000, 40000)
    c = Correlator(owners=OwnerResolver(lookup=FakeProc({})))
    c.feed([r])
    assert c.release(T + HOLD_NS) == []
    c.feed([owner(r, W2, ts=T + HOLD_NS + 1)])
    (inc,) = c.release(T + HOLD_NS + 10)
    assert inc.primary.pid == W2


def test_proc_walks_are_batched_and_rate_limited_per_listener_owner():
    proc = FakeProc({})
    c = Correlator(owners=OwnerResolver(lookup=proc))
    c.feed([accepted(0x1000 + i, 40000 + i, ts=T + i * 20_000_000) for i in range(10)])
    for step in range(0, 200_000_000, 10_000_000):     # a release every 10 ms for 200 ms
        c.release(T + HOLD_NS + step)
    assert 2 <= len(proc.walked) <= 3                   # not one walk per record or per release


def test_replay_without_owner_records_leaves_the_holder_unresolved():
    c = Correlator()
    c.feed([accepted(0x1000, 40000)])
    (inc,) = c.release(None)
    assert inc.primary.pid == 0 and inc.primary.owner_candidates == (MASTER,)
    assert "nginx pid 100 or a process it handed the connection to" in explain(inc).explanation


def test_pid_of_a_worker_keeps_its_own_sockets_and_counts_the_siblings_dropped():
    mine, theirs = accepted(0x1000, 40000), accepted(0x1100, 40001)
    err = accepted(0x1100, 40001, ts=T + 1000, type=RecordType.ABORT, errno="ECONNRESET", errno_raw=104,
                   state="CLOSE")
    c = Correlator(owners=OwnerResolver(scope=PidScope(frozenset({W1}))))
    c.feed([mine, theirs, err, owner(mine, W1), owner(theirs, W2)])
    out = c.release(None)
    assert [i.primary.pid for i in out] == [W1]
    assert dict(c.owners.dropped) == {("received", ""): 1, ("abort", "104"): 1}


def test_pid_of_the_master_keeps_none_of_its_workers_sockets_unless_children():
    r = accepted(0x1000, 40000)
    for scope, kept in ((PidScope(frozenset({MASTER})), 0), (PidScope(frozenset({MASTER}), children=True), 1)):
        c = Correlator(owners=OwnerResolver(scope=scope))
        # the worker has exited by now: its parent, carried by the OWNER record, decides
        c.feed([r, owner(r, 555, ppid=MASTER)])
        assert len(c.release(None)) == kept


def test_records_with_a_known_owner_never_wait():
    c = Correlator()
    c.feed([record(ts_ns=T, type=RecordType.RESET_SENT, reason="TCP_ABORT_ON_CLOSE", owner_source="close")])
    c.feed([])                                             # the next read (the last one's end waits one)
    assert len(c.release(T + SETTLE_NS + 1)) == 1
