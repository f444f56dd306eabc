"""Owners on real server shapes: pre-forked nginx workers, PostgreSQL backends forked after
accept, and a connect abandoned before the server's answer.

Ground truth: `ss -tnp` taken while the connections exist (who holds each socket), nstat in the
server's namespace (counts), the wire (when the SYN and the late SYN-ACK passed). The tool runs
as users run it (the CLI with --pid / --children, one compile each, started together) and as
the session's unfiltered capture.
"""

from __future__ import annotations

import socket
import struct
import subprocess
import sys
import time
from typing import Any

import pytest

from tests.lab import runner
from tests.lab.driver import Tracer, start_all
from tests.lab.netns import Topology, in_netns
from tests.lab.scenarios import BY_NAME, CONNECT_TIMEOUT_S
from tests.lab.servers import Nginx, Postgres, holders, pg_session, pg_terminate_with_unread_data

pytestmark = pytest.mark.scenario
CLIENTS = 30


def connect_many(topo: Topology, port: int, n: int) -> list[socket.socket]:
    out = []
    for _ in range(n):
        with in_netns(topo.client):
            c = socket.socket()
        c.settimeout(5)
        c.connect((topo.server.v4, port))
        out.append(c)
    return out


def linger0_close(c: socket.socket) -> None:
    c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    c.close()


def server_side(events: list[dict[str, Any]], netns: int, port: int) -> list[dict[str, Any]]:
    return [e for e in events if e["netns"] == netns and e["lport"] == port]


def by_client(events: list[dict[str, Any]]) -> dict[tuple[str, int], set[Any]]:
    out: dict[tuple[str, int], set[Any]] = {}
    for e in events:
        out.setdefault((e["raddr"], e["rport"]), set()).add(e["pid"])
    return out


def unfiltered(capture: runner.Collector, ino: int, since: int, until: int,
               before: dict[str, int], after: dict[str, int]) -> runner.RunResult:
    """The session capture's records of the server namespace (inode `ino`), explained, with the
    kernel's counters of that namespace, ready for runner.count_agreement."""
    records = [r for r in capture.snapshot() if r.netns == ino and since <= r.ts_ns <= until]
    res = runner.RunResult(BY_NAME["closed_port"], {}, records, [], {"server": ino}, [],
                           {"server": {k: after[k] - before[k] for k in runner.NSTAT_KEYS}})
    res.explanations = runner.explain_records(records, [])
    return res


def nstat(topo: Topology) -> dict[str, int]:
    n = topo.nstat(topo.server)
    return {k: n.get(k, 0) for k in runner.NSTAT_KEYS}


