"""Running totals of explained events, and the end-of-run summary built from them.

Bounded: per-key counters only (verdict, process, remote endpoint), at most MAX_KEYS keys each;
keys beyond the bound are counted under "other" so totals stay exact.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Optional, Sequence

from tracer.explain.rules import Explanation, endpoint

if TYPE_CHECKING:
    from tracer.explain.insights import Insight
    from tracer.explain.storm import StormCount

Group = tuple[str, str, str]  # (verdict, process, service endpoint)

MAX_KEYS = 1000


def service_endpoint(e: Explanation) -> str:
    """Where the problem is, for grouping: the remote service for a client, and for a server its
    own port with the client's address (client ephemeral ports would make every event unique)."""
    if e.accepted:
        return f"{e.raddr} -> :{e.lport}"
    return endpoint(e.raddr, e.rport)


def _bump(c: Counter[Any], key: Any, n: int = 1) -> None:
    if key in c or len(c) < MAX_KEYS:
        c[key] += n
    else:
        c["other"] += n


@dataclass
class Summary:
    total: int = 0
    summarized: int = 0                                  # of total: counted by the kernel in storms
    by_event: Counter[str] = field(default_factory=Counter)
    by_verdict: Counter[str] = field(default_factory=Counter)
    by_process: Counter[str] = field(default_factory=Counter)
    by_remote: Counter[str] = field(default_factory=Counter)
    by_group: Counter[Any] = field(default_factory=Counter)   # (verdict, process, remote)
    fixes: dict[Group, str] = field(default_factory=dict)            # group -> first fix
    insights: list[Insight] = field(default_factory=list)         # the latest insight per (kind, pid, remote)

    def add(self, e: Explanation, n: int = 1) -> None:
        self.total += n
        proc = f"{e.comm or '?'} ({e.pid})" if e.pid else "unknown process"
        remote = service_endpoint(e)
        _bump(self.by_event, e.event, n)
        _bump(self.by_verdict, e.verdict.value, n)
        _bump(self.by_process, proc, n)
        _bump(self.by_remote, remote, n)
        group = (e.verdict.value, proc, remote)
        _bump(self.by_group, group, n)
        if group not in self.fixes and e.fix:
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

    def top_fix(self) -> Optional[tuple[Group, int, str]]:
        """The fix that would remove the most events: the most frequent group's first fix."""
        for group, n in self.by_group.most_common():
            if group in self.fixes:
                return group, n, self.fixes[group]
        return None

    def to_json(self) -> dict[str, Any]:
        top = self.top_fix()
        return {
            "total": self.total,
            "summarized": self.summarized,
            "by_event": dict(self.by_event),
            "by_verdict": dict(self.by_verdict),
            "by_process": dict(self.by_process.most_common(20)),
            "by_remote": dict(self.by_remote.most_common(20)),
            "insights": [i.to_json() for i in self.insights],
            "top_fix": None if top is None else {"verdict": top[0][0], "process": top[0][1],
                                                  "remote": top[0][2], "events": top[1], "fix": top[2]},
        }
