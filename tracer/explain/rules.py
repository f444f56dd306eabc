"""Explain an event: verdict, who reset, how sure, one or two sentences, evidence, fix.

The explainer is an ordered table of rules (RULES). Each rule is a condition over a Case (what
the event shows: tracer/explain/case.py) and what it concludes: a verdict, who caused the reset,
a confidence, and the key of its words in tracer/explain/texts.py. For each event the first rule
of its kind (sent, received, abort) whose condition holds decides; the last rule of each kind
always holds. A rule may add computed parts (`more`): timeouts inferred from timing, evidence
sentences, settings from the knowledge tables (tracer/explain/knowledge.py).

Sent resets are judged by their reason: the kernel's, or the one tracer/explain/reasons.py
infers where the kernel gives none (then reported as "inferred:NAME").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

from tracer.explain import appview, bounds, knowledge, reasons, software, texts
from tracer.explain.case import Case, RuntimeOf, from_incident
from tracer.explain.correlate import Incident
from tracer.explain.explanation import Explanation, dur, endpoint, errno_text, iso, secs
from tracer.model.record import OWNER_FROM_PROCFS, Record, RecordType
from tracer.model.verdicts import Confidence, Verdict, Who

__all__ = ["Explanation", "endpoint", "explain", "explain_case", "infer_reason", "judge", "RULES", "Rule"]

# A reset that answered our first send after an idle period of at least STALE_MIN_IDLE_S may
# be a middlebox that forgot the idle flow (stale_after_idle). Below it, no idle timeout is
# plausible: the shortest in the knowledge tables is 2 s (gunicorn's keep-alive, which closes
# with a FIN, not a reset), middlebox idle timeouts are minutes (AWS NAT/NLB 350 s, Azure 4 min,
# GCP Cloud NAT 20 min, conntrack's established timeout 5 days by default), and a timeout under
# 2 s would break every client that pauses between two requests. A reset injected after a
# shorter idle, or in the middle of traffic, is a reject rule, a policy change or a middlebox
# that lost its state (failover): middlebox_reset.
STALE_MIN_IDLE_S = 2.0
# A connection destroyed longer ago than this is not the one a late segment belonged to
# (timewait lives 60 s; conntrack and NAT mappings turn over): treat the segment as unknown.
CLOSED_JOIN_MAX_NS = 120_000_000_000
# A close this soon after the last data is the peer being done, not a timeout firing.
MIN_TIMEOUT_GAP_NS = 50_000_000
# A SYN is retried at most tcp_syn_retries (default 6, max 127) times; more retransmissions
# than this on a never-established socket cannot be the handshake alone.
SYN_RETRIES_MAX = 16
# An idle this short is the middle of an exchange, not a pause.
MID_TRAFFIC_IDLE_S = 0.2
CLOSING_STATES = ("FIN_WAIT1", "FIN_WAIT2", "CLOSING", "LAST_ACK")
HANDSHAKE_REASONS = ("TCP_INVALID_ACK_SEQUENCE", "TCP_RFC7323_PAWS", "TCP_TOO_OLD_ACK", "TCP_ACK_UNSENT_DATA",
                     "TCP_OLD_ACK")

SENT, RECEIVED, ABORT = RecordType.RESET_SENT, RecordType.RESET_RECEIVED, RecordType.ABORT
HIGH, MEDIUM, LOW = Confidence.HIGH, Confidence.MEDIUM, Confidence.LOW


@dataclass
class Judgement:
    verdict: Verdict
    who: Who
    confidence: Confidence
    text: str
    fix: list[str]
    inferred: dict[str, float] = field(default_factory=dict)
    evidence: list[str] = field(default_factory=list)
    rule: str = ""
    ranges: dict[str, list[float]] = field(default_factory=dict)   # inferred timeouts as [lower, upper]
    software: dict[str, object] = field(default_factory=dict)      # the server named, and how sure


More = Callable[[Case, Judgement], None]


@dataclass(frozen=True)
class Rule:
    """When `when` holds for an event of kind `event`, the verdict is `verdict`, caused by `who`,
    with `confidence`, in the words texts.TEXTS[`text`] (the text key also names the rule).
    `reasons`: the kernel reasons the rule is about (for sent resets; a trailing * is a prefix);
    the rule only looks at events with one of them."""

    event: RecordType
    verdict: Verdict
    who: Who
    confidence: Confidence
    text: str
    when: Callable[[Case], bool] = lambda c: True
    reasons: tuple[str, ...] = ()
    more: Optional[More] = None

    def matches(self, c: Case) -> bool:
        if c.event is not self.event:
            return False
        if self.reasons and not self.claims(c.reason):
            return False
        return self.when(c)

    def claims(self, reason: Optional[str]) -> bool:
        """`reason` is one of this rule's (a trailing * in `reasons` is a prefix)."""
        return any(reason == r or (r.endswith("*") and (reason or "").startswith(r[:-1])) for r in self.reasons)