def test_nginx_workers_are_the_owners_of_what_they_accept(capture, tmp_path):
    """30 clients of an nginx with 2 workers: half close with SO_LINGER 0 (the worker receives
    the reset, in the client's softirq), half stall their request header (the worker resets
    them after client_header_timeout). Every reset's pid is the worker `ss -tnp` showed."""
    with Topology.pair() as topo, Nginx(topo, topo.server, workers=2) as ng:
        w1, w2 = ng.workers
        tracers = start_all([Tracer(tmp_path, "--json", "--pid", str(w1)),
                             Tracer(tmp_path, "--json", "--pid", str(ng.master)),
                             Tracer(tmp_path, "--json", "--pid", str(ng.master), "--children")])
        before, since = nstat(topo), time.monotonic_ns()
        clients = connect_many(topo, 8080, CLIENTS)
        time.sleep(0.3)
        truth = holders(topo, topo.server, 8080)           # while every socket exists
        for c in clients[: CLIENTS // 2]:
            linger0_close(c)
        for c in clients[CLIENTS // 2:]:
            c.sendall(b"GET / HTTP/1.1\r\n")                # never finished: nginx times it out
        time.sleep(2.5)
        for c in clients[CLIENTS // 2:]:
            c.close()
        time.sleep(0.5)
        after, until = nstat(topo), time.monotonic_ns()
        results = [t.stop() for t in tracers]
        ino = topo.netns_inode(topo.server)
    assert len(truth) == CLIENTS and all(len(p) == 1 for p in truth.values()), truth
    held = {k: next(iter(p)) for k, p in truth.items()}
    assert set(held.values()) == {w1, w2}, "both workers must hold connections for the test to mean anything"

    # Without a filter: every reset and error on a server socket names the worker holding it.
    res = unfiltered(capture, ino, since, until, before, after)
    mine = [e.to_json() for e in res.explanations if e.lport == 8080]
    assert by_client(mine) == {k: {p} for k, p in held.items()}
    assert {e["verdict"] for e in mine} >= {"peer_abort", "linger_abort"}
    assert runner.count_agreement(res) == []
    assert after["TcpOutRsts"] - before["TcpOutRsts"] == CLIENTS // 2

    (ev_w1, sum_w1), (ev_master, sum_master), (ev_children, _) = results
    # --pid worker: exactly the resets on sockets it holds; its sibling's are dropped.
    got = server_side(ev_w1, ino, 8080)
    assert by_client(got) == {k: {w1} for k, p in held.items() if p == w1}
    assert sum_w1["filtered"] >= sum(1 for p in held.values() if p == w2)
    # --pid master: the master holds none of them; --children brings its workers back.
    assert server_side(ev_master, ino, 8080) == []
    assert sum_master["summary"]["total"] == 0
    assert by_client(server_side(ev_children, ino, 8080)) == {k: {p} for k, p in held.items()}
    # The unfiltered and filtered runs count the same resets.
    sent = [e for e in server_side(ev_children, ino, 8080) if e["event"] == "reset_sent"]
    assert len(sent) == after["TcpOutRsts"] - before["TcpOutRsts"]


def test_postgres_backends_forked_after_accept_are_the_owners(capture, tmp_path):
    """PostgreSQL's postmaster accepts and forks a backend per connection. Half the clients
    reset their session (the backend receives it), half send Terminate plus data the backend
    never reads (its exit resets). Every pid is the backend `ss -tnp` showed; --pid of one
    backend started after the sessions keeps only that backend's."""
    n = 8
    with Topology.pair() as topo, Postgres(topo, topo.server) as pg:
        clients = connect_many(topo, 5432, n)
        for c in clients:
            pg_session(c)
        truth = holders(topo, topo.server, 5432)
        held = {k: next(iter(p)) for k, p in truth.items()}
        one = held[clients[0].getsockname()]               # a backend whose session predates the tracer
        tracers = start_all([Tracer(tmp_path, "--json", "--pid", str(pg.postmaster), "--children"),
                             Tracer(tmp_path, "--json", "--pid", str(one))])
        before, since = nstat(topo), time.monotonic_ns()
        for c in clients[: n // 2]:
            linger0_close(c)
        for c in clients[n // 2:]:
            pg_terminate_with_unread_data(c)
        time.sleep(1.5)
        for c in clients[n // 2:]:
            c.close()
        time.sleep(0.5)
        after, until = nstat(topo), time.monotonic_ns()
        results = [t.stop() for t in tracers]
        ino = topo.netns_inode(topo.server)
    assert len(held) == n and len(set(held.values())) == n and pg.postmaster not in held.values()

    res = unfiltered(capture, ino, since, until, before, after)
    mine = [e.to_json() for e in res.explanations if e.lport == 5432]
    assert by_client(mine) == {k: {p} for k, p in held.items()}
    assert {e["verdict"] for e in mine} >= {"peer_abort", "closed_with_unread_data"}
    assert runner.count_agreement(res) == []

    (ev_tree, _), (ev_one, _) = results
    # The backends have exited by the time their close is explained: their parent decides.
    assert by_client(server_side(ev_tree, ino, 5432)) == {k: {p} for k, p in held.items()}
    assert by_client(server_side(ev_one, ino, 5432)) == {k: {one} for k, p in held.items() if p == one}


def test_a_connect_abandoned_before_the_late_syn_ack(capture):
    """A client with a 300 ms connect timeout; the server's SYN-ACK comes after 1 s. The reset
    from no socket is the client's: connect_abandoned, with both durations within 10 %."""
    res = runner.run(BY_NAME["connect_abandoned"], capture)
    assert res.truth["client"] == ["connect:TIMEOUT"]
    assert runner.check(res) == [] and runner.count_agreement(res) == []
    (e,) = [x for x in res.explanations if x.verdict.value == "connect_abandoned"]
    assert (e.pid, e.comm, e.event, e.who.value) == (res.truth["client_pid"], "tte-client", "reset_sent", "local")
    assert abs(e.inferred["connect_timeout_s"] - CONNECT_TIMEOUT_S) <= 0.1 * CONNECT_TIMEOUT_S
    wire = res.truth["wire_answer_s"]
    assert abs(e.inferred["server_answer_s"] - wire) <= 0.1 * wire
    assert any("the connect waited" in x for x in e.evidence)


CHILD_HOLDS_S = 3.0
FORKED_HOLDER = """
import os, socket, sys, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], 8080))
s.listen(8)
print(os.getpid(), flush=True)
child = os.fork()
if child == 0:
    c, _ = s.accept()
    print(os.getpid(), flush=True)
    time.sleep(float(sys.argv[2]))   # keeps the reset socket open: its close comes too late to wait for
    c.close()
    os._exit(0)
os.waitpid(child, 0)
"""


def test_a_holder_that_keeps_a_reset_socket_is_found_in_proc(capture):
    """A server listens, forks, and the child accepts; the client resets the connection and the
    child keeps the dead socket 3 s. The live pipeline finds the child in /proc (only in the
    listener owner's tree) once the hold-back time has passed, before the child's close."""
    from tracer.live import owner_resolver
    from tracer.explain.pipeline import Pipeline
    from tracer.model.options import Options

    with Topology.pair() as topo:
        srv = topo.popen(topo.server, [sys.executable, "-c", FORKED_HOLDER, topo.server.v4, str(CHILD_HOLDS_S)],
                         stdout=subprocess.PIPE, text=True)
        parent = int(srv.stdout.readline())
        since = time.monotonic_ns()
        (c,) = connect_many(topo, 8080, 1)
        child = int(srv.stdout.readline())
        truth = holders(topo, topo.server, 8080)
        client_end = c.getsockname()
        linger0_close(c)
        reset_at = time.monotonic()
        ino = topo.netns_inode(topo.server)
        pipe = Pipeline(owners=owner_resolver(Options()))
        fed, got = 0, []
        while not got and time.monotonic() - reset_at < CHILD_HOLDS_S:
            recs = [r for r in capture.snapshot() if r.netns == ino and r.ts_ns >= since]
            pipe.feed(recs[fed:])
            fed = len(recs)
            got = [e for e in pipe.release(time.monotonic_ns()) if e.event == "reset_received"]
            time.sleep(0.02)
        found_after = time.monotonic() - reset_at
        srv.wait(timeout=10)
    assert truth == {client_end: {child}} and child != parent
    (e,) = got
    assert e.pid == child and "(found holding the socket in /proc)" in " ".join(e.evidence)
    # Found by looking, not from its close (which comes 3 s after the reset): the evidence says
    # /proc, and it was found before the child closed.
    assert found_after < CHILD_HOLDS_S and pipe.owners.resolved["procfs"] >= 1
