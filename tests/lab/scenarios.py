"""Lab scenarios: each user story of shared/DESIGN.md and each kind of kernel reset, replayed
with real sockets (and a real nginx where it matters) in throwaway network namespaces.

A scenario names its topology, acts, returns what the applications saw (the ground truth of
errnos and timings), and declares what the explainer must conclude (Expect). The runner
(tests/lab/runner.py) keeps the namespaces alive until the tracer's records are collected.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

from tests.lab.driver import PeerProc
from tests.lab.idle import TIMEOUT_S, idle_close_act
from tests.lab.netns import Host, Topology
from tests.lab.servers import nginx_conf, ok_server
from tracer.model.verdicts import Verdict, Who

Spawn = Callable[[Topology, Host, str, str], PeerProc]


@dataclass(frozen=True)
class Expect:
    side: str                                   # "client" or "server": whose namespace
    event: str                                  # reset_sent | reset_received | abort
    verdict: Verdict
    who: Who
    comm: Optional[str] = None
    errno: Optional[str] = None
    idle_s: Optional[float] = None              # within IDLE_TOLERANCE_S
    inferred: Optional[tuple[str, float]] = None  # (key, seconds) within INFERRED_TOLERANCE
    in_range: Optional[tuple[str, float]] = None  # (key, configured seconds) inside inferred_range[key]
    # A reset sent with no socket or by a TIME_WAIT socket: kernels before 6.10 send it without
    # a tracepoint, so there the tool must show nothing for it (tests/lab/kernel.py).
    untraced_before_6_10: bool = False


IDLE_TOLERANCE_S = 0.5
INFERRED_TOLERANCE = 0.10


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    topology: Callable[[], Topology]
    act: Callable[[Topology, Spawn], dict]
    expects: tuple[Expect, ...]
    story: Optional[int] = None
    truth: str = ""                             # what the scenario does and why, for the lab's output
    tags: tuple[str, ...] = field(default_factory=tuple)


def _pair() -> Topology:
    return Topology.pair()


def _nat(timeout: int) -> Callable[[], Topology]:
    return lambda: Topology.routed(nat=True, conntrack_established_timeout=timeout)


def _errors(pp: PeerProc) -> list[str]:
    return [f"{d['op']}:{d['error']}" for d in pp.lines if "error" in d]


# ------------------------------------------------------------------ user stories ----------


def _wait_port(topo: Topology, host: Host, port: int, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = topo.run(host, ["ss", "-Hltn", f"sport = :{port}"], capture_output=True, text=True).stdout
        if out.strip():
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port} in {host.name}")


def act_pool_keepalive(topo: Topology, spawn: Spawn) -> dict:
    """Story 1: a pooled keep-alive connection reused after nginx's keepalive_timeout (2 s)."""
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    d = tempfile.mkdtemp(prefix="tte-nginx-")
    try:
        conf = os.path.join(d, "nginx.conf")
        with open(conf, "w", encoding="utf-8") as fh:
            fh.write(nginx_conf(d, "keepalive_timeout 2s;\n" + ok_server("8080")))
        srv = topo.popen(topo.server, [nginx, "-p", d, "-c", conf, "-e", os.path.join(d, "error.log")],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            _wait_port(topo, topo.server, 8080)
            cl = spawn(topo, topo.client, "tte-pool",
                       f"connect host={topo.server.v4} port=8080;http_get;http_response;sleep s=3;"
                       "http_get;http_response;send_once n=10")
            cl.finish()
        finally:
            srv.terminate()
            srv.wait(timeout=5)
        responses = cl.result("http_response")
        return {"first_status": responses[0].get("status"), "reuse_read_bytes": responses[1].get("n"),
                "errors": _errors(cl), "nginx_keepalive_timeout_s": 2.0, "idle_s": 3.0}
    finally:
        shutil.rmtree(d, ignore_errors=True)


def act_nat_idle(topo: Topology, spawn: Spawn) -> dict:
    """Story 2: a NAT gateway forgets an idle flow (conntrack 2 s) and answers the next request
    with a reset; the retry on a new connection works."""
    sv = spawn(topo, topo.server, "tte-payment",
               "listen port=8080;accept;recv;send n=10;accept timeout=20;recv;send n=10")
    sv.next("listen")
    cl = spawn(topo, topo.client, "tte-scheduler",
               f"connect host={topo.server.v4} port=8080;send n=10;recv;sleep s=4;send_once n=10;"
               f"recv timeout=5;connect host={topo.server.v4} port=8080;send n=10;recv")
    cl.finish(timeout=30)
    sv.finish(timeout=30)
    recvs = cl.result("recv")
    return {"after_idle": recvs[1].get("error"), "retry_bytes": recvs[2].get("n"), "idle_s": 4.0,
            "nat_timeout_s": 2.0}


def act_client_timeout_slow_server(topo: Topology, spawn: Spawn) -> dict:
    """Story 3: the client gives up after 1 s (FIN) while the server works 1.5 s; the server
    learns it only when it writes."""
    sv = spawn(topo, topo.server, "tte-slowsrv",
               "listen port=8080;accept;recv;sleep s=1.5;send_once n=100;sleep s=0.3;send_once n=100")
    sv.next("listen")
    cl = spawn(topo, topo.client, "tte-client", f"connect host={topo.server.v4} port=8080;send n=10;"
                                                "recv timeout=1.0;close")
    cl.finish()
    sv.finish()
    return {"client": _errors(cl), "server": _errors(sv), "client_timeout_s": 1.0}


def act_read_timeout_broken_pipe(topo: Topology, spawn: Spawn) -> dict:
    """Story 5: a 200 ms read timeout is the gap between packets: the first piece arrives at
    once, the second 500 ms later; the client has closed; the third write is a Broken pipe."""
    sv = spawn(topo, topo.server, "tte-tomcat",
               "listen port=8080;accept;recv;send_once n=100;sleep s=0.5;send_once n=100;sleep s=0.2;"
               "send_once n=100")
    sv.next("listen")
    cl = spawn(topo, topo.client, "tte-client", f"connect host={topo.server.v4} port=8080;send n=10;"
                                                "recv timeout=0.2;recv timeout=0.2;close")
    cl.finish()
    sv.finish()
    return {"client": _errors(cl), "server": _errors(sv), "read_timeout_s": 0.2}


def act_time_wait_pileup(topo: Topology, spawn: Spawn) -> dict:
    """Story 4: a middleware opens a new connection per request and closes it first."""
    n = 2000
    sv = spawn(topo, topo.server, "tte-upstream", f"listen port=8080 backlog=1024;serve n={n}")
    sv.next("listen")
    cl = spawn(topo, topo.client, "tte-middleware", f"churn host={topo.server.v4} port=8080 n={n}")
    cl.finish(timeout=120)
    sv.finish(timeout=120)
    tw = topo.run(topo.client, ["ss", "-Htan", "state", "time-wait"], capture_output=True, text=True).stdout
    return {"connections": n, "time_wait_sockets": len(tw.splitlines()), "server": topo.server.v4}


# ------------------------------------------------------------------ kernel reset kinds ----

def act_closed_port(topo: Topology, spawn: Spawn) -> dict:
    cl = spawn(topo, topo.client, "tte-client", f"connect host={topo.server.v4} port=9")
    cl.finish()
    return {"client": _errors(cl)}


def act_unread_close(topo: Topology, spawn: Spawn) -> dict:
    sv = spawn(topo, topo.server, "tte-server", "listen port=8080;accept;sleep s=0.3;close")
    sv.next("listen")
    cl = spawn(topo, topo.client, "tte-client", f"connect host={topo.server.v4} port=8080;send n=100;"
                                                "sleep s=0.6;recv")
    sv.finish()
    cl.finish()
    return {"client": _errors(cl)}


def act_linger0(topo: Topology, spawn: Spawn) -> dict:
    sv = spawn(topo, topo.server, "tte-server", "listen port=8080;accept;recv timeout=5")
    sv.next("listen")
    cl = spawn(topo, topo.client, "tte-client", f"connect host={topo.server.v4} port=8080;linger0;"
                                                "sleep s=0.2;close")
    cl.finish()
    sv.finish()
    return {"server": _errors(sv)}


def silenced(topo: Topology, spawn: Spawn, client_script: str) -> PeerProc:
    """Connect, then make the server go silent (everything from the client vanishes at the
    server's door) and let the client run `client_script` on (it starts at a `wait`);
    returns the finished client."""
    sv = spawn(topo, topo.server, "tte-server", "listen port=8080;accept;wait")
    sv.next("listen")
    cl = spawn(topo, topo.client, "tte-client", f"connect host={topo.server.v4} port=8080;{client_script}")
    cl.next("wait")
    topo.blackhole(topo.server, topo.client)
    cl.release()
    cl.finish(timeout=40)
    sv.release()
    sv.finish()
    return cl


def act_keepalive(topo: Topology, spawn: Spawn) -> dict:
    return {"client": _errors(silenced(topo, spawn, "keepalive idle=1 intvl=1 cnt=2;wait;recv timeout=15"))}


def act_user_timeout(topo: Topology, spawn: Spawn) -> dict:
    return {"client": _errors(silenced(topo, spawn, "user_timeout ms=1500;wait;send n=100;recv timeout=15"))}


def act_syn_timeout(topo: Topology, spawn: Spawn) -> dict:
    topo.blackhole(topo.server, topo.client)
    cl = spawn(topo, topo.client, "tte-client", f"connect host={topo.server.v4} port=8080 syncnt=1 timeout=10")
    cl.finish(timeout=20)
    return {"client": _errors(cl)}


def act_nft_reject(topo: Topology, spawn: Spawn) -> dict:
    sv = spawn(topo, topo.server, "tte-server", "listen port=8080;accept;wait")
    sv.next("listen")
    cl = spawn(topo, topo.client, "tte-client", f"connect host={topo.server.v4} port=8080;wait;send n=10;"
                                                "recv timeout=5")
    cl.next("wait")
    topo.nft(topo.server, "table inet tte_reject {\n chain input {\n type filter hook input priority 0;\n"
                          " tcp dport 8080 reject with tcp reset\n }\n}\n")
    cl.release()
    cl.finish()
    # Remove the rule before the server closes: it would also drop the client's answer (a
    # NO_SOCKET reset) to the server's FIN, and the server would retransmit the FIN for seconds,
    # drawing a reset each time, past the end of the scenario.
    time.sleep(0.3)
    topo.nft(topo.server, "delete table inet tte_reject\n")
    sv.release()
    sv.finish()
    return {"client": _errors(cl)}


def act_abort_on_data(topo: Topology, spawn: Spawn) -> dict:
    sv = spawn(topo, topo.server, "tte-server", "listen port=8080;accept;recv;send n=10;sleep s=0.3;"
                                                "send_once n=100;sleep s=0.2;send_once n=100")
    sv.next("listen")
    cl = spawn(topo, topo.client, "tte-client", f"connect host={topo.server.v4} port=8080;send n=10;recv;"
                                                "shutdown how=rdwr;sleep s=1;recv")
    sv.finish()
    cl.finish()
    return {"client": _errors(cl), "server": _errors(sv)}


def act_listener_close(topo: Topology, spawn: Spawn) -> dict:
    sv = spawn(topo, topo.server, "tte-server", "listen port=8080 backlog=4;wait;close_listener")
    sv.next("listen")
    cl = spawn(topo, topo.client, "tte-client", f"connect host={topo.server.v4} port=8080;wait;recv timeout=5")
    cl.next("wait")
    sv.release()
    sv.finish()
    cl.release()
    cl.finish()
    return {"client": _errors(cl)}


def act_socket_destroy(topo: Topology, spawn: Spawn) -> dict:
    sv = spawn(topo, topo.server, "tte-server", "listen port=8080;accept;recv timeout=5")
    sv.next("listen")
    cl = spawn(topo, topo.client, "tte-client", f"connect host={topo.server.v4} port=8080;wait;recv timeout=5")
    cl.next("wait")
    ss = topo.run(topo.client, ["ss", "-K", "dst", topo.server.v4, "dport", "=", "8080"],
                  capture_output=True, text=True)
    cl.release()
    cl.finish()
    sv.finish()
    return {"client": _errors(cl), "server": _errors(sv), "ss_rc": ss.returncode}


# The server's first SYN-ACK of each connection is dropped on its way out; the kernel sends it
# again after its initial retransmission timeout (TCP_TIMEOUT_INIT, 1 s): a server whose answer
# comes 1 s late, as on a lossy path or a congested host. (This kernel has no netem qdisc.)
SLOW_SYNACK = """
table inet tte_slow_synack {
    set answered { type ipv4_addr . inet_service; flags timeout; timeout 60s; }
    set answered6 { type ipv6_addr . inet_service; flags timeout; timeout 60s; }
    chain out {
        type filter hook output priority 0; policy accept;
        tcp flags & (syn | ack) == (syn | ack) ip daddr . tcp dport @answered accept
        tcp flags & (syn | ack) == (syn | ack) ip6 daddr . tcp dport @answered6 accept
        tcp flags & (syn | ack) == (syn | ack) add @answered { ip daddr . tcp dport } drop
        tcp flags & (syn | ack) == (syn | ack) add @answered6 { ip6 daddr . tcp dport } drop
    }
}
"""
CONNECT_TIMEOUT_S = 0.3


class SynWire:
    """SYN and SYN-ACK segments on a host's interface (dumpcap), read back with tshark: the
    wire's account of when a connection attempt started and when its answer came."""

    def __init__(self, topo: Topology, host: Host) -> None:
        fd, self.file = tempfile.mkstemp(prefix="tte-syn-", suffix=".pcap")
        os.close(fd)
        os.chmod(self.file, 0o666)
        self.p = topo.popen(host, ["dumpcap", "-q", "-i", host.ifname, "-f", "tcp[tcpflags] & tcp-syn != 0",
                                   "-w", self.file], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            line = self.p.stderr.readline() if self.p.stderr else ""
            if "Capturing on" in line or not line:
                break

    def segments(self) -> list[tuple[float, bool]]:
        """(time, is SYN-ACK) of each segment, after stopping the capture."""
        time.sleep(0.2)
        self.p.terminate()
        self.p.wait(timeout=10)
        out = subprocess.run(["tshark", "-r", self.file, "-T", "fields", "-e", "frame.time_epoch",
                              "-e", "tcp.flags.ack"], capture_output=True, text=True, timeout=60).stdout
        os.unlink(self.file)
        rows = [line.split("\t") for line in out.splitlines() if line.strip()]
        return [(float(t), ack in ("1", "True")) for t, ack in rows]


def act_connect_abandoned(topo: Topology, spawn: Spawn) -> dict:
    """A client with a 300 ms connect timeout against a server whose SYN-ACK comes after 1 s:
    the client closes in SYN_SENT, and its kernel answers the late SYN-ACK with a reset."""
    sv = spawn(topo, topo.server, "tte-server", "listen port=8080;accept timeout=5")
    sv.next("listen")
    topo.nft(topo.server, SLOW_SYNACK)
    wire = SynWire(topo, topo.client)
    cl = spawn(topo, topo.client, "tte-client", f"connect host={topo.server.v4} port=8080 "
                                                f"timeout={CONNECT_TIMEOUT_S};close;sleep s=1.5")
    cl.finish()
    segs = wire.segments()
    sv.p.kill()
    sv.p.wait(timeout=5)
    syn = next(t for t, ack in segs if not ack)
    synack = next(t for t, ack in segs if ack)
    return {"client": _errors(cl), "client_pid": cl.pid, "connect_timeout_s": CONNECT_TIMEOUT_S,
            "wire_answer_s": round(synack - syn, 3)}


C, S = "client", "server"
SENT, RECV, ABORT = "reset_sent", "reset_received", "abort"

SCENARIOS: tuple[Scenario, ...] = (
    Scenario("pool_keepalive", "pooled connection reused after nginx's keep-alive timeout", _pair,
             act_pool_keepalive, story=1,
             truth="nginx keepalive_timeout 2 s; the client reuses its connection after 3 s idle",
             expects=(Expect(C, RECV, Verdict.WRITE_AFTER_PEER_CLOSE, Who.PEER, comm="tte-pool", idle_s=3.0,
                             inferred=("peer_keepalive_timeout_s", 2.0)),
                      Expect(S, SENT, Verdict.DATA_AFTER_CLOSE, Who.LOCAL, comm="nginx",
                             inferred=("local_idle_close_s", 2.0), untraced_before_6_10=True))),
    Scenario("nat_idle", "NAT gateway forgets an idle flow", _nat(2), act_nat_idle, story=2,
             truth="router NAT with a 2 s conntrack timeout; the client idles 4 s, the router answers with a reset",
             expects=(Expect(C, RECV, Verdict.STALE_AFTER_IDLE, Who.MIDDLEBOX, comm="tte-scheduler",
                             errno="ECONNRESET", idle_s=4.0),)),
    Scenario("client_timeout", "client disconnects a slow server", _pair, act_client_timeout_slow_server,
             story=3, truth="client timeout 1 s, server answers after 1.5 s",
             expects=(Expect(S, RECV, Verdict.WRITE_AFTER_PEER_CLOSE, Who.PEER, comm="tte-slowsrv", errno="EPIPE",
                             inferred=("client_read_timeout_s", 1.0)),
                      Expect(C, SENT, Verdict.DATA_AFTER_CLOSE, Who.LOCAL, comm="tte-client",
                             inferred=("read_timeout_s", 1.0), untraced_before_6_10=True))),
    Scenario("redis_idle", "redis-server's timeout closes an idle client; the Python client reuses it", _pair,
             idle_close_act("redis", "python"), story=1,
             truth=f"redis-server timeout {TIMEOUT_S}; a python3 client sends PING again after 3.5 s idle",
             expects=(Expect(C, RECV, Verdict.WRITE_AFTER_PEER_CLOSE, Who.PEER, comm="python3", errno="EPIPE",
                             in_range=("peer_keepalive_timeout_s", TIMEOUT_S)),)),
    Scenario("haproxy_idle", "HAProxy's timeout http-keep-alive closes an idle client; a Java client reuses it",
             _pair, idle_close_act("haproxy", "java"), story=1,
             truth=f"haproxy timeout http-keep-alive {TIMEOUT_S}s; a Java client sends again after 3.5 s idle",
             expects=(Expect(C, RECV, Verdict.WRITE_AFTER_PEER_CLOSE, Who.PEER, comm="java", errno="EPIPE",
                             in_range=("peer_keepalive_timeout_s", TIMEOUT_S)),)),
    Scenario("time_wait_pileup", "new connection per request, closed first by the middleware", _pair,
             act_time_wait_pileup, story=4, truth="2000 connections, each closed first by the client",
             expects=()),
    Scenario("read_timeout_broken_pipe", "read timeout, late response, Broken pipe", _pair,
             act_read_timeout_broken_pipe, story=5,
             truth="client read timeout 200 ms; the server's second piece comes 500 ms after the first",
             expects=(Expect(S, RECV, Verdict.WRITE_AFTER_PEER_CLOSE, Who.PEER, comm="tte-tomcat", errno="EPIPE",
                             inferred=("client_read_timeout_s", 0.2)),
                      Expect(C, SENT, Verdict.DATA_AFTER_CLOSE, Who.LOCAL, comm="tte-client",
                             inferred=("read_timeout_s", 0.2), untraced_before_6_10=True))),
    Scenario("closed_port", "connect to a closed port", _pair, act_closed_port,
             expects=(Expect(C, RECV, Verdict.CONNECTION_REFUSED, Who.PEER, comm="tte-client", errno="ECONNREFUSED"),
                      Expect(S, SENT, Verdict.PORT_CLOSED, Who.LOCAL, untraced_before_6_10=True))),
    Scenario("unread_close", "server closes with unread data", _pair, act_unread_close,
             expects=(Expect(S, SENT, Verdict.CLOSED_WITH_UNREAD_DATA, Who.LOCAL, comm="tte-server"),
                      Expect(C, RECV, Verdict.PEER_ABORT, Who.PEER, comm="tte-client", errno="ECONNRESET"))),
    Scenario("linger0", "client closes with SO_LINGER 0", _pair, act_linger0,
             expects=(Expect(C, SENT, Verdict.LINGER_ABORT, Who.LOCAL, comm="tte-client"),
                      Expect(S, RECV, Verdict.PEER_ABORT, Who.PEER, comm="tte-server", errno="ECONNRESET"))),
    Scenario("keepalive", "keepalive timeout, peer black-holed", _pair, act_keepalive,
             expects=(Expect(C, SENT, Verdict.KEEPALIVE_TIMEOUT, Who.LOCAL, comm="tte-client", errno="ETIMEDOUT"),)),
    Scenario("user_timeout", "TCP_USER_TIMEOUT with retransmissions", _pair, act_user_timeout,
             expects=(Expect(C, ABORT, Verdict.RETRANSMIT_TIMEOUT, Who.UNKNOWN, comm="tte-client",
                             errno="ETIMEDOUT"),)),
    Scenario("syn_timeout", "SYN retries to a black-holed host", _pair, act_syn_timeout,
             expects=(Expect(C, ABORT, Verdict.SYN_TIMEOUT, Who.UNKNOWN, comm="tte-client", errno="ETIMEDOUT"),)),
    Scenario("nft_reject", "nftables 'reject with tcp reset' on an established flow", _pair, act_nft_reject,
             expects=(Expect(C, RECV, Verdict.MIDDLEBOX_RESET, Who.MIDDLEBOX, comm="tte-client",
                             errno="ECONNRESET"),)),
    Scenario("abort_on_data", "data after shutdown(SHUT_RDWR)", _pair, act_abort_on_data,
             expects=(Expect(C, SENT, Verdict.DATA_AFTER_CLOSE, Who.LOCAL, comm="tte-client"),
                      Expect(S, RECV, Verdict.WRITE_AFTER_PEER_CLOSE, Who.PEER, comm="tte-server", errno="EPIPE"))),
    Scenario("listener_close", "listener closed with a connection not yet accepted", _pair, act_listener_close,
             expects=(Expect(S, SENT, Verdict.LISTENER_CLOSED, Who.LOCAL, comm="tte-server"),
                      Expect(C, RECV, Verdict.PEER_ABORT, Who.PEER, comm="tte-client", errno="ECONNRESET"))),
    Scenario("connect_abandoned", "connect timeout shorter than the server's answer", _pair,
             act_connect_abandoned,
             truth="client connect timeout 300 ms; the server's SYN-ACK comes after its 1 s retransmission",
             expects=(Expect(C, SENT, Verdict.CONNECT_ABANDONED, Who.LOCAL, comm="tte-client",
                             inferred=("connect_timeout_s", CONNECT_TIMEOUT_S)),)),
    Scenario("socket_destroy", "ss -K kills a live connection", _pair, act_socket_destroy,
             expects=(Expect(C, SENT, Verdict.SOCKET_DESTROYED, Who.LOCAL, comm="tte-client", errno="ECONNABORTED"),
                      Expect(S, RECV, Verdict.PEER_ABORT, Who.PEER, comm="tte-server", errno="ECONNRESET"))),
)

BY_NAME = {s.name: s for s in SCENARIOS}