# ------------------------------------------------------------------ words of a case ------

def proc(pid: int, comm: str, candidates: tuple[int, ...] = ()) -> str:
    if not pid and candidates:
        return candidates_text(comm, candidates)
    return f"{comm or '?'} pid {pid}" if pid else texts.UNIDENTIFIED_OWNER


def candidates_text(comm: str, candidates: tuple[int, ...], shown: int = 8) -> str:
    """An accepted socket whose holder could not be resolved: the candidates, never one pid."""
    root, others = candidates[0], candidates[1:]
    if not others:
        return texts.OWNER_CANDIDATE_ALONE.format(comm=comm or "?", root=root)
    listed = ", ".join(str(p) for p in others[:shown]) + (", ..." if len(others) > shown else "")
    return texts.OWNER_CANDIDATES.format(comm=comm or "?", root=root, children=listed)


def peer_desc(p: Record) -> str:
    """What the other end on this host did, from its own reset record."""
    known = p.pid or p.owner_candidates
    who = texts.HOST_KERNEL if (p.flag("no_socket") or not known) else texts.ON_THIS_HOST.format(
        proc=proc(p.pid, p.comm, p.owner_candidates))
    action = texts.PEER_ACTIONS.get(p.reason or "", texts.PEER_RESET_IT)
    return texts.PEER_DID.format(who=who, action=action, reason=f" ({p.reason})" if p.reason else "")


class Words(dict[str, str]):
    """The template fields of texts.py for one case, computed when a template asks for them."""

    def __init__(self, c: Case) -> None:
        super().__init__()
        self.c = c

    def __missing__(self, key: str) -> str:
        v = self._value(key)
        self[key] = v
        return v

    def _value(self, key: str) -> str:
        c = self.c
        if key == "me":
            return proc(c.pid, c.comm, c.owner_candidates)
        if key == "there":
            return endpoint(c.raddr, c.rport)
        if key == "here":
            return endpoint(c.laddr, c.lport)
        if key in ("raddr", "lport", "rport", "reason", "retrans"):
            return str(getattr(c, key))
        if key == "unread":
            return str(c.unread_bytes or "some")
        if key == "errno":
            return errno_text(c.errno)
        if key == "idle":
            return secs(c.idle_s)
        if key in ("since_fin", "since_close", "since_destroy"):
            return dur(getattr(c, key + "_ns"))
        if key == "waited":
            return dur(None if c.since_birth_ns is None or c.since_close_ns is None
                       else c.since_birth_ns - c.since_close_ns)
        if key == "answered":
            return dur(c.since_birth_ns)
        if key == "gap_fin":
            return dur(c.gap_before_fin_ns)
        if key == "killer":
            return f"{c.cur_comm} pid {c.cur_pid}" if c.cur_pid else texts.ANOTHER_TASK
        if key == "peer":
            return peer_desc(c.peer) if c.peer is not None else ""
        if key == "linger_how":
            return knowledge.spelled(knowledge.LINGER_HOW, c.runtime)
        if key == "peer_sentence":
            return f" {peer_desc(c.peer)}." if c.peer is not None else ""
        raise KeyError(key)


# ------------------------------------------------------------------ computed parts -------

def _timed_fin(c: Case) -> bool:
    return c.gap_before_fin_ns is not None and c.gap_before_fin_ns >= MIN_TIMEOUT_GAP_NS


