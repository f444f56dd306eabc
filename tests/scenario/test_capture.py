"""The capture core against the real kernel: real sockets in throwaway network namespaces.

Each test builds its own namespaces, so its records are the ones whose netns is its own; the
BPF program is compiled once for the session (conftest `capture`). The ground truth is what
the peers' socket calls raised and what the test arranged (who closed, how, when).
"""

from __future__ import annotations

import time

import pytest

from tests.conftest import start_capture
from tests.lab import kernel
from tests.lab.netns import Topology
from tests.lab.scenarios import silenced
from tracer.explain.pipeline import explain_stream
from tracer.model.record import RecordType

pytestmark = pytest.mark.scenario

RST_SENT = RecordType.RESET_SENT
RST_RECV = RecordType.RESET_RECEIVED
ABORT = RecordType.ABORT


class Scope:
    """Records of this test: its namespaces, from its start (netns inodes are reused)."""

    def __init__(self, topo) -> None:
        self.since = time.monotonic_ns()
        self.client = topo.netns_inode(topo.client)
        self.server = topo.netns_inode(topo.server)

    def found(self, capture, rtype, side="client"):
        """The records of one type on one side, waited for; if none came, the assertion that
        follows says what the kernel counted instead (tests/lab/runner.py Collector.account)."""
        pred = self.client_rec(rtype) if side == "client" else self.server_rec(rtype)
        got = capture.wait_for(pred)
        assert got, f"no {rtype.name} record on the {side}: " + capture.account(getattr(self, side), self.since)
        return got

    def client_rec(self, rtype):
        return lambda r: r.netns == self.client and r.ts_ns >= self.since and r.type is rtype

    def server_rec(self, rtype):
        return lambda r: r.netns == self.server and r.ts_ns >= self.since and r.type is rtype


def one(records, **match):
    found = [r for r in records if all(getattr(r, k) == v for k, v in match.items())]
    assert len(found) == 1, f"expected one record with {match}, got {len(found)}: {found}"
    return found[0]


def abort_for(capture, rec, timeout=3.0):
    """The error report on the same socket as `rec`. Socket addresses are reused at once, so
    same address, same namespace, and within 50 ms of the reset (the kernel reports the error
    in the same call chain; an active reset is traced after it is sent, so either may be first)."""
    got = capture.wait_for(lambda r: r.type is ABORT and r.skaddr == rec.skaddr and r.netns == rec.netns
                           and abs(r.ts_ns - rec.ts_ns) < 50_000_000, timeout=timeout)
    assert got, f"no error report on the socket of {rec}"
    return got[0]


def assert_reason(capture, rec, name):
    """The kernel's reason on kernels that give one; elsewhere the record has none and the
    tool's explanation of it says `inferred:NAME`."""
    if kernel.gives_reasons():
        assert rec.reason == name
        return
    assert rec.reason is None
    mine = [r for r in capture.snapshot() if r.netns == rec.netns]
    got = [x for x in explain_stream(mine) if x.event == "reset_sent" and x.ts_ns == rec.ts_ns]
    assert [x.reason for x in got] == [f"inferred:{name}"]


def assert_untraced(capture, pred):
    """Before 6.10 the kernel sends this reset without a tracepoint: the tool must not invent one."""
    assert capture.wait_for(pred, timeout=1.0) == []


@pytest.mark.parametrize("v6", [False, True], ids=["ipv4", "ipv6"])
def test_connect_to_closed_port(capture, peers, v6):
    with Topology.pair() as topo:
        sc = Scope(topo)
        dst = topo.server.v6 if v6 else topo.server.v4
        cl = peers(topo, topo.client, "tte-client", f"connect host={dst} port=9")
        assert cl.next("connect").get("error") == "ECONNREFUSED"
        cl.finish()

        recv = capture.wait_for(sc.client_rec(RST_RECV))
        r = one(recv)
        assert (r.pid, r.comm, r.state) == (cl.pid, "tte-client", "SYN_SENT")
        assert (r.raddr, r.rport, r.laddr) == (dst, 9, topo.client.v6 if v6 else topo.client.v4)
        assert r.family_name == ("ipv6" if v6 else "ipv4")
        assert abort_for(capture, r).errno == "ECONNREFUSED"

        if not kernel.traces_every_reset():
            assert_untraced(capture, sc.server_rec(RST_SENT))
            return
        s = one(sc.found(capture, RST_SENT, "server"))
        # Nobody owns a closed port: the kernel answered with no socket at all.
        assert (s.reason, s.state, s.pid) == ("NO_SOCKET", None, 0)
        assert s.flag("no_socket") and s.segment_was_syn
        assert (s.laddr, s.lport, s.raddr, s.rport) == (dst, 9, r.laddr, r.lport)


