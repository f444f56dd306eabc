"""Explain an incident: verdict, who reset, how sure, one or two sentences, evidence, fix.

Pure functions over tracer.explain.correlate.Incident. The kernel's reset reason decides where it
exists; where it does not (kernels before 6.10, active resets before 6.12, or the
ignore-kernel-reason switch), infer_reason() applies the decision table of
shared/reference/kernel-tcp-resets.md §4.2 and the result is marked "inferred:NAME".
"""

from __future__ import annotations

import dataclasses
import errno as errno_mod
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Mapping, Optional

from tracer.explain import knowledge
from tracer.explain.correlate import Incident
from tracer.model.record import Record, RecordType
from tracer.model.verdicts import Confidence, Verdict, Who

# A reset received within this long of our first send after an idle period of at least
# STALE_MIN_IDLE_S answered that send: the idle flow had been forgotten on the way.
STALE_MIN_IDLE_S = 1.0
# A connection destroyed longer ago than this is not the one a late segment belonged to
# (timewait lives 60 s; conntrack and NAT mappings turn over): treat the segment as unknown.
CLOSED_JOIN_MAX_NS = 120_000_000_000
# A close this soon after the last data is the peer being done, not a timeout firing.
MIN_TIMEOUT_GAP_NS = 50_000_000
LIVE_STATES = ("ESTABLISHED", "CLOSE_WAIT", "FIN_WAIT1", "FIN_WAIT2", "SYN_RECV", "LAST_ACK", "CLOSING")


@dataclass(frozen=True)
class Explanation:
    """One explained event: the JSON contract of shared/DESIGN.md (plus extra fields)."""

    ts: str
    event: str
    pid: Optional[int]
    comm: Optional[str]
    thread: Optional[str]
    family: str
    laddr: str
    lport: int
    raddr: str
    rport: int
    state: Optional[str]
    reason: Optional[str]
    errno: Optional[str]
    idle_s: Optional[float]
    age_s: Optional[float]
    verdict: Verdict
    who: Who
    confidence: Confidence
    explanation: str
    evidence: tuple[str, ...]
    fix: tuple[str, ...]
    netns: int = 0
    inferred: Mapping[str, float] = field(default_factory=dict)
    peer: Optional[Mapping[str, object]] = None
    ts_ns: int = 0
    accepted: bool = False   # this side accepted the connection (it is the server)
    # merge of several hosts' recordings: which host this event is from, and its other end
    # there (tracer/explain/crosshost.py)
    host: Optional[str] = None
    pairing: Optional[Mapping[str, object]] = None
    seq: Optional[Mapping[str, object]] = None   # the record's sequence numbers (pairing.seq_json)

    def to_json(self) -> dict[str, object]:
        d: dict[str, object] = {
            "ts": self.ts, "event": self.event, "pid": self.pid, "comm": self.comm,
            "family": self.family, "laddr": self.laddr, "lport": self.lport, "raddr": self.raddr,
            "rport": self.rport, "state": self.state, "reason": self.reason, "errno": self.errno,
            "idle_s": self.idle_s, "age_s": self.age_s, "verdict": self.verdict.value,
            "who": self.who.value, "confidence": self.confidence.value,
            "explanation": self.explanation, "evidence": list(self.evidence), "fix": list(self.fix),
            "netns": self.netns,
        }
        if self.thread:
            d["thread"] = self.thread
        if self.inferred:
            d["inferred"] = dict(self.inferred)
        if self.peer:
            d["peer"] = dict(self.peer)
        if self.host is not None:
            d["host"] = self.host
        if self.pairing is not None:
            d["pairing"] = dict(self.pairing)
        if self.seq is not None:
            d["seq"] = dict(self.seq)
        return d


# ------------------------------------------------------------------ formatting helpers --

def dur(ns: Optional[float]) -> str:
    if ns is None:
        return "?"
    s = ns / 1e9
    if s < 1:
        return f"{s * 1000:.0f} ms"
    if s < 120:
        return f"{s:.1f} s"
    return f"{s:.0f} s ({s / 60:.1f} min)"


def secs(s: Optional[float]) -> str:
    return dur(None if s is None else s * 1e9)


def endpoint(addr: str, port: int) -> str:
    return f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"


def proc(r: Record) -> str:
    if not r.pid:
        return "a process the tracer could not identify (socket opened before it started)"
    return f"{r.comm or '?'} pid {r.pid}"