def _stale(c: Case) -> bool:
    return c.trigger and c.idle_s is not None and c.idle_s >= STALE_MIN_IDLE_S


def _stale_known(c: Case) -> bool:
    """Stale, and the idle sits just above a well-known middlebox idle timeout."""
    return _stale(c) and knowledge.component_near(c.idle_s, "reset") is not None


def _injected(c: Case, j: Judgement) -> None:
    """Why a reset the peer never sent is not an idle timeout: the idle was too short."""
    if c.idle_s is None:
        return
    if c.trigger and c.idle_s >= STALE_MIN_IDLE_S:
        return
    key = texts.EV_ACTIVE_TRAFFIC if c.idle_s < MID_TRAFFIC_IDLE_S else texts.EV_SHORT_IDLE
    j.evidence.append(key.format(idle=secs(c.idle_s), min=secs(STALE_MIN_IDLE_S)))


def _crossed(c: Case) -> bool:
    """The other end had closed as our data arrived: its reset says it no longer had the connection."""
    p = c.peer
    if p is None:
        return False
    return p.reason in ("TCP_TIMEWAIT_SOCKET", "TCP_ABORT_ON_DATA") or (p.reason == "NO_SOCKET"
                                                                        and p.flag("from_closed"))


def _abandoned(c: Case) -> bool:
    """A server's late answer to a connection this host opened and closed before it was
    established (the kernel side keeps its history when close() meets SYN_SENT)."""
    return (c.synack and c.flag("from_closed") and c.flag("connected") and c.never_established is True
            and c.since_close_ns is not None and c.since_birth_ns is not None
            and c.since_close_ns <= c.since_birth_ns and c.since_close_ns <= CLOSED_JOIN_MAX_NS)


def _abandoned_parts(c: Case, j: Judgement) -> None:
    assert c.since_birth_ns is not None and c.since_close_ns is not None
    waited = c.since_birth_ns - c.since_close_ns
    j.inferred["connect_timeout_s"] = round(waited / 1e9, 3)
    j.inferred["server_answer_s"] = round(c.since_birth_ns / 1e9, 3)
    words = Words(c)
    j.evidence += [texts.EV_CONNECT_WAITED.format_map(words), texts.EV_ANSWER_CAME.format_map(words)]


def _close_gap(c: Case, j: Judgement) -> None:
    """How long after its last data this side closed: a read timeout (client) or its own idle
    timeout (server)."""
    gap = c.gap_before_close_ns
    if gap is None:
        return
    me = proc(c.pid, c.comm)
    if c.flag("connected"):
        j.inferred["read_timeout_s"] = round(gap / 1e9, 3)
        j.evidence.append(texts.EV_READ_TIMEOUT.format(me=me, gap=dur(gap)))
    else:
        # The closer is this process: its name is known, so no well-known component is named.
        j.inferred["local_idle_close_s"] = round(gap / 1e9, 3)
        j.evidence.append(texts.EV_LOCAL_IDLE_CLOSE.format(me=me, gap=dur(gap)))
        srv = software.server(c.comm, c.thread) if c.pid else None
        if srv is not None:
            rng = bounds.server_timeout(gap / 1e9, srv)
            j.ranges["local_idle_close_s"] = rng.json()
            j.software = {"name": srv.product, "setting": srv.setting, "default": srv.default, "pid": c.pid,
                          "identified": True, "confidence": Confidence.HIGH.value}
            j.evidence.append(texts.EV_LOCAL_SERVER_SETTING.format(me=me, product=srv.product, setting=srv.setting,
                                                                   default=srv.default))
            # A server closing idle connections: the read-timeout advice is not about it.
            j.fix[:] = [texts.FIX_LOCAL_IDLE_CLOSE.format(product=srv.product, setting=srv.setting,
                                                          range=knowledge.range_words(rng),
                                                          evict=bounds.fmt_s(rng.evict_s))]


def peer_server(c: Case) -> Optional[software.Server]:
    """The server software on the other end, when that end is on this host and its process is known."""
    p = c.peer
    if p is None or not p.pid:
        return None
    return software.server(p.comm, p.thread)