@pytest.mark.parametrize("v6", [False, True], ids=["ipv4", "ipv6"])
def test_close_with_unread_data(capture, peers, v6):
    with Topology.pair() as topo:
        sc = Scope(topo)
        dst = topo.server.v6 if v6 else topo.server.v4
        sv = peers(topo, topo.server, "tte-server",
                   f"listen port=8080 {'v6=1' if v6 else ''};accept;sleep s=0.3;close")
        sv.next("listen")
        cl = peers(topo, topo.client, "tte-client", f"connect host={dst} port=8080;send n=100;sleep s=0.6;recv")
        sv.finish()
        cl.finish()
        assert cl.result("recv")[0].get("error") == "ECONNRESET"

        s = one(sc.found(capture, RST_SENT, "server"))
        assert s.state == "CLOSE"
        assert_reason(capture, s, "TCP_ABORT_ON_CLOSE")
        # Owner: the server process, inherited from its listener (an abortive close goes
        # ESTABLISHED -> CLOSE directly, with no FIN_WAIT1 to capture the closer).
        assert (s.pid, s.comm, s.owner_source) == (sv.pid, "tte-server", "listener")
        assert s.unread_bytes == 100
        assert (s.lport, s.laddr) == (8080, dst)

        r = one(sc.found(capture, RST_RECV, "client"))
        assert (r.pid, r.comm, r.state) == (cl.pid, "tte-client", "ESTABLISHED")
        assert (r.rport, r.lport) == (8080, s.rport)
        assert abort_for(capture, r).errno == "ECONNRESET"


def test_so_linger_zero_close(capture, peers):
    with Topology.pair() as topo:
        sc = Scope(topo)
        sv = peers(topo, topo.server, "tte-server", "listen port=8080;accept;recv timeout=5;close")
        sv.next("listen")
        cl = peers(topo, topo.client, "tte-client", f"connect host={topo.server.v4} port=8080;linger0;sleep s=0.2;close")
        cl.finish()
        sv.finish()
        assert sv.result("recv")[0].get("error") == "ECONNRESET"

        s = one(sc.found(capture, RST_SENT, "client"))
        assert (s.state, s.pid, s.comm) == ("CLOSE", cl.pid, "tte-client")
        assert_reason(capture, s, "TCP_STATE")
        assert s.flag("active") and s.flag("linger")

        r = one(sc.found(capture, RST_RECV, "server"))
        # Received in softirq, possibly in the client's context: the owner is still the server.
        assert (r.pid, r.comm, r.state) == (sv.pid, "tte-server", "ESTABLISHED")
        assert abort_for(capture, r).errno == "ECONNRESET"


def test_peer_writes_after_our_close_timewait_reset(capture, peers):
    """The seed scenario: the client gives up and closes; the server's late write meets the
    client's timewait socket (TCP_TIMEWAIT_SOCKET), and the server gets EPIPE in CLOSE_WAIT."""
    with Topology.pair() as topo:
        sc = Scope(topo)
        sv = peers(topo, topo.server, "tte-server",
                   "listen port=8080;accept;recv timeout=5;sleep s=0.5;send_once n=1000;sleep s=0.2;send_once n=1000")
        sv.next("listen")
        cl = peers(topo, topo.client, "tte-client",
                   f"connect host={topo.server.v4} port=8080;send n=10;recv timeout=0.2;close")
        cl.finish()
        sv.finish()
        assert cl.result("recv")[0].get("error") == "TIMEOUT"
        assert sv.result("send_once")[0].get("n") == 1000          # the first late write "succeeds"
        assert sv.result("send_once")[1].get("error") == "EPIPE"   # the next one: Broken pipe

        if kernel.traces_every_reset():
            s = one(sc.found(capture, RST_SENT, "client"))
            assert (s.reason, s.state) == ("TCP_TIMEWAIT_SOCKET", "TIME_WAIT")
            assert s.flag("timewait") and s.flag("from_closed")
            # The timewait socket has no owner of its own: it comes from the connection it replaced.
            assert (s.pid, s.comm) == (cl.pid, "tte-client")
            assert s.close_ns is not None and 0.2e9 < s.ts_ns - s.close_ns < 0.6e9  # 0.5 s late - 0.2 s timeout
        else:
            assert_untraced(capture, sc.client_rec(RST_SENT))

        r = one(sc.found(capture, RST_RECV, "server"))
        assert (r.state, r.pid, r.comm) == ("CLOSE_WAIT", sv.pid, "tte-server")
        assert r.fin_ns is not None and 0.2e9 < r.ts_ns - r.fin_ns < 0.6e9
        assert abort_for(capture, r).errno == "EPIPE"