def iso(wall_ns: int) -> str:
    dt = datetime.fromtimestamp(wall_ns / 1e9, tz=timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def errno_text(name: Optional[str]) -> str:
    if not name:
        return ""
    num = getattr(errno_mod, name, None)
    return f"{name} ({os.strerror(num)})" if num else name


# ------------------------------------------------------------------ reason inference ----

def infer_reason(inc: Incident) -> str:
    """The reset reason a 6.12+ kernel would report, from state and context (reference §4.2)."""
    r = inc.primary
    st = r.state
    if r.flag("no_socket"):
        return "NO_SOCKET"
    if st == "TIME_WAIT":
        return "TCP_TIMEWAIT_SOCKET"
    if st == "LISTEN":
        return "INVALID_SYN" if r.segment_was_syn else "TCP_FLAGS"
    if st == "SYN_SENT":
        return "TCP_INVALID_ACK_SEQUENCE"
    if st == "SYN_RECV":
        return "TCP_OLD_ACK"
    if not r.flag("active"):
        # Passive on a full socket already in CLOSE: the kernel ran tcp_reset() on its own
        # socket (rule P1/P2) because data arrived after this side stopped reading.
        if inc.self_received is not None or st == "CLOSE":
            return "TCP_ABORT_ON_DATA"
        return "NOT_SPECIFIED"
    if st == "CLOSE":
        if r.unread_bytes > 0:
            return "TCP_ABORT_ON_CLOSE"          # A1: close() with unread data
        if r.flag("linger") or (inc.errno == "ECONNRESET" and not r.flag("orphan")):
            return "TCP_STATE"                   # A2: SO_LINGER {1,0} close; errno 104 on itself
        return "TCP_STATE"                       # A3: listener closed with unaccepted children
    if st == "FIN_WAIT2" and r.flag("orphan"):
        return "TCP_STATE"                       # A9: FIN_WAIT2 timeout on the keepalive timer
    if r.flag("orphan") and st in ("FIN_WAIT1", "CLOSING", "LAST_ACK"):
        return "TCP_ABORT_ON_MEMORY"             # A8
    if inc.errno == "ETIMEDOUT" or (r.flag("keepalive") and r.cur_pid != r.pid):
        return "TCP_KEEPALIVE_TIMEOUT"           # A6: timer context, then ETIMEDOUT
    if r.pid and r.cur_pid and r.cur_pid != r.pid:
        return "TCP_STATE"                       # A7: SOCK_DESTROY from another task
    return "NOT_SPECIFIED"


def resolve_reason(inc: Incident) -> tuple[str, bool]:
    """(reason name, inferred?) for a sent reset."""
    r = inc.primary
    # NOT_SPECIFIED and the enum's MAX sentinel say nothing; an unnamed number neither.
    if r.reason and r.reason not in ("NOT_SPECIFIED", "MAX") and not r.reason.startswith("UNKNOWN("):
        return r.reason, False
    return infer_reason(inc), True


# ------------------------------------------------------------------ facts ----------------

@dataclass
class Facts:
    idle_s: Optional[float]
    age_s: Optional[float]
    since_fin_ns: Optional[int]
    since_close_ns: Optional[int]
    gap_before_fin_ns: Optional[int]     # peer's FIN minus our last data before it
    gap_before_close_ns: Optional[int]   # our close minus our last data before it
    evidence: list[str]


def facts(inc: Incident) -> Facts:
    r = inc.primary
    ev: list[str] = []
    idle = r.idle_s
    age = r.age_s
    since_fin = r.ts_ns - r.fin_ns if r.fin_ns else None
    since_close = r.ts_ns - r.close_ns if r.close_ns else None
    before_fin = max((t for t in (r.fin_last_send_ns, r.fin_last_recv_ns) if t), default=None)
    gap_fin = r.fin_ns - before_fin if r.fin_ns and before_fin and before_fin <= r.fin_ns else None
    before_close = max((t for t in (r.last_recv_ns, r.last_send_ns) if t and r.close_ns and t <= r.close_ns),
                       default=None)
    gap_close = r.close_ns - before_close if r.close_ns and before_close else None

    if idle is not None:
        ev.append(f"idle {secs(idle)} before the reset (no data sent or received)")
    if age is not None:
        ev.append(f"connection age {secs(age)}")
    if since_fin is not None:
        ev.append(f"the peer's FIN arrived {dur(since_fin)} before the reset"
                  + (f", {dur(gap_fin)} after the last data" if gap_fin is not None else ""))
    if since_close is not None:
        ev.append(f"this side closed {dur(since_close)} before the reset"
                  + (f", {dur(gap_close)} after its last data" if gap_close is not None else ""))
    if r.retrans:
        ev.append(f"{r.retrans} retransmissions before the end")
    if r.unread_bytes and r.type is not RecordType.ABORT:
        ev.append(f"{r.unread_bytes} bytes received but never read by the application")
    if inc.errno:
        ev.append(f"the application sees {errno_text(inc.errno)}")
    if r.srtt_us:
        ev.append(f"smoothed RTT {r.srtt_us / 1000:.1f} ms" if r.srtt_us >= 1000 else f"smoothed RTT {r.srtt_us} µs")
    if r.pid:
        ev.append(f"owner {proc(r)} (from its {r.owner_source})")
    return Facts(idle, age, since_fin, since_close, gap_fin, gap_close, ev)


# ------------------------------------------------------------------ verdicts -------------

@dataclass
class Judgement:
    verdict: Verdict
    who: Who
    confidence: Confidence
    text: str
    fix: list[str]
    inferred: dict[str, float] = field(default_factory=dict)
    evidence: list[str] = field(default_factory=list)


# What the other end did, by the reason its kernel gave, for "both ends on this host" stories.
PEER_ACTIONS = {
    "NO_SOCKET": "had no socket for the connection",
    "TCP_TIMEWAIT_SOCKET": "had already closed the connection",
    "TCP_ABORT_ON_DATA": "had stopped reading and got more data",
    "TCP_ABORT_ON_CLOSE": "closed its socket with unread data",
    "TCP_ABORT_ON_LINGER": "closed with TCP_LINGER2 < 0",
    "TCP_STATE": "closed abortively (SO_LINGER 0, listener closed) or had its socket destroyed",
    "TCP_KEEPALIVE_TIMEOUT": "gave up on keepalive probes",
    "TCP_ABORT_ON_MEMORY": "was short of memory for orphaned sockets",
    "TCP_FLAGS": "had no connection for it at its listener",
}


def _peer_desc(p: Record) -> str:
    who = "the kernel on this host" if (p.flag("no_socket") or not p.pid) else f"{proc(p)} on this host"
    action = PEER_ACTIONS.get(p.reason or "", "reset it")
    reason = f" ({p.reason})" if p.reason else ""
    return f"The other end is {who}: it {action}{reason}"


def _sent(inc: Incident, reason: str, f: Facts) -> Judgement:
    r = inc.primary
    me = proc(r)
    there = endpoint(r.raddr, r.rport)
    here = endpoint(r.laddr, r.lport)
    if reason == "NO_SOCKET":
        if r.segment_was_syn:
            return Judgement(Verdict.PORT_CLOSED, Who.LOCAL, Confidence.HIGH,
                             f"Nothing listens on {here}: this host refused {there}'s connection attempt "
                             "with a reset (the client sees 'connection refused').",
                             [f"start the service on port {r.lport}, or point the client at the port it listens on",
                              "if the service restarts, make clients retry connects with backoff"])
        if r.flag("from_closed") and r.destroy_ns and r.ts_ns - r.destroy_ns <= CLOSED_JOIN_MAX_NS:
            return Judgement(Verdict.DATA_AFTER_CLOSE, Who.LOCAL, Confidence.HIGH,
                             f"{there} kept sending {dur(r.ts_ns - r.destroy_ns)} after {me} had closed and "
                             "the kernel had forgotten the connection; the segment got a reset.",
                             ["make the peer stop sending once this side has closed (honour FIN / Connection: close)"])
        return Judgement(Verdict.UNKNOWN_CONNECTION, Who.LOCAL, Confidence.MEDIUM,
                         f"A segment from {there} arrived for a connection this host does not have on {here}: "
                         "it was closed long ago, the host or service restarted, or a NAT/conntrack mapping changed "
                         "so the segment reached the wrong host.",
                         ["check for restarts of the service on this port around this time",
                          "behind NAT/kube-proxy: drop conntrack INVALID packets or set "
                          "net.netfilter.nf_conntrack_tcp_be_liberal=1 (the kube-proxy reset case)"])
    if reason == "TCP_TIMEWAIT_SOCKET":
        j = Judgement(Verdict.DATA_AFTER_CLOSE, Who.LOCAL, Confidence.HIGH,
                      f"{me} had closed the connection to {there} {dur(f.since_close_ns)} earlier; the peer then "
                      "sent more data, and the closed socket (kept by the kernel as a timewait socket) answered "
                      "with a reset. The peer's next write fails with EPIPE (Broken pipe).",
                      ["if this side closed because of a read timeout: raise it above the peer's response time "
                       "(a read timeout bounds the gap between packets, not the whole response)",
                       "make the peer stop work and writes once the client has gone (react to the client's FIN)"])
        if f.gap_before_close_ns is not None and r.flag("connected"):
            j.inferred["read_timeout_s"] = round(f.gap_before_close_ns / 1e9, 3)
            j.evidence.append(f"{me} closed {dur(f.gap_before_close_ns)} after its last data: "
                              "likely its read timeout")
        elif f.gap_before_close_ns is not None:
            # The closer is this process: its name is known, so no well-known component is named.
            j.inferred["local_idle_close_s"] = round(f.gap_before_close_ns / 1e9, 3)
            j.evidence.append(f"{me} closed after {dur(f.gap_before_close_ns)} without traffic: its own idle "
                              "(keep-alive) timeout; clients must keep their pool idle time below it")
        return j
    if reason == "TCP_ABORT_ON_DATA":
        return Judgement(Verdict.DATA_AFTER_CLOSE, Who.LOCAL, Confidence.HIGH,
                         f"{me} had stopped reading (close or shutdown) and {there} still sent data; the kernel "
                         "killed the connection and answered with a reset.",
                         ["if this side is the server closing idle keep-alive connections, the client reused the "
                          "connection as it closed: keep client pool idle times below this server's keep-alive timeout",
                          "do not shutdown(SHUT_RD) a socket the peer may still write to"])
    if reason == "TCP_ABORT_ON_CLOSE":
        return Judgement(Verdict.CLOSED_WITH_UNREAD_DATA, Who.LOCAL, Confidence.HIGH,
                         f"{me} closed its socket with {r.unread_bytes or 'some'} bytes from {there} still unread; "
                         "the kernel discarded them and sent a reset instead of a FIN, so the peer gets "
                         "ECONNRESET (or EPIPE if it had closed its side).",
                         ["read the request or response fully before closing (or shutdown(SHUT_WR), drain, then close)",
                          "HTTP servers answering early (401/413/errors): read or discard the request body first, "
                          "or send 'Connection: close' and drain"])
    if reason == "TCP_ABORT_ON_LINGER":
        return Judgement(Verdict.LINGER_ABORT, Who.LOCAL, Confidence.HIGH,
                         f"{me} closed a connection already in FIN_WAIT2 with TCP_LINGER2 < 0, which resets "
                         "instead of waiting for the peer's FIN.",
                         ["remove the negative TCP_LINGER2 setting, or accept the resets it causes"])
    if reason == "TCP_STATE":
        # An accepted child that never reached accept() has no struct socket (inode 0);
        # inet_child_forget() disconnects it before orphaning it, so SOCK_DEAD is not yet set.
        if r.state == "CLOSE" and r.flag("accepted") and r.ino == 0 and not r.flag("linger"):
            return Judgement(Verdict.LISTENER_CLOSED, Who.LOCAL, Confidence.MEDIUM,
                             f"{me} closed its listening socket on {here} while the connection from {there} "
                             "waited in the accept queue; the kernel reset every unaccepted connection.",
                             ["drain the accept queue before closing the listener (graceful shutdown), or stop "
                              "routing traffic to the instance first"])
        if r.state == "CLOSE":
            return Judgement(Verdict.LINGER_ABORT, Who.LOCAL,
                             Confidence.HIGH if r.flag("linger") else Confidence.MEDIUM,
                             f"{me} closed its connection to {there} abortively (SO_LINGER on with a 0 s timeout): "
                             "the kernel sends a reset instead of a FIN and drops unsent data.",
                             ["remove SO_LINGER {on, 0} (Java Socket.setSoLinger(true, 0), Netty ChannelOption.SO_LINGER "
                              "0, Go SetLinger(0)) unless skipping TIME_WAIT on purpose; close normally"])
        if r.state == "FIN_WAIT2":
            return Judgement(Verdict.FIN_WAIT2_TIMEOUT, Who.LOCAL, Confidence.MEDIUM,
                             f"{me} closed its side; {there} acknowledged but never closed its own, and the kernel's "
                             "FIN_WAIT2 timer (tcp_fin_timeout) reset the connection.",
                             ["find why the peer never closes its side (a leaked connection in its pool)"])
        killer = f"{r.cur_comm} pid {r.cur_pid}" if r.cur_pid else "another task"
        return Judgement(Verdict.SOCKET_DESTROYED, Who.LOCAL, Confidence.MEDIUM,
                         f"The connection of {me} to {there} was destroyed from outside by {killer} "
                         "(ss -K, SOCK_DESTROY or bpf_sock_destroy); its owner gets ECONNABORTED.",
                         [f"check what {killer} is doing (an agent or operator killing sockets)"])
    if reason == "TCP_KEEPALIVE_TIMEOUT":
        j = Judgement(Verdict.KEEPALIVE_TIMEOUT, Who.LOCAL, Confidence.HIGH,
                      f"{there} stopped answering TCP keepalive probes from {me}; the kernel gave up, reset "
                      "the connection and reports ETIMEDOUT. The peer host is gone, or a middlebox drops "
                      "the flow.",
                      ["find out why the peer went silent: crash or reboot, network partition, a firewall or NAT "
                       "dropping idle flows",
                       "if a middlebox drops idle flows, probe more often than its idle timeout (TCP_KEEPIDLE)"])
        return j
    if reason == "TCP_ABORT_ON_MEMORY":
        return Judgement(Verdict.MEMORY_PRESSURE, Who.LOCAL, Confidence.HIGH,
                         f"The kernel killed this closed-but-unfinished (orphaned) connection to {there}: too many "
                         "orphaned sockets (net.ipv4.tcp_max_orphans) or TCP memory pressure (net.ipv4.tcp_mem).",
                         ["check dmesg for 'too many orphaned sockets' or 'out of memory -- consider tuning tcp_mem'",
                          "raise net.ipv4.tcp_max_orphans / tcp_mem, or close connections gracefully sooner"])
    if reason == "TCP_FLAGS":
        return Judgement(Verdict.UNKNOWN_CONNECTION, Who.LOCAL, Confidence.HIGH,
                         f"A segment from {there} reached the listener on {here}, which has no connection for it: "
                         "the server's side of that connection no longer exists (socket killed or closed early, "
                         "handshake dropped under accept-queue overflow or SYN cookies, or a restart).",
                         ["check ListenOverflows/ListenDrops in nstat and the accept backlog (somaxconn, listen())",
                          "check for restarts of the service on this port"])
    if reason == "INVALID_SYN":
        return Judgement(Verdict.LISTEN_OVERFLOW, Who.LOCAL, Confidence.MEDIUM,
                         f"The listener on {here} reset a half-open connection from {there}: the accept queue "
                         "was full with net.ipv4.tcp_abort_on_overflow=1, or the handshake was invalid.",
                         ["accept faster or raise the backlog (listen() and net.core.somaxconn)",
                          "check nstat ListenOverflows; consider tcp_abort_on_overflow=0"])
    if reason in ("TCP_INVALID_ACK_SEQUENCE", "TCP_RFC7323_PAWS", "TCP_TOO_OLD_ACK",
                  "TCP_ACK_UNSENT_DATA", "TCP_OLD_ACK"):
        return Judgement(Verdict.OUT_OF_WINDOW, Who.LOCAL, Confidence.HIGH,
                         f"{there} sent a segment outside what this connection expects during the handshake "
                         f"({reason}): usually a stale half-open connection on the same ports at the peer.",
                         ["usually harmless once; if frequent, look for port reuse by a NAT or peers keeping "
                          "half-open connections"])
    if reason == "TCP_DISCONNECT_WITH_DATA":
        return Judgement(Verdict.RESET_DURING_CLOSE, Who.LOCAL, Confidence.HIGH,
                         f"{me} disconnected while closing with data still unsent to {there}; the kernel reset.",
                         ["let the close finish (no SO_LINGER 0) so the data is delivered"])
    if reason.startswith("MPTCP_RST") or reason == "ERROR":
        return Judgement(Verdict.MPTCP_RESET, Who.LOCAL, Confidence.HIGH,
                         f"An MPTCP subflow to {there} was reset ({reason}): the MPTCP layer gave up on this path.",
                         ["see the MPTcpExt counters (nstat) and the path manager's configuration"])
    return Judgement(Verdict.UNKNOWN, Who.LOCAL, Confidence.LOW,
                     f"This host reset the connection to {there}; the kernel gave no reason and the context "
                     "matches no known pattern.",
                     ["capture the traffic (tcpdump -i any host " + r.raddr + ") around the next occurrence"])


def _received(inc: Incident, f: Facts) -> Judgement:
    r = inc.primary
    me = proc(r)
    there = endpoint(r.raddr, r.rport)
    p = inc.peer
    if r.state == "SYN_SENT":
        if inc.peer_local and p is None:
            return Judgement(Verdict.CONNECTION_REFUSED, Who.MIDDLEBOX, Confidence.HIGH,
                             f"{me}'s connection attempt to {there} was refused by a reset that host never sent: "
                             "a firewall reject rule answered for it.",
                             ["check firewall rules between the two (nftables/iptables reject with tcp-reset)"])
        return Judgement(Verdict.CONNECTION_REFUSED, Who.PEER, Confidence.HIGH,
                         f"{me} tried to connect to {there} and nothing listens there: the host answered with a "
                         "reset (connection refused)." + (f" {_peer_desc(p)}." if p else ""),
                         [f"check that the service runs and listens on port {r.rport} at {r.raddr}",
                          "retry connects with backoff while the service restarts"])
    if r.state == "CLOSE_WAIT":
        gap = f.gap_before_fin_ns
        timed = gap is not None and gap >= MIN_TIMEOUT_GAP_NS
        if r.flag("connected") and timed and gap is not None:
            limit = gap / 1e9
            comp = knowledge.component_near(limit, "fin")
            j = Judgement(Verdict.WRITE_AFTER_PEER_CLOSE, Who.PEER, Confidence.HIGH,
                          f"The server {there} closed this idle pooled connection (FIN) after "
                          f"{dur(gap)} without traffic; {me} reused it {dur(f.since_fin_ns)} later and the server "
                          "answered with a reset.",
                          knowledge.pool_idle_fix(limit))
            j.inferred["peer_keepalive_timeout_s"] = round(limit, 3)
            j.evidence.append(f"the server's idle (keep-alive) timeout is about {secs(limit)}"
                              + (f": {comp.component}" if comp else ""))
            j.fix.append("or check pooled connections for a FIN (CLOSE_WAIT) before reuse, and retry idempotent "
                         "requests once on a reset")
        elif r.flag("connected"):
            j = Judgement(Verdict.WRITE_AFTER_PEER_CLOSE, Who.PEER, Confidence.HIGH,
                          f"The server {there} closed the connection right after its last data (it was done, "
                          f"e.g. 'Connection: close'); {me} wrote {dur(f.since_fin_ns)} later and the server "
                          "answered with a reset.",
                          ["read the response to the end and honour 'Connection: close': do not reuse the "
                           "connection after the server's FIN"])
        elif r.flag("accepted") and timed and gap is not None:
            j = Judgement(Verdict.WRITE_AFTER_PEER_CLOSE, Who.PEER, Confidence.HIGH,
                          f"The client {there} gave up and closed the connection (FIN) {dur(gap)} after the last "
                          f"data; {me} wrote {dur(f.since_fin_ns)} later and the client answered with a reset. "
                          "The next write fails with EPIPE (Broken pipe; Tomcat: ClientAbortException).",
                          ["respond within the client's timeout, or ask the client to raise its read timeout (it "
                           "bounds the gap between packets, not the whole response)",
                           "stop work when the client disconnects (Netty channelInactive, servlet async "
                           "onError/onTimeout)",
                           "behind proxies: keep timeouts ordered client > proxy > server"])
            j.inferred["client_read_timeout_s"] = round(gap / 1e9, 3)
            j.evidence.append(f"the client closed {dur(gap)} after the last data: likely its read timeout")
        elif r.flag("accepted"):
            j = Judgement(Verdict.WRITE_AFTER_PEER_CLOSE, Who.PEER, Confidence.HIGH,
                          f"The client {there} closed its side right after the last data (it was done, or shut "
                          f"the connection down); {me} wrote {dur(f.since_fin_ns)} later and the client answered "
                          "with a reset. The next write fails with EPIPE (Broken pipe).",
                          ["stop writing once the peer has closed its side (a read returning 0 / EOF)"])
        else:
            # The socket predates the tracer: which side opened it is unknown.
            j = Judgement(Verdict.WRITE_AFTER_PEER_CLOSE, Who.PEER, Confidence.MEDIUM,
                          f"{there} had closed the connection (FIN) and {me} wrote to it anyway; the peer "
                          "answered with a reset (EPIPE on the next write). If this side is a client reusing a "
                          "pooled connection, the server's keep-alive timeout closed it; if it is a server, the "
                          "client gave up (its timeout).",
                          ["clients: keep pool idle times below the server's keep-alive timeout",
                           "servers: respond within the client's timeout and stop work when it disconnects"])
        if p is not None:
            j.evidence.append(_peer_desc(p))
        return j
    if r.state in ("FIN_WAIT1", "FIN_WAIT2", "CLOSING", "LAST_ACK"):
        if p is not None:
            return Judgement(Verdict.RESET_DURING_CLOSE, Who.PEER, Confidence.HIGH,
                             f"{me} was closing its connection to {there} when the other end answered with a "
                             f"reset. {_peer_desc(p)}.",
                             ["usually harmless for the closer; see the other end's explanation"])
        return Judgement(Verdict.RESET_DURING_CLOSE, Who.PEER, Confidence.MEDIUM,
                         f"{me} was closing its connection to {there} when the peer reset it instead of closing "
                         "cleanly (it closed with unread data or SO_LINGER 0, or no longer knew the connection).",
                         ["usually harmless for the closer; on the peer, read fully before close and avoid SO_LINGER 0"])
    # ESTABLISHED (or another live state)
    idle = f.idle_s
    trigger = (r.last_send_ns is not None and r.idle_ns is not None
               and r.ts_ns - r.last_send_ns < r.idle_ns)
    if p is not None:
        pr = p.reason or ""
        if pr in ("TCP_TIMEWAIT_SOCKET", "TCP_ABORT_ON_DATA") or (pr == "NO_SOCKET" and p.flag("from_closed")):
            return Judgement(Verdict.WRITE_AFTER_PEER_CLOSE, Who.PEER, Confidence.HIGH,
                             f"{there} had just closed this connection when {me} sent on it (the close and the "
                             f"request crossed); the peer answered with a reset. {_peer_desc(p)}.",
                             knowledge.pool_idle_fix(idle) if idle else
                             ["keep client pool idle times below the server's keep-alive timeout"])
        return Judgement(Verdict.PEER_ABORT, Who.PEER, Confidence.HIGH,
                         f"{there} reset its live connection with {me}. {_peer_desc(p)}.",
                         ["the cause is on the other end: see its explanation of the same reset (printed with it)"])
    if inc.peer_local:
        if trigger and idle is not None and idle >= STALE_MIN_IDLE_S:
            return _stale(inc, f, Confidence.HIGH,
                          f"{there} is on this host and its kernel sent no reset: a middlebox on the path (NAT, "
                          "load balancer, firewall) had forgotten the idle flow and answered for it.")
        return Judgement(Verdict.MIDDLEBOX_RESET, Who.MIDDLEBOX, Confidence.HIGH,
                         f"{me}'s connection to {there} was reset, but {there} is on this host and its kernel "
                         "sent no reset: a firewall reject rule (nftables/iptables 'reject with tcp reset') or a "
                         "middlebox injected it.",
                         ["list reject rules: nft list ruleset | grep -i reset; iptables -S | grep -i reset",
                          "check NetworkPolicy / host firewall changes"])
    if trigger and idle is not None and idle >= STALE_MIN_IDLE_S:
        return _stale(inc, f, Confidence.MEDIUM,
                      "the reset answered the first data after the idle period, as a NAT gateway or load "
                      "balancer does once it has forgotten an idle flow (the server may also have dropped it "
                      "silently, e.g. after a restart).")
    return Judgement(Verdict.PEER_ABORT, Who.PEER, Confidence.MEDIUM,
                     f"{there} reset its live connection with {me}: the peer closed with unread data or "
                     "SO_LINGER 0, crashed or restarted, or a middlebox injected the reset.",
                     ["run tcptrace-explain on the peer to see its side, or capture the traffic there",
                      "retry idempotent requests once on ECONNRESET"])


def _stale(inc: Incident, f: Facts, conf: Confidence, why: str) -> Judgement:
    r = inc.primary
    idle = f.idle_s or 0.0
    # Only components that forget flows and answer with a reset: servers that close with a FIN
    # (nginx, Tomcat, ALB...) leave CLOSE_WAIT, which is another verdict.
    comp = knowledge.component_near(idle, "reset")
    j = Judgement(Verdict.STALE_AFTER_IDLE, Who.MIDDLEBOX, conf,
                  f"{proc(r)} reused its connection to {endpoint(r.raddr, r.rport)} after {secs(idle)} idle "
                  f"and got a reset: {why}",
                  knowledge.pool_idle_fix(idle) + [knowledge.keepalive_fix(idle)])
    if comp:
        j.evidence.append(f"{secs(idle)} idle is just above the {comp.component} timeout")
        j.inferred["middlebox_idle_timeout_s"] = comp.seconds
    j.evidence.append("the reset answered the first send after the idle period")
    return j


def _abort(inc: Incident, f: Facts) -> Judgement:
    r = inc.primary
    me = proc(r)
    there = endpoint(r.raddr, r.rport)
    e = inc.errno
    if e == "ETIMEDOUT":
        # Never established: the table saw no ESTABLISHED, or (socket unknown to the table) the
        # kernel never set the receive timestamp it sets at establishment.
        never = (not r.estab_ns) if r.flag("sock_known") else r.last_recv_ns is None
        if never and r.retrans <= 16:
            return Judgement(Verdict.SYN_TIMEOUT, Who.UNKNOWN, Confidence.HIGH,
                             f"{me}'s connection attempt to {there} got no answer at all; the kernel gave up after "
                             f"{r.retrans} SYN retransmissions (ETIMEDOUT). The host is down or a firewall drops.",
                             ["check reachability and firewall rules to " + there,
                              "lower the connect timeout (TCP_SYNCNT / the client's connect timeout) so callers fail fast"])
        return Judgement(Verdict.RETRANSMIT_TIMEOUT, Who.UNKNOWN, Confidence.HIGH,
                         f"{there} stopped acknowledging {me}'s data; after {r.retrans} retransmissions the kernel "
                         "gave up (ETIMEDOUT, no reset sent). The peer or the path went silent.",
                         ["find why the peer went silent (crash, partition, a firewall or NAT dropping the flow)",
                          "TCP_USER_TIMEOUT bounds this wait; tcp_retries2 is the system default (about 15 min)"])
    if e == "ECONNREFUSED":
        return Judgement(Verdict.CONNECTION_REFUSED, Who.PEER, Confidence.MEDIUM,
                         f"{me}'s connection to {there} was refused (an ICMP port-unreachable, or a reset).",
                         [f"check that the service listens on {there}"])
    if e in ("EHOSTUNREACH", "ENETUNREACH"):
        return Judgement(Verdict.HOST_UNREACHABLE, Who.UNKNOWN, Confidence.HIGH,
                         f"{me} could not reach {there}: {errno_text(e)} (an ICMP error or no route).",
                         ["check routes, neighbour (ARP) resolution and firewalls towards " + r.raddr])
    if e == "ECONNABORTED":
        return Judgement(Verdict.SOCKET_DESTROYED, Who.LOCAL, Confidence.MEDIUM,
                         f"The connection of {me} to {there} was aborted from outside (ss -K or SOCK_DESTROY).",
                         ["check for agents or operators killing sockets"])
    return Judgement(Verdict.UNKNOWN, Who.UNKNOWN, Confidence.LOW,
                     f"The connection of {me} to {there} ended with {errno_text(e)} without a reset this tool saw.",
                     ["capture the traffic around the next occurrence"])


def explain(inc: Incident) -> Explanation:
    r = inc.primary
    if not r.pid and inc.self_received is not None and inc.self_received.pid:
        # This host's own tcp_reset() on the socket saw the owner the reset record lacks.
        s = inc.self_received
        r = dataclasses.replace(r, pid=s.pid, comm=s.comm, thread=s.thread, owner_source=s.owner_source)
        inc = dataclasses.replace(inc, primary=r)
    f = facts(inc)
    reason: Optional[str] = None
    if r.type is RecordType.RESET_SENT:
        name, inferred = resolve_reason(inc)
        j = _sent(inc, name, f)
        reason = f"inferred:{name}" if inferred else name
    elif r.type is RecordType.RESET_RECEIVED:
        j = _received(inc, f)
        if inc.peer is not None and inc.peer.reason:
            reason = inc.peer.reason
    else:
        j = _abort(inc, f)
    peer = None
    if inc.peer is not None:
        p = inc.peer
        peer = {"event": p.type.value, "pid": p.pid, "comm": p.comm, "reason": p.reason,
                "laddr": p.laddr, "lport": p.lport, "netns": p.netns}
    thread = r.thread if r.thread and r.thread != r.comm else None
    return Explanation(
        ts=iso(r.wall_ns), event=r.type.value, pid=r.pid or None, comm=r.comm or None, thread=thread,
        family=r.family_name, laddr=r.laddr, lport=r.lport, raddr=r.raddr, rport=r.rport,
        state=r.state, reason=reason, errno=inc.errno,
        idle_s=None if f.idle_s is None else round(f.idle_s, 3),
        age_s=None if f.age_s is None else round(f.age_s, 3),
        verdict=j.verdict, who=j.who, confidence=j.confidence, explanation=j.text,
        evidence=tuple(j.evidence + f.evidence), fix=tuple(j.fix), netns=r.netns,
        inferred=j.inferred, peer=peer, ts_ns=r.ts_ns, accepted=r.flag("accepted") or r.state == "LISTEN",
    )