def _name_server(c: Case, j: Judgement, observed_s: float) -> bounds.Range:
    """The server's idle timeout as a range, the software and setting named when identified
    (its process on this host), else a well-known timeout "for example" (medium confidence)."""
    srv = peer_server(c)
    rng = bounds.server_timeout(observed_s, srv)
    j.ranges["peer_keepalive_timeout_s"] = rng.json()
    words = knowledge.range_words(rng)
    if srv is not None and c.peer is not None:
        j.software = {"name": srv.product, "setting": srv.setting, "default": srv.default, "pid": c.peer.pid,
                      "identified": True, "confidence": Confidence.HIGH.value}
        j.evidence.append(texts.EV_SERVER_IDENTIFIED.format(proc=proc(c.peer.pid, c.peer.comm), product=srv.product,
                                                           setting=srv.setting, range=words, default=srv.default))
        return rng
    comp = knowledge.component_near(observed_s, "fin")
    j.evidence.append(texts.EV_SERVER_KEEPALIVE.format(range=words) + (
        texts.EV_FOR_EXAMPLE.format(component=comp.component) if comp else ""))
    if comp:
        j.software = {"name": comp.component, "identified": False, "confidence": Confidence.MEDIUM.value}
    return rng


def _client_runtime_fix(c: Case, j: Judgement, rng: bounds.Range, what: str = "the server's idle timeout") -> None:
    proto = software.protocol(peer_server(c), c.rport if c.role != "server" else c.lport)
    j.fix[:0] = knowledge.pool_fix(rng, c.runtime, proto, what)


def _server_keepalive(c: Case, j: Judgement) -> None:
    assert c.gap_before_fin_ns is not None
    observed = c.gap_before_fin_ns / 1e9
    rng = _name_server(c, j, observed)
    _client_runtime_fix(c, j, rng)
    j.inferred["peer_keepalive_timeout_s"] = round(observed, 3)


def _client_timeout(c: Case, j: Judgement) -> None:
    assert c.gap_before_fin_ns is not None
    j.inferred["client_read_timeout_s"] = round(c.gap_before_fin_ns / 1e9, 3)
    j.evidence.append(texts.EV_CLIENT_TIMEOUT.format(gap=dur(c.gap_before_fin_ns)))


def _peer_evidence(more: Optional[More] = None) -> More:
    def add(c: Case, j: Judgement) -> None:
        if more is not None:
            more(c, j)
        if c.peer is not None:
            j.evidence.append(peer_desc(c.peer))
    return add


def _pool_fix(c: Case, j: Judgement) -> None:
    assert c.idle_s
    _client_runtime_fix(c, j, _name_server(c, j, c.idle_s))


def _stale_idle(c: Case, j: Judgement) -> None:
    idle = c.idle_s or 0.0
    rng = bounds.middlebox_timeout(idle)
    j.ranges["middlebox_idle_timeout_s"] = rng.json()
    # Only components that forget flows and answer with a reset: servers that close with a FIN
    # (nginx, Tomcat, ALB...) leave CLOSE_WAIT, which is another verdict.
    comp = knowledge.component_near(idle, "reset")
    _client_runtime_fix(c, j, rng, "the middlebox's idle timeout")
    j.fix.append(knowledge.keepalive_fix(rng, c.runtime))
    j.evidence.append(texts.EV_MIDDLEBOX_RANGE.format(upper=knowledge.up(rng.upper)))
    if comp:
        j.evidence.append(texts.EV_NEAR_COMPONENT.format(idle=secs(idle), component=comp.component))
        j.fix.insert(len(j.fix) - 1, texts.FIX_IF_COMPONENT.format(
            component=comp.component, evict=bounds.fmt_s(comp.seconds * bounds.EVICT_FRACTION)))
        j.software = {"name": comp.component, "identified": False, "confidence": Confidence.MEDIUM.value}
    j.evidence.append(texts.EV_FIRST_SEND)


# ------------------------------------------------------------------ the rule table -------
# Order matters: the first rule of an event's kind that holds decides.