def test_keepalive_timeout_with_peer_blackholed(capture, peers):
    with Topology.pair() as topo:
        sc = Scope(topo)
        cl = silenced(topo, peers, "keepalive idle=1 intvl=1 cnt=2;wait;recv timeout=15")
        assert cl.result("recv")[0].get("error") == "ETIMEDOUT"

        s = one(sc.found(capture, RST_SENT, "client"))
        assert (s.reason, s.state, s.pid, s.comm) == ("TCP_KEEPALIVE_TIMEOUT", "ESTABLISHED", cl.pid, "tte-client")
        assert s.flag("keepalive")
        assert abort_for(capture, s).errno == "ETIMEDOUT"


def test_user_timeout_with_retransmissions(capture, peers):
    with Topology.pair() as topo:
        sc = Scope(topo)
        cl = silenced(topo, peers, "user_timeout ms=1500;wait;send n=100;recv timeout=15")
        assert cl.result("recv")[0].get("error") == "ETIMEDOUT"

        a = one(sc.found(capture, ABORT))
        assert (a.errno, a.pid, a.comm) == ("ETIMEDOUT", cl.pid, "tte-client")
        assert a.retrans >= 2 and a.total_retrans >= 2
        # A retransmission timeout sends no reset.
        capture.settle()
        assert not [r for r in capture.snapshot() if sc.client_rec(RST_SENT)(r)]


def test_reset_injected_by_nftables_reject(capture, peers):
    with Topology.pair() as topo:
        sc = Scope(topo)
        sv = peers(topo, topo.server, "tte-server", "listen port=8080;accept;wait")
        sv.next("listen")
        cl = peers(topo, topo.client, "tte-client",
                   f"connect host={topo.server.v4} port=8080;wait;send n=10;recv timeout=5")
        cl.next("wait")
        topo.nft(topo.server, "table inet tte_reject {\n chain input {\n type filter hook input priority 0;\n"
                              " tcp dport 8080 reject with tcp reset\n }\n}\n")
        cl.release()
        cl.finish()
        assert cl.result("recv")[0].get("error") == "ECONNRESET"

        r = one(sc.found(capture, RST_RECV, "client"))
        assert (r.pid, r.comm, r.state, r.rport) == (cl.pid, "tte-client", "ESTABLISHED", 8080)
        assert abort_for(capture, r).errno == "ECONNRESET"
        capture.settle()
        # nf_send_reset() builds the RST outside TCP: no host logs a reset it sent. (Checked
        # before the server closes: its FIN to the dead client would draw a real NO_SOCKET reset.)
        assert not [x for x in capture.snapshot() if sc.client_rec(RST_SENT)(x) or sc.server_rec(RST_SENT)(x)]
        sv.release()


@pytest.mark.parametrize("idle", [1.0, 2.5])
def test_idle_time_before_a_reset(capture, peers, idle):
    with Topology.pair() as topo:
        sc = Scope(topo)
        sv = peers(topo, topo.server, "tte-server",
                   f"listen port=8080;accept;recv;send n=10;sleep s={idle};linger0;close")
        sv.next("listen")
        cl = peers(topo, topo.client, "tte-client", f"connect host={topo.server.v4} port=8080;send n=10;recv;recv timeout=10")
        cl.finish()
        sv.finish()
        r = one(sc.found(capture, RST_RECV, "client"))
        assert r.idle_s is not None and abs(r.idle_s - idle) <= 0.2, r.idle_s


