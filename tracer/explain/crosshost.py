"""Explain a reset from both ends: one host's explanation, proven or corrected by the other's.

From one end alone a reset from the far side is a guess from timing (who: peer or middlebox,
medium confidence). With the other end's recording (paired by tracer/explain/pairing.py) it is
a fact: if the other host's kernel sent the reset, its record says why; if that host recorded
the connection and sent no reset, something in between did. An absence proves something only if
the other host's tracer could have seen the reset: it ran at that moment, lost no records, traced
every kind of reset its kernel sends, and had no process filter that could hide one (Host.gaps).

Pure: one-sided Explanations (tracer/explain/rules.py) and paired records in, Explanations out.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

from tracer.explain.correlate import Incident
from tracer.explain.pairing import Paired, Pairing, Skew
from tracer.explain.explanation import Explanation, endpoint, iso, secs
from tracer.explain.rules import STALE_MIN_IDLE_S
from tracer.model.record import Record, RecordType
from tracer.model.verdicts import Confidence, Verdict, Who

CLOSING_STATES = ("FIN_WAIT1", "FIN_WAIT2", "CLOSING", "LAST_ACK")
# Reasons of a peer's reset that mean it had closed the connection already: our data crossed
# its close (the in-host rule of tracer/explain/rules.py, _received()).
PEER_CLOSED_REASONS = ("TCP_TIMEWAIT_SOCKET", "TCP_ABORT_ON_DATA")


@dataclass(frozen=True)
class Host:
    """One recording in a merge: whose it is, what it holds, what its absences prove."""

    label: str                              # the host, as shown to the user
    path: str                               # the recording's file
    records: Sequence[Record]
    mono_to_wall_ns: int = 0                # its records' CLOCK_MONOTONIC -> its wall clock
    window: Optional[tuple[int, int]] = None  # wall-clock ns it covered, on its own clock
    gaps: tuple[str, ...] = ()              # why a reset missing from it would prove nothing
    peer_is_local: Optional[Callable[[str], Optional[bool]]] = None


Lookup = Callable[[int, Record], Optional[Explanation]]


def _role(paired: Paired, mine: Record) -> str:
    """What the other end is: the server (it accepted), the client (it connected), or the peer."""
    if any(r.flag("accepted") for r in paired.records) or mine.flag("connected"):
        return "server"
    if any(r.flag("connected") for r in paired.records) or mine.flag("accepted"):
        return "client"
    return "peer"


def _view(r: Record) -> str:
    return f"{endpoint(r.laddr, r.lport)} -> {endpoint(r.raddr, r.rport)}"


def _translated(mine: Record, theirs: Record) -> bool:
    return (mine.laddr, mine.lport, mine.raddr, mine.rport) != (theirs.raddr, theirs.rport, theirs.laddr, theirs.lport)


def amount(ns: int) -> str:
    """A clock offset or its uncertainty, to the precision it has."""
    ns = abs(ns)
    if ns < 1_000_000:
        return f"{ns / 1000:.0f} µs"
    if ns < 1_000_000_000:
        return f"{ns / 1e6:.1f} ms"
    return f"{ns / 1e9:.3f} s"


def skew_phrase(sk: Skew, label: str, reference: str) -> str:
    ahead = "ahead of" if sk.offset_ns >= 0 else "behind"
    return (f"the clock of {label} reads {amount(sk.offset_ns)} {ahead} {reference} (±{amount(sk.uncertainty_ns)}, "
            f"from {sk.pairs} paired event{'s' if sk.pairs != 1 else ''})")


def _skew_text(sk: Optional[Skew], label: str) -> str:
    if sk is None:
        return f"the clock of {label} could not be related to this host's (no paired event gives its offset)"
    return skew_phrase(sk, label, "this host's")


class Judge:
    """Two-sided explanations for the events of a merge."""

    def __init__(self, hosts: Sequence[Host], pairing: Pairing, explained: Lookup) -> None:
        self.hosts = hosts
        self.pairing = pairing
        self.explained = explained

    def relative_skew(self, a: int, b: int) -> Optional[Skew]:
        """Clock of host b minus clock of host a."""
        sa, sb = self.pairing.skew[a], self.pairing.skew[b]
        if sa is None or sb is None:
            return None
        return Skew(sb.offset_ns - sa.offset_ns, sa.uncertainty_ns + sb.uncertainty_ns,
                    max(sa.pairs, sb.pairs), sa.consistent and sb.consistent)

    def judge(self, host: int, inc: Incident, e: Explanation) -> Explanation:
        e = dataclasses.replace(e, host=self.hosts[host].label)
        cp = self.pairing.counterpart(host, inc.primary)
        if not isinstance(cp, Paired):
            return self._unpaired(e, inc, cp.why)
        r = inc.primary
        if r.type is RecordType.RESET_RECEIVED:
            if cp.reset is not None:
                out = self._peer_sent(host, inc, e, cp)
            else:
                out = self._nobody_there_sent(host, inc, e, cp)
        elif r.type is RecordType.RESET_SENT:
            out = self._we_sent(host, inc, e, cp)
        else:
            out = dataclasses.replace(e, evidence=e.evidence + (self._recorded_too(host, inc, cp),))
        return self._annotate(host, inc, out, cp)

    # -- the other end sent this reset ----------------------------------------------------
    def _peer_sent(self, host: int, inc: Incident, e: Explanation, cp: Paired) -> Explanation:
        r, y = inc.primary, cp.reset
        assert y is not None
        other = self.hosts[cp.host]
        role = _role(cp, r)
        theirs = self.explained(cp.host, y)
        reason = theirs.reason if theirs is not None else y.reason
        why = theirs.explanation if theirs is not None else f"its kernel gave the reason {y.reason or 'none'}"
        what = ", ".join(x for x in ((theirs.verdict.value if theirs else None), reason) if x)
        said = f"The {role}'s host ({other.label}) recorded sending this reset" + (f" ({what})" if what else "") + "."
        detail = f"the {role}'s host explains its reset: {why}"
        there = endpoint(r.raddr, r.rport)
        base = (y.reason or "").replace("inferred:", "")
        if r.state == "SYN_SENT":
            verdict = Verdict.CONNECTION_REFUSED
        elif r.state == "CLOSE_WAIT":
            verdict = Verdict.WRITE_AFTER_PEER_CLOSE
        elif r.state in CLOSING_STATES:
            verdict = Verdict.RESET_DURING_CLOSE
        elif base in PEER_CLOSED_REASONS or (base == "NO_SOCKET" and y.flag("from_closed")):
            verdict = Verdict.WRITE_AFTER_PEER_CLOSE
        else:
            verdict = Verdict.PEER_ABORT
        keep = e.who is Who.PEER and e.verdict is verdict and verdict is not Verdict.PEER_ABORT
        if keep:
            text = f"{e.explanation} {said}"
        elif verdict is Verdict.PEER_ABORT:
            text = f"{there} reset its live connection with {e.comm or 'this process'}. {said} {why}"
        else:
            text = f"The {role} {there} reset this connection. {said} {why}"
        if e.who is Who.MIDDLEBOX:
            text += f" It was not a middlebox: the {role} itself reset the connection."
        # A kept verdict's fixes are this side's (e.g. the pool's idle time); a corrected one's
        # cause is on the other end, so its fixes are the other end's own.
        theirs_fix = tuple(f"on the {role} ({other.label}): {f}" for f in (theirs.fix if theirs else ()))
        fix = e.fix if keep else (theirs_fix or e.fix)
        return dataclasses.replace(e, verdict=verdict, who=Who.PEER, confidence=Confidence.HIGH,
                                   reason=reason, explanation=text, fix=fix,
                                   evidence=(detail,) + e.evidence)

    # -- the other end recorded the connection and sent nothing ---------------------------
    def _nobody_there_sent(self, host: int, inc: Incident, e: Explanation, cp: Paired) -> Explanation:
        r = inc.primary
        other = self.hosts[cp.host]
        role = _role(cp, r)
        gaps = list(other.gaps) + self._coverage_gaps(host, cp.host, r)
        confidence = Confidence.HIGH if not gaps else Confidence.MEDIUM
        me = f"{e.comm} pid {e.pid}" if e.pid else "this host's process"
        there = endpoint(r.raddr, r.rport)
        proof = (f"the {role}'s host recorded this connection and sent no reset ({other.path}: "
                 f"{len(cp.records)} record{'s' if len(cp.records) != 1 else ''} of it on {other.label}, "
                 "none of them a reset sent)")
        says = f"the {role}'s host ({other.label}) recorded this connection and sent no reset"
        if r.state == "SYN_SENT":
            verdict = Verdict.CONNECTION_REFUSED
            text = (f"{me}'s connection attempt to {there} was refused by a reset that the {role} never "
                    f"sent: {says}. A firewall reject rule on the path answered for it.")
            fix = ["list reject rules on the path: nft list ruleset | grep -i reset; iptables -S | grep -i reset"]
        elif e.verdict is Verdict.STALE_AFTER_IDLE:
            verdict = Verdict.STALE_AFTER_IDLE
            text = (f"{me} reused its connection to {there} after {secs(e.idle_s)} idle and got a reset "
                    f"that the {role} never sent: {says}, so a middlebox on the path (NAT gateway, load "
                    "balancer, firewall) had forgotten the idle flow and answered for it.")
            fix = list(e.fix)
        else:
            verdict = Verdict.MIDDLEBOX_RESET
            closing = r.state in CLOSING_STATES
            text = (f"{me}'s connection to {there} was reset{' while it was closing' if closing else ''}, "
                    f"but {says}: a middlebox on the path injected the reset (a firewall reject rule, or a "
                    "NAT or load balancer that had lost the flow).")
            fix = ["list reject rules on the path between the two hosts: nft list ruleset | grep -i reset; "
                   "iptables -S | grep -i reset"]
            if e.idle_s is not None and e.idle_s >= STALE_MIN_IDLE_S:
                fix.append("a NAT or load balancer that forgets idle flows: compare its idle timeout with this "
                           f"connection's idle time ({secs(e.idle_s)}) and keep connections idle for less")
        if gaps:
            text += " Not proven: " + "; ".join(gaps) + "."
        evidence = (proof,) + tuple(f"not proven: {g}" for g in gaps) + e.evidence
        return dataclasses.replace(e, verdict=verdict, who=Who.MIDDLEBOX, confidence=confidence,
                                   explanation=text, fix=tuple(fix), evidence=evidence)

    def _coverage_gaps(self, host: int, other: int, r: Record) -> list[str]:
        window = self.hosts[other].window
        label = self.hosts[other].label
        if window is None:
            return [f"it is not known when the recording of {label} started and ended"]
        sk = self.relative_skew(host, other)
        if sk is None:
            return [f"the clock of {label} could not be related to this host's, so it is not known that its "
                    "recording covered this moment"]
        t = r.wall_ns + sk.offset_ns
        if window[0] + sk.uncertainty_ns <= t <= window[1] - sk.uncertainty_ns:
            return []
        return [f"the recording of {label} ({iso(window[0])} to {iso(window[1])} on its clock) does not cover "
                f"this moment ({iso(t)} on its clock)"]

    # -- this side sent the reset --------------------------------------------------------
    def _we_sent(self, host: int, inc: Incident, e: Explanation, cp: Paired) -> Explanation:
        r = inc.primary
        other = self.hosts[cp.host]
        role = _role(cp, r)
        if cp.reset is not None:
            y = cp.reset
            got = f", its application saw {y.errno}" if y.errno else ""
            theirs = self.explained(cp.host, y)
            if theirs is not None and theirs.errno:
                got = f", its application saw {theirs.errno}"
            line = f"the {role}'s host ({other.label}) recorded this reset arriving in {y.state}{got}"
        else:
            line = (f"the {role}'s host ({other.label}) recorded this connection but not this reset arriving "
                    "(lost on the way, dropped by a middlebox, or its socket was already gone)")
        return dataclasses.replace(e, evidence=e.evidence + (line,))

    def _recorded_too(self, host: int, inc: Incident, cp: Paired) -> str:
        other = self.hosts[cp.host]
        last = cp.records[-1]
        return (f"the {_role(cp, inc.primary)}'s host ({other.label}) recorded this connection too: its last "
                f"record of it is a {last.type.value} in {last.state or 'no socket'}")

    # -- common ------------------------------------------------------------------------
    def _annotate(self, host: int, inc: Incident, e: Explanation, cp: Paired) -> Explanation:
        r = inc.primary
        other = self.hosts[cp.host]
        # The other end's view of the connection: the reset itself, else its latest record that
        # still has both ports (a socket's own tuple is cleared when it is unhashed at close).
        theirs = cp.reset or next((x for x in reversed(cp.records) if x.lport and x.rport), cp.records[-1])
        sk = self.relative_skew(host, cp.host)
        translated = _translated(r, theirs)
        pairing: dict[str, object] = {
            "paired": True, "host": other.label, "recording": other.path, "by": cp.by,
            "translated": translated,
            "clock_skew_s": None if sk is None else round(sk.offset_ns / 1e9, 6),
            "clock_skew_uncertainty_s": None if sk is None else round(sk.uncertainty_ns / 1e9, 6),
        }
        explained = self.explained(cp.host, theirs)
        peer: dict[str, object] = {
            "host": other.label, "recording": other.path, "event": theirs.type.value, "pid": theirs.pid or None,
            "comm": theirs.comm or None, "reason": theirs.reason, "state": theirs.state,
            "laddr": theirs.laddr, "lport": theirs.lport, "raddr": theirs.raddr, "rport": theirs.rport,
            "netns": theirs.netns,
        }
        if explained is not None:
            peer["verdict"] = explained.verdict.value
        how = ("by the sequence numbers of both byte streams" if cp.by == "stream origins" else
               "by the sequence numbers of the segment the reset answered")
        line = f"paired with {other.label}'s record of this connection ({other.path}) {how}"
        if translated:
            line += (f", despite translated addresses: this host sees {_view(r)}, {other.label} sees "
                     f"{_view(theirs)}")
        return dataclasses.replace(e, pairing=pairing, peer=peer,
                                   evidence=e.evidence + (line, _skew_text(sk, other.label)))

    def _unpaired(self, e: Explanation, inc: Incident, why: str) -> Explanation:
        if inc.peer is not None:
            why = "both ends were on this host (explained from both sides in this recording)"
            return dataclasses.replace(e, pairing={"paired": False, "why": why})
        return dataclasses.replace(e, pairing={"paired": False, "why": why},
                                   evidence=e.evidence + (f"not paired with another host's recording: {why}",))


def judge_all(hosts: Sequence[Host], per_host: Sequence[Sequence[tuple[Incident, Explanation]]],
              pairing: Pairing) -> list[tuple[int, Explanation]]:
    """Every host's events, judged from both sides where the other side was recorded."""
    # Keyed by Record.ident: the correlator may hand on copies (a holder learnt), not the
    # records the pairing saw.
    own: dict[tuple[int, tuple[str, int, int, int]], Explanation] = {}
    for h, items in enumerate(per_host):
        for inc, e in items:
            own[(h, inc.primary.ident)] = e
            if inc.error is not None:
                own[(h, inc.error.ident)] = e

    def lookup(h: int, r: Record) -> Optional[Explanation]:
        return own.get((h, r.ident))

    j = Judge(hosts, pairing, lookup)
    return [(h, j.judge(h, inc, e)) for h, items in enumerate(per_host) for inc, e in items]