RULES: tuple[Rule, ...] = (
    # -- resets this host sent, by reason (kernel-tcp-resets.md §2.2) ----------------------
    Rule(SENT, Verdict.PORT_CLOSED, Who.LOCAL, HIGH, "port_closed",
         reasons=("NO_SOCKET",), when=lambda c: c.syn),
    Rule(SENT, Verdict.CONNECT_ABANDONED, Who.LOCAL, HIGH, "connect_abandoned",
         reasons=("NO_SOCKET",), when=lambda c: _abandoned(c), more=lambda c, j: _abandoned_parts(c, j)),
    Rule(SENT, Verdict.DATA_AFTER_CLOSE, Who.LOCAL, HIGH, "data_after_destroy",
         reasons=("NO_SOCKET",), when=lambda c: c.flag("from_closed") and c.since_destroy_ns is not None
         and c.since_destroy_ns <= CLOSED_JOIN_MAX_NS),
    Rule(SENT, Verdict.UNKNOWN_CONNECTION, Who.LOCAL, MEDIUM, "unknown_connection", reasons=("NO_SOCKET",)),
    Rule(SENT, Verdict.DATA_AFTER_CLOSE, Who.LOCAL, HIGH, "data_after_timewait",
         reasons=("TCP_TIMEWAIT_SOCKET",), more=_close_gap),
    Rule(SENT, Verdict.DATA_AFTER_CLOSE, Who.LOCAL, HIGH, "abort_on_data", reasons=("TCP_ABORT_ON_DATA",)),
    Rule(SENT, Verdict.CLOSED_WITH_UNREAD_DATA, Who.LOCAL, HIGH, "unread_close", reasons=("TCP_ABORT_ON_CLOSE",)),
    Rule(SENT, Verdict.LINGER_ABORT, Who.LOCAL, HIGH, "linger2", reasons=("TCP_ABORT_ON_LINGER",)),
    # TCP_STATE: four causes (§2.2 (a)-(d)), told apart by state and socket.
    # An accepted child that never reached accept() has no struct socket (inode 0);
    # inet_child_forget() disconnects it before orphaning it, so SOCK_DEAD is not yet set.
    Rule(SENT, Verdict.LISTENER_CLOSED, Who.LOCAL, MEDIUM, "listener_closed", reasons=("TCP_STATE",),
         when=lambda c: c.state == "CLOSE" and c.flag("accepted") and c.ino == 0 and not c.flag("linger")),
    Rule(SENT, Verdict.LINGER_ABORT, Who.LOCAL, HIGH, "linger0", reasons=("TCP_STATE",),
         when=lambda c: c.state == "CLOSE" and c.flag("linger")),
    Rule(SENT, Verdict.LINGER_ABORT, Who.LOCAL, MEDIUM, "linger0_likely", reasons=("TCP_STATE",),
         when=lambda c: c.state == "CLOSE"),
    Rule(SENT, Verdict.FIN_WAIT2_TIMEOUT, Who.LOCAL, MEDIUM, "fin_wait2_timeout", reasons=("TCP_STATE",),
         when=lambda c: c.state == "FIN_WAIT2"),
    Rule(SENT, Verdict.SOCKET_DESTROYED, Who.LOCAL, MEDIUM, "destroyed_by_task", reasons=("TCP_STATE",)),
    Rule(SENT, Verdict.KEEPALIVE_TIMEOUT, Who.LOCAL, HIGH, "keepalive_timeout", reasons=("TCP_KEEPALIVE_TIMEOUT",)),
    Rule(SENT, Verdict.MEMORY_PRESSURE, Who.LOCAL, HIGH, "memory_pressure", reasons=("TCP_ABORT_ON_MEMORY",)),
    Rule(SENT, Verdict.UNKNOWN_CONNECTION, Who.LOCAL, HIGH, "listener_no_connection", reasons=("TCP_FLAGS",)),
    Rule(SENT, Verdict.LISTEN_OVERFLOW, Who.LOCAL, MEDIUM, "listen_overflow", reasons=("INVALID_SYN",)),
    Rule(SENT, Verdict.OUT_OF_WINDOW, Who.LOCAL, HIGH, "out_of_window", reasons=HANDSHAKE_REASONS),
    Rule(SENT, Verdict.RESET_DURING_CLOSE, Who.LOCAL, HIGH, "disconnect_with_data",
         reasons=("TCP_DISCONNECT_WITH_DATA",)),
    Rule(SENT, Verdict.MPTCP_RESET, Who.LOCAL, HIGH, "mptcp_reset", reasons=("MPTCP_RST*", "ERROR")),
    Rule(SENT, Verdict.UNKNOWN, Who.LOCAL, LOW, "sent_unknown"),
    # -- resets this host received, by state (kernel-tcp-resets.md §4.3) -------------------
    Rule(RECEIVED, Verdict.CONNECTION_REFUSED, Who.MIDDLEBOX, HIGH, "refused_by_firewall",
         when=lambda c: c.state == "SYN_SENT" and bool(c.peer_local) and c.peer is None),
    Rule(RECEIVED, Verdict.CONNECTION_REFUSED, Who.PEER, HIGH, "refused", when=lambda c: c.state == "SYN_SENT"),
    Rule(RECEIVED, Verdict.WRITE_AFTER_PEER_CLOSE, Who.PEER, HIGH, "server_idle_close",
         when=lambda c: c.state == "CLOSE_WAIT" and c.flag("connected") and _timed_fin(c),
         more=_peer_evidence(_server_keepalive)),
    Rule(RECEIVED, Verdict.WRITE_AFTER_PEER_CLOSE, Who.PEER, HIGH, "server_done",
         when=lambda c: c.state == "CLOSE_WAIT" and c.flag("connected"), more=_peer_evidence()),
    Rule(RECEIVED, Verdict.WRITE_AFTER_PEER_CLOSE, Who.PEER, HIGH, "client_gave_up",
         when=lambda c: c.state == "CLOSE_WAIT" and c.flag("accepted") and _timed_fin(c),
         more=_peer_evidence(_client_timeout)),
    Rule(RECEIVED, Verdict.WRITE_AFTER_PEER_CLOSE, Who.PEER, HIGH, "client_done",
         when=lambda c: c.state == "CLOSE_WAIT" and c.flag("accepted"), more=_peer_evidence()),
    # The socket predates the tracer: which side opened it is unknown.
    Rule(RECEIVED, Verdict.WRITE_AFTER_PEER_CLOSE, Who.PEER, MEDIUM, "peer_closed_side_unknown",
         when=lambda c: c.state == "CLOSE_WAIT", more=_peer_evidence()),
    Rule(RECEIVED, Verdict.RESET_DURING_CLOSE, Who.PEER, HIGH, "reset_while_closing_seen",
         when=lambda c: c.state in CLOSING_STATES and c.peer is not None),
    Rule(RECEIVED, Verdict.RESET_DURING_CLOSE, Who.PEER, MEDIUM, "reset_while_closing",
         when=lambda c: c.state in CLOSING_STATES),
    # ESTABLISHED (or another live state) from here on.
    Rule(RECEIVED, Verdict.WRITE_AFTER_PEER_CLOSE, Who.PEER, HIGH, "close_crossed_request",
         when=lambda c: _crossed(c) and bool(c.idle_s), more=_pool_fix),
    Rule(RECEIVED, Verdict.WRITE_AFTER_PEER_CLOSE, Who.PEER, HIGH, "close_crossed_request_no_idle", when=_crossed),
    Rule(RECEIVED, Verdict.PEER_ABORT, Who.PEER, HIGH, "peer_abort_seen", when=lambda c: c.peer is not None),
    # The peer is on this host and sent no reset: a middlebox did. An idle timeout only when the
    # idle is one a real idle timeout could have (STALE_MIN_IDLE_S); high confidence only when it
    # sits just above a known one.
    Rule(RECEIVED, Verdict.STALE_AFTER_IDLE, Who.MIDDLEBOX, HIGH, "stale_local_peer_known",
         when=lambda c: bool(c.peer_local) and _stale_known(c), more=_stale_idle),
    Rule(RECEIVED, Verdict.STALE_AFTER_IDLE, Who.MIDDLEBOX, MEDIUM, "stale_local_peer",
         when=lambda c: bool(c.peer_local) and _stale(c), more=_stale_idle),
    Rule(RECEIVED, Verdict.MIDDLEBOX_RESET, Who.MIDDLEBOX, HIGH, "middlebox_reset_local_peer",
         when=lambda c: bool(c.peer_local), more=_injected),
    Rule(RECEIVED, Verdict.STALE_AFTER_IDLE, Who.MIDDLEBOX, MEDIUM, "stale_remote_peer", when=_stale,
         more=_stale_idle),
    Rule(RECEIVED, Verdict.PEER_ABORT, Who.PEER, MEDIUM, "peer_abort"),
    # -- aborts without a reset from this host, by errno (kernel-tcp-resets.md §3.2) -------
    Rule(ABORT, Verdict.SYN_TIMEOUT, Who.UNKNOWN, HIGH, "syn_timeout",
         when=lambda c: c.errno == "ETIMEDOUT" and c.never_established is not False
         and c.retrans <= SYN_RETRIES_MAX),
    Rule(ABORT, Verdict.RETRANSMIT_TIMEOUT, Who.UNKNOWN, HIGH, "retransmit_timeout",
         when=lambda c: c.errno == "ETIMEDOUT"),
    Rule(ABORT, Verdict.CONNECTION_REFUSED, Who.PEER, MEDIUM, "refused_abort", when=lambda c: c.errno == "ECONNREFUSED"),
    Rule(ABORT, Verdict.HOST_UNREACHABLE, Who.UNKNOWN, HIGH, "host_unreachable",
         when=lambda c: c.errno in ("EHOSTUNREACH", "ENETUNREACH")),
    Rule(ABORT, Verdict.SOCKET_DESTROYED, Who.LOCAL, MEDIUM, "destroyed_abort", when=lambda c: c.errno == "ECONNABORTED"),
    Rule(ABORT, Verdict.UNKNOWN, Who.UNKNOWN, LOW, "abort_unknown"),
)