def test_idle_time_of_a_connection_reused_after_idle(capture, peers):
    """The reused-pool case: the client's own write meets the reset; it is the trigger, and the
    idle time is the quiet period before it."""
    with Topology.pair() as topo:
        sc = Scope(topo)
        sv = peers(topo, topo.server, "tte-server", "listen port=8080;accept;recv;send n=10;sleep s=1.5;close;sleep s=1")
        sv.next("listen")
        cl = peers(topo, topo.client, "tte-client",
                   f"connect host={topo.server.v4} port=8080;send n=10;recv;sleep s=2;send_once n=10;sleep s=0.2;recv timeout=5")
        cl.finish()
        sv.finish()
        r = one(sc.found(capture, RST_RECV, "client"))
        assert r.state == "CLOSE_WAIT" and abs(r.idle_s - 2.0) <= 0.2, (r.state, r.idle_s)


def test_pid_filter_keeps_only_the_owners_softirq_resets(peers):
    """--pid P in the kernel: a reset received in softirq on P's socket is kept; the same reset
    on another process's socket is dropped (and counted as filtered)."""
    from tracer.model.options import Options

    with Topology.pair() as topo:
        sc = Scope(topo)
        keep = peers(topo, topo.client, "tte-keep", f"wait;connect host={topo.server.v4} port=8080;recv timeout=10")
        drop = peers(topo, topo.client, "tte-drop", f"wait;connect host={topo.server.v4} port=8081;recv timeout=10")
        cap, col = start_capture(Options(pids=frozenset({keep.pid})))
        try:
            servers = [peers(topo, topo.server, "tte-server", f"listen port={port};accept;sleep s=0.2;linger0;close")
                       for port in (8080, 8081)]
            for sv in servers:
                sv.next("listen")
            keep.release()
            drop.release()
            for pp in servers + [keep, drop]:
                pp.finish()
            assert keep.result("recv")[0].get("error") == "ECONNRESET", (keep.lines, servers[0].lines)
            assert drop.result("recv")[0].get("error") == "ECONNRESET", (drop.lines, servers[1].lines)
            col.wait_for(sc.client_rec(RST_RECV), timeout=3)
            col.settle()
            got = [r for r in col.snapshot() if sc.client_rec(RST_RECV)(r)]
            assert [(r.pid, r.comm) for r in got] == [(keep.pid, "tte-keep")]
            assert cap.counters().filtered >= 1
        finally:
            col.stop()
            cap.close()


def test_ten_thousand_clean_connections_produce_no_resets(capture):
    """Clean FIN closes: no client sees a reset or an abort, nothing is lost, the socket table
    empties, and every reset the kernel itself sent (it does answer a few stray ACKs at the
    listener with TCP_FLAGS under this churn) is recorded exactly: records == OutRsts."""
    import socket
    import threading

    from tests.lab.netns import in_netns

    n = 10_000
    with Topology.pair() as topo:
        sc = Scope(topo)
        before = {h: topo.nstat(h).get("TcpOutRsts", 0) for h in (topo.client, topo.server)}
        counted_before = capture.capture.counters()
        lost_before = counted_before.lost
        with in_netns(topo.server.name):
            lsock = socket.socket()
            lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            lsock.bind((topo.server.v4, 8080))
            lsock.listen(1024)

        def serve():
            for _ in range(n):
                c, _ = lsock.accept()
                c.recv(16)  # EOF: the client closed first
                c.close()

        t = threading.Thread(target=serve, daemon=True)
        t.start()
        deadline = time.monotonic() + 120
        done = 0
        with in_netns(topo.client.name):
            for _ in range(n):
                s = socket.create_connection((topo.server.v4, 8080), timeout=5)
                s.close()
                done += 1
                if time.monotonic() > deadline:
                    break
        t.join(timeout=30)
        # A stray ACK of the churn may still be answered while we read the counters. The kernel
        # fires tcp_send_reset before it counts OutRsts (tcp_v4_send_reset), so every reset
        # counted by the first read has a record before `until`, and every record before `until`
        # is counted by the second read: the tool's count must lie between the two, exactly.
        sent = {h: topo.nstat(h).get("TcpOutRsts", 0) - before[h] for h in (topo.client, topo.server)}
        until = time.monotonic_ns()
        capture.settle(0.5)
        # and every record submitted by now has been read: under a full suite the polling
        # thread lagged more than the settle period (19 records read of 20 the kernel counted)
        capture.catch_up()
        sent_after = {h: topo.nstat(h).get("TcpOutRsts", 0) - before[h] for h in (topo.client, topo.server)}
        lsock.close()
        assert done == n
        mine = [r for r in capture.snapshot() if r.netns in (sc.client, sc.server) and sc.since <= r.ts_ns <= until]
        assert [r for r in mine if r.type is not RST_SENT] == []          # no client saw a reset
        for host, ns in ((topo.client, sc.client), (topo.server, sc.server)):
            got = len([r for r in mine if r.netns == ns])
            now = capture.capture.counters()
            assert sent[host] <= got <= sent_after[host], (
                host.name, sent[host], got, sent_after[host],
                f"meanwhile, host-wide: {now.lost - lost_before} lost, "
                f"{now.summarized - counted_before.summarized} summarized in storms")
        assert capture.capture.counters().lost == lost_before
        used, bound = capture.capture.table_usage()["socks"]
        # Entries end at tcp_destroy_sock: what remains is live sockets, far below the bound.
        assert used < 2000 <= bound
        closed_used, closed_bound = capture.capture.table_usage()["closed"]
        assert closed_used <= closed_bound


