"""The explained event (the JSON contract of shared/DESIGN.md) and the small formatting helpers
every sentence about it uses: durations, endpoints, process names, timestamps, errno names.
"""

from __future__ import annotations

import errno as errno_mod
import math
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Mapping, Optional

from tracer.model.frozen import fast_init
from tracer.model.cgroups import CgroupInfo
from tracer.model.verdicts import Confidence, Verdict, Who


@fast_init
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
    # The listening side's address:port: the same for both ends of a connection and for every
    # client of one service, so events group by the service (never by ephemeral client ports).
    service: str = ""
    role: Optional[str] = None  # "server" | "client" on this host; None when the event cannot tell
    owner_candidates: tuple[int, ...] = ()  # pid is None: the listener's owner, then its children
    # Inferred timeouts as [lower, upper] (tracer/explain/bounds.py), by the names of `inferred`.
    inferred_range: Mapping[str, list[float]] = field(default_factory=dict)
    # The software whose setting the explanation names: identified (its process) or for example.
    software: Optional[Mapping[str, object]] = None
    # Which socket calls fail and how (tracer/explain/appview.py): [{"call", "result"}]
    app_sees: tuple[Mapping[str, str], ...] = ()
    runtime: Optional[str] = None          # the owner's runtime: python | java | go | node | libpq | hiredis | curl
    # The owner's cgroup and the workload it names (systemd unit, container, pod), or why it is
    # not known; None where nothing looked (tracer/kernel/attribution.py fills it in).
    cgroup: Optional[CgroupInfo] = None
    netns_name: Optional[str] = None   # the `ip netns` name of the event's namespace, if it has one
    uid: Optional[int] = None          # the owner's effective uid, when it was read (tracer/kernel/uids.py)

    def to_json(self) -> dict[str, object]:
        d: dict[str, object] = {
            "ts": self.ts, "event": self.event, "pid": self.pid, "comm": self.comm,
            "family": self.family, "laddr": self.laddr, "lport": self.lport, "raddr": self.raddr,
            "rport": self.rport, "state": self.state, "reason": self.reason, "errno": self.errno,
            "idle_s": self.idle_s, "age_s": self.age_s, "verdict": self.verdict.value,
            "who": self.who.value, "confidence": self.confidence.value,
            "explanation": self.explanation, "evidence": list(self.evidence), "fix": list(self.fix),
            "netns": self.netns, "service": self.service, "role": self.role,
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
        if self.owner_candidates:
            d["owner_candidates"] = list(self.owner_candidates)
        if self.cgroup is not None:
            d.update(self.cgroup.to_json())
        if self.netns_name is not None:
            d["netns_name"] = self.netns_name
        if self.uid is not None:
            d["uid"] = self.uid
        if self.inferred_range:
            d["inferred_range"] = {k: list(v) for k, v in self.inferred_range.items()}
        if self.software:
            d["software"] = dict(self.software)
        if self.runtime:
            d["runtime"] = self.runtime
        if self.app_sees:
            d["app_sees"] = [dict(x) for x in self.app_sees]
        return d


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


# The text of the last whole second iso() printed: events come in bursts, and building the
# datetime and strftime are most of its cost.
_ISO_SECOND: list[Any] = [None, ""]


def iso(wall_ns: int) -> str:
    # datetime.fromtimestamp(wall_ns / 1e9) splits the float as CPython does (modf, then the
    # fraction rounded half to even to microseconds, carrying into the second), done here so
    # the datetime is built only when the second changes.
    frac, whole = math.modf(wall_ns / 1e9)
    us = round(frac * 1e6)
    second = int(whole)
    if us >= 1_000_000:
        us -= 1_000_000
        second += 1
    if second != _ISO_SECOND[0]:
        _ISO_SECOND[0] = second
        _ISO_SECOND[1] = datetime.fromtimestamp(second, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.")
    text: str = _ISO_SECOND[1]
    return text + f"{us // 1000:03d}Z"


def errno_text(name: Optional[str]) -> str:
    if not name:
        return ""
    num = getattr(errno_mod, name, None)
    return f"{name} ({os.strerror(num)})" if num else name