_BY_KIND: dict[tuple[RecordType, Optional[str]], tuple[Rule, ...]] = {}


def _rules_for(event: RecordType, reason: Optional[str]) -> tuple[Rule, ...]:
    """RULES in order, those for this kind of event and reason only: the same first match as
    trying every rule (Rule.matches), without testing the others' kinds and reasons per event."""
    key = (event, reason)
    found = _BY_KIND.get(key)
    if found is None:
        found = tuple(r for r in RULES if r.event is event and (not r.reasons or r.claims(reason)))
        if len(_BY_KIND) < 4096:     # reasons come from the kernel's table: a few dozen
            _BY_KIND[key] = found
    return found


def judge(c: Case) -> Judgement:
    """The first rule that holds for the case (its reason resolved), in its words."""
    for rule in _rules_for(c.event, c.reason):
        if rule.when(c):
            break
    else:  # pragma: no cover - every kind ends with a rule that always holds
        raise LookupError(f"no rule for a {c.event.value} event")
    t = texts.TEXTS[rule.text]
    words = Words(c)
    j = Judgement(rule.verdict, rule.who, rule.confidence, t.why.format_map(words),
                  [f.format_map(words) for f in t.fix], rule=rule.text)
    if rule.more is not None:
        rule.more(c, j)
    return j


