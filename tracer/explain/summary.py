"""Running totals of explained events, and the end-of-run summary built from them.

Events are grouped the way operators think about them: by service endpoint (the listening
side's address:port, the same for both ends of a connection and for every client of a service)
and by process name, with the pids listed. 200 short-lived `curl` processes refused by one port
are one group of 200, not 200 groups of one; per-pid detail stays in the JSON events and in
`by_pid`.

Bounded: per-key counters only, at most MAX_KEYS keys each, and at most MAX_PIDS pids kept per
process name; keys beyond the bound are counted under "other" so totals stay exact.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Optional, Sequence, Union

from tracer.explain.rules import Explanation

if TYPE_CHECKING:
    from tracer.explain.insights import Insight
    from tracer.explain.storm import StormCount

Group = tuple[str, str, str]  # (verdict, process name, service endpoint)

MAX_KEYS = 1000
MAX_PIDS = 256       # pids remembered per group and per process name; beyond it: "at least 256"
PIDS_SHOWN = 10      # pids listed by name in the console headline and the JSON top_fix
UNKNOWN_PROCESS = "unknown process"


def service_endpoint(e: Explanation) -> str:
    """Where the problem is, for grouping: the listening side's address:port."""
    return e.service or "?"


def process_name(e: Explanation) -> str:
    return e.comm or UNKNOWN_PROCESS


def count_text(pids: Sequence[int]) -> str:
    n = len(pids)
    return f"at least {n}" if n >= MAX_PIDS else str(n)


def processes_text(name: str, pids: tuple[int, ...], shown: int = PIDS_SHOWN) -> str:
    """'curl (200 processes: 4101, 4102, ... and 190 more)' / 'nginx (pid 17608)'."""
    if not pids:
        return name
    if len(pids) == 1:
        return f"{name} (pid {pids[0]})"
    listed = ", ".join(str(p) for p in pids[:shown])
    more = "" if len(pids) <= shown else (" and more" if len(pids) >= MAX_PIDS else f" and {len(pids) - shown} more")
    return f"{name} ({count_text(pids)} processes: {listed}{more})"


def _bump(c: Counter[Any], key: Any, n: int = 1) -> None:
    if key in c or len(c) < MAX_KEYS:
        c[key] += n
    else:
        c["other"] += n


@dataclass(frozen=True)
class TopFix:
    """The group whose fix would remove the most events."""

    verdict: str
    process: str              # process name, or "unknown process"
    pids: tuple[int, ...]     # the group's pids (at most MAX_PIDS), sorted
    endpoint: str             # the service endpoint
    events: int
    fix: str

    def processes_text(self, shown: int = PIDS_SHOWN) -> str:
        """'curl (200 processes: 4101, 4102, ... and 190 more)' / 'nginx (pid 17608)'."""
        if not self.pids:
            return self.process
        return processes_text(self.process, self.pids, shown)

    def to_json(self) -> dict[str, Any]:
        return {"verdict": self.verdict, "process": self.process, "pids": list(self.pids[:PIDS_SHOWN * 2]),
                "processes": len(self.pids), "endpoint": self.endpoint, "events": self.events, "fix": self.fix}


@dataclass
class Summary:
    total: int = 0
    summarized: int = 0                                  # of total: counted by the kernel in storms
    by_event: Counter[str] = field(default_factory=Counter)
    by_verdict: Counter[str] = field(default_factory=Counter)
    by_process: Counter[str] = field(default_factory=Counter)   # process name
    by_pid: Counter[str] = field(default_factory=Counter)       # "name (pid)": per-pid detail
    by_endpoint: Counter[str] = field(default_factory=Counter)  # service endpoint
    by_group: Counter[Any] = field(default_factory=Counter)     # Group, or "other" past MAX_KEYS
    pids: dict[Union[Group, str], set[int]] = field(default_factory=dict)  # group or name -> pids
    fixes: dict[Group, str] = field(default_factory=dict)       # group -> first fix
    insights: list[Insight] = field(default_factory=list)       # the latest insight per (kind, pid, remote)
    # entries the run's bounded user-space tables dropped, per table (set at the end of a run)
    evicted: dict[str, int] = field(default_factory=dict)

    def add(self, e: Explanation, n: int = 1) -> None:
        self.total += n
        name = process_name(e)
        where = service_endpoint(e)
        _bump(self.by_event, e.event, n)
        _bump(self.by_verdict, e.verdict.value, n)
        _bump(self.by_process, name, n)
        _bump(self.by_pid, f"{name} ({e.pid})" if e.pid else name, n)
        _bump(self.by_endpoint, where, n)
        group = (e.verdict.value, name, where)
        _bump(self.by_group, group, n)
        if e.pid:
            key: Union[Group, str]
            for key in (group, name):
                if key in self.by_group or key in self.by_process:
                    pids = self.pids.setdefault(key, set())
                    if len(pids) < MAX_PIDS:
                        pids.add(e.pid)
        if group not in self.fixes and e.fix and group in self.by_group:
            # only for groups with a count of their own (at most MAX_KEYS; the rest are "other")
            self.fixes[group] = e.fix[0]

    def add_storm(self, buckets: Sequence[StormCount]) -> None:
        for b in buckets:
            if b.type.value == "state":
                continue
            self.add(b.explained(), b.count)
            self.summarized += b.count

    def add_insight(self, ins: Insight) -> None:
        self.insights = [i for i in self.insights if (i.kind, i.pid, i.remote) != (ins.kind, ins.pid, ins.remote)]
        self.insights.append(ins)
        del self.insights[:-MAX_KEYS]

    def top_fix(self) -> Optional[TopFix]:
        """The fix that would remove the most events: the most frequent group's first fix. On a
        tie, a group with a known process comes first: it names who to change (the other end of
        the same connections, e.g. the host that refused them, has no process of its own)."""
        ranked = sorted(self.by_group.items(), key=lambda kv: (-kv[1], kv[0][1] == UNKNOWN_PROCESS))
        for group, n in ranked:
            if group in self.fixes:
                verdict, name, where = group
                return TopFix(verdict, name, tuple(sorted(self.pids.get(group, ()))), where, n, self.fixes[group])
        return None

    def process_pids(self, name: str) -> tuple[int, ...]:
        return tuple(sorted(self.pids.get(name, ())))

    def to_json(self) -> dict[str, Any]:
        top = self.top_fix()
        return {
            "total": self.total,
            "summarized": self.summarized,
            "by_event": dict(self.by_event),
            "by_verdict": dict(self.by_verdict),
            "by_process": {name: {"events": n, "pids": list(self.process_pids(name)[:PIDS_SHOWN * 2]),
                                  "processes": len(self.pids.get(name, ()))}
                           for name, n in self.by_process.most_common(20)},
            "by_pid": dict(self.by_pid.most_common(20)),
            "by_endpoint": dict(self.by_endpoint.most_common(20)),
            "insights": [i.to_json() for i in self.insights],
            "top_fix": None if top is None else top.to_json(),
            "evicted": dict(self.evicted),
        }