def test_pid_filter_on_a_server_that_listened_before_the_tracer(peers):
    """The listener predates the tracer: its accepted connections still belong to it (preloaded
    from /proc), so --pid keeps their resets."""
    from tracer.model.options import Options

    with Topology.pair() as topo:
        sc = Scope(topo)
        sv = peers(topo, topo.server, "tte-old-server", "listen port=8080;wait;accept;sleep s=0.3;close")
        sv.next("listen")
        cap, col = start_capture(Options(pids=frozenset({sv.pid})))
        try:
            sv.release()
            cl = peers(topo, topo.client, "tte-client", f"connect host={topo.server.v4} port=8080;send n=100;"
                                                        "sleep s=0.6;recv")
            cl.finish()
            sv.finish()
            s = one(col.wait_for(sc.server_rec(RST_SENT)))
            assert (s.reason, s.pid, s.comm, s.owner_source) == ("TCP_ABORT_ON_CLOSE", sv.pid, "tte-old-server",
                                                                 "listener")
        finally:
            col.stop()
            cap.close()


def test_dual_stack_server_timewait_reset_keeps_its_owner(capture, peers):
    """An AF_INET6 listener on :: serving an IPv4 client: its timewait socket's reset (keyed the
    IPv4 way, from the segment) must join the connection's history (keyed from the v4-mapped
    socket)."""
    with Topology.pair() as topo:
        sc = Scope(topo)
        sv = peers(topo, topo.server, "tte-dual", "listen port=8080 v6=1;accept;close")
        sv.next("listen")
        cl = peers(topo, topo.client, "tte-client", f"connect host={topo.server.v4} port=8080;sleep s=0.5;"
                                                    "send_once n=10;sleep s=0.2;recv timeout=2")
        cl.finish()
        sv.finish()
        s = one(sc.found(capture, RST_SENT, "server"))
        assert (s.reason, s.state) == ("TCP_TIMEWAIT_SOCKET", "TIME_WAIT")
        assert s.flag("from_closed") and (s.pid, s.comm) == (sv.pid, "tte-dual")
        assert s.laddr == topo.server.v4 and s.family_name == "ipv4"


def test_a_filtered_run_does_not_call_a_local_peer_a_middlebox(peers):
    """With --pid on the client only, the server's reset is invisible by construction: the
    explanation must not claim the (local) server sent none."""
    from tracer.explain.pipeline import explain_stream
    from tracer.kernel.localaddrs import peer_check
    from tracer.model.options import Options

    with Topology.pair() as topo:
        sc = Scope(topo)
        cl = peers(topo, topo.client, "tte-client", f"wait;connect host={topo.server.v4} port=8080;recv timeout=5")
        opts = Options(pids=frozenset({cl.pid}))
        cap, col = start_capture(opts)
        try:
            sv = peers(topo, topo.server, "tte-server", "listen port=8080;accept;sleep s=0.2;linger0;close")
            sv.next("listen")
            cl.release()
            cl.finish()
            sv.finish()
            recs = col.wait_for(sc.client_rec(RST_RECV))
            assert peer_check(opts, cap.features) is None      # filtered: never "local and silent"
            [e] = explain_stream(recs, peer_is_local=None)
            assert e.verdict.value == "peer_abort" and e.who.value == "peer", e
        finally:
            col.stop()
            cap.close()