# ------------------------------------------------------------------ evidence -------------

def facts(c: Case, sees: Optional[tuple[appview.Sees, ...]] = None) -> list[str]:
    """The numbers behind every explanation, whatever the verdict (`sees`: appview.app_sees(c))."""
    ev: list[str] = []
    if c.idle_s is not None:
        ev.append(texts.EV_IDLE.format(idle=secs(c.idle_s)))
    if c.age_s is not None:
        ev.append(texts.EV_AGE.format(age=secs(c.age_s)))
    if c.since_fin_ns is not None:
        ev.append(texts.EV_PEER_FIN.format(since=dur(c.since_fin_ns)) + (
            texts.EV_AFTER_LAST_DATA.format(gap=dur(c.gap_before_fin_ns)) if c.gap_before_fin_ns is not None else ""))
    if c.since_close_ns is not None:
        ev.append(texts.EV_OUR_CLOSE.format(since=dur(c.since_close_ns)) + (
            texts.EV_AFTER_OUR_LAST_DATA.format(gap=dur(c.gap_before_close_ns))
            if c.gap_before_close_ns is not None else ""))
    if c.retrans:
        ev.append(texts.EV_RETRANS.format(n=c.retrans))
    if c.unread_bytes and c.event is not RecordType.ABORT:
        ev.append(texts.EV_UNREAD.format(n=c.unread_bytes))
    if sees is None:
        sees = appview.app_sees(c)
    if sees:
        ev.append(app_sentence(sees))
    elif c.errno:
        ev.append(texts.EV_ERRNO.format(errno=errno_text(c.errno)))
    if c.srtt_us:
        ev.append(texts.EV_RTT_MS.format(ms=c.srtt_us / 1000) if c.srtt_us >= 1000
                  else texts.EV_RTT_US.format(us=c.srtt_us))
    if c.pid and c.owner_source == OWNER_FROM_PROCFS:
        ev.append(texts.EV_OWNER_PROCFS.format(proc=proc(c.pid, c.comm)))
    elif c.pid:
        ev.append(texts.EV_OWNER.format(proc=proc(c.pid, c.comm), source=c.owner_source))
    elif c.owner_candidates:
        ev.append(texts.EV_OWNER_UNRESOLVED.format(comm=c.comm or "?", root=c.owner_candidates[0],
                                                   n=len(c.owner_candidates)))
    return ev


