"""Who an event's owner is on this host: its cgroup (and the unit, container and pod that
names) and the `ip netns` name of its network namespace, for the pipeline's Annotator.

Looked up when a record arrives, while its owner still runs; replay takes the same facts from
the tables the live run wrote into its recording (RecordedCgroups, the netns names).
"""

from __future__ import annotations

from typing import Any, Optional, Protocol, Sequence

from tracer.model.frozen import evolve
from tracer.explain.explanation import Explanation
from tracer.model.cgroups import CgroupInfo
from tracer.model.record import Record


class CgroupSource(Protocol):
    def prime(self, pid: int, ts_ns: int = 0, comm: str = "") -> None: ...

    def info(self, pid: Optional[int], ts_ns: Optional[int] = None, comm: str = "") -> CgroupInfo: ...


class NameSource(Protocol):
    def learn(self, ino: int, ts_ns: int) -> Optional[str]: ...

    def at(self, ino: int, ts_ns: int) -> Optional[str]: ...


class UidSource(Protocol):
    def prime(self, pid: int, ts_ns: int = 0, comm: str = "") -> None: ...

    def uid(self, pid: Optional[int], ts_ns: Optional[int] = None, comm: str = "") -> Optional[int]: ...


class Attributor:
    """The pipeline's Annotator. `cgroups` None: no cgroup fields (a recording made before
    they existed); `names`: the namespace names by inode and time; `uids`: the owner's uid (--uid)."""

    def __init__(self, cgroups: Optional[CgroupSource], names: NameSource,
                 uids: Optional[UidSource] = None) -> None:
        self.cgroups = cgroups
        self.names = names
        self.uids = uids

    def prime(self, records: Sequence[Record]) -> None:
        for r in records:
            if self.cgroups is not None and r.pid:
                self.cgroups.prime(r.pid, r.ts_ns, r.comm)
            if self.uids is not None and r.pid:
                self.uids.prime(r.pid, r.ts_ns, r.comm)
            self.names.learn(r.netns, r.ts_ns)

    def annotate(self, e: Explanation) -> Explanation:
        return evolve(e, **self.fields(e))

    def fields(self, e: Explanation) -> dict[str, Any]:
        """What annotate() sets: the owner's cgroup and uid, the namespace's name."""
        comm = e.comm or ""
        return {"cgroup": self.cgroups.info(e.pid, e.ts_ns, comm) if self.cgroups is not None else None,
                "netns_name": self.names.at(e.netns, e.ts_ns) if e.netns else None,
                "uid": self.uids.uid(e.pid, e.ts_ns, comm) if self.uids is not None else None}