def app_sentence(sees: tuple[appview.Sees, ...]) -> str:
    parts = []
    for x in sees:
        if x.result == "nothing":
            return texts.EV_APP_CLOSED.format(note=x.note)
        result = texts.APP_EOF if x.result == "EOF" else texts.APP_FAILS.format(errno=errno_text(x.result))
        parts.append(texts.APP_CALL.format(call=x.call, result=result, note=f", {x.note}" if x.note else ""))
    return texts.EV_APP_SEES.format(calls="; ".join(parts))


# ------------------------------------------------------------------ entry points ---------

def infer_reason(inc: Incident) -> str:
    """The reason a 6.12+ kernel would give this incident's sent reset (reasons.infer)."""
    return reasons.infer(from_incident(inc))


def explain_case(c: Case) -> Explanation:
    c = reasons.resolve(c)
    j = judge(c)
    peer: Optional[dict[str, object]] = None
    if c.peer is not None:
        p = c.peer
        peer = {"event": p.type.value, "pid": p.pid or None, "comm": p.comm, "reason": p.reason,
                "laddr": p.laddr, "lport": p.lport, "netns": p.netns}
        if p.owner_candidates:
            peer["owner_candidates"] = list(p.owner_candidates)
    thread = c.thread if c.thread and c.thread != c.comm else None
    sees = appview.app_sees(c)
    return Explanation(
        ts=iso(c.wall_ns), event=c.event.value, pid=c.pid or None, comm=c.comm or None, thread=thread,
        family=c.family_name, laddr=c.laddr, lport=c.lport, raddr=c.raddr, rport=c.rport,
        state=c.state, reason=c.display_reason, errno=c.errno,
        idle_s=None if c.idle_s is None else round(c.idle_s, 3),
        age_s=None if c.age_s is None else round(c.age_s, 3),
        verdict=j.verdict, who=j.who, confidence=j.confidence, explanation=j.text,
        evidence=tuple(j.evidence + facts(c, sees)), fix=tuple(j.fix), netns=c.netns,
        inferred=j.inferred, peer=peer, ts_ns=c.ts_ns, accepted=c.flag("accepted") or c.state == "LISTEN",
        service=c.service, role=c.role, owner_candidates=c.owner_candidates,
        inferred_range=j.ranges, software=j.software or None, runtime=c.runtime,
        app_sees=tuple(x.json() for x in sees),
    )


def explain(inc: Incident, runtime_of: Optional[RuntimeOf] = None) -> Explanation:
    return explain_case(from_incident(inc, runtime_of))
