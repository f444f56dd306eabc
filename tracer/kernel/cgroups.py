"""The cgroup of an event's owner, read from /proc/<pid>/cgroup while the process lives.

A record is explained a little after it arrives (the correlator waits for its partners), and
the process that owned the socket may have exited by then, so the owner's cgroup is read when
its record arrives (prime) and kept per pid. The cache is bounded (MAX_PIDS, least recently
used first out) and an entry is re-read after TTL_S: a process can be moved to another cgroup,
and a pid can be reused. What was seen is kept by time for the recording, so a reused pid keeps
both of its owners' cgroups (tracer/model/history.py).
"""

from __future__ import annotations

import time
from typing import Callable, Optional

from tracer.kernel import procfs
from tracer.kernel.pidcache import MAX_PIDS, TTL_S, PidCache
from tracer.model.cgroups import NO_OWNER, NOT_RECORDED, PROCESS_GONE, STATUSES, CgroupInfo, v2_path
from tracer.model.history import History

SEEN_MAX = 16384


class CgroupResolver:
    def __init__(self, read: Callable[[int], Optional[str]] = procfs.process_cgroup, ttl_s: float = TTL_S,
                 limit: int = MAX_PIDS, clock: Callable[[], float] = time.monotonic) -> None:
        def parsed(pid: int) -> Optional[CgroupInfo]:
            text = read(pid)
            return None if text is None else CgroupInfo.from_path(v2_path(text))

        self._cache: PidCache[CgroupInfo] = PidCache(parsed, CgroupInfo(PROCESS_GONE), ttl_s, limit, clock)
        # pid -> (from ts_ns, v2 path or the status saying why there is none) of every owner seen
        # (at most SEEN_MAX pids): the recording's table, since replay has no /proc. By time,
        # because a pid can be reused within a run.
        self.history: History[str] = History(max_keys=SEEN_MAX)

    @property
    def seen(self) -> dict[int, str]:
        """pid -> the last cgroup (or status) seen for it."""
        return self.history.last()

    @property
    def reads(self) -> int:
        """/proc/<pid>/cgroup files read, for benchmarks and tests."""
        return self._cache.reads

    @property
    def evicted(self) -> int:
        return self._cache.evicted

    def prime(self, pid: int, ts_ns: int = 0, comm: str = "") -> None:
        """Read `pid`'s cgroup now unless a fresh answer is cached (its record, of `ts_ns`, just
        arrived)."""
        if pid:
            self.info(pid, ts_ns, comm)

    def info(self, pid: Optional[int], ts_ns: Optional[int] = None, comm: str = "") -> CgroupInfo:
        """`pid`'s cgroup as now cached (for the process named `comm`, the record's); kept in the
        history from `ts_ns` (the time of the record or event it is for) when given."""
        if not pid:
            return CgroupInfo(NO_OWNER)
        found = self._cache.get(pid, comm)
        if ts_ns is not None:
            self.history.note(pid, ts_ns, found.workload.cgroup if found.workload else found.status)
        return found


class RecordedCgroups:
    """Replay: the cgroups a live run saw, by time, from its recording (RecordingWriter's end line)."""

    def __init__(self, history: History[str]) -> None:
        self._history = history

    def prime(self, pid: int, ts_ns: int = 0, comm: str = "") -> None:
        pass

    def info(self, pid: Optional[int], ts_ns: Optional[int] = None, comm: str = "") -> CgroupInfo:
        if not pid:
            return CgroupInfo(NO_OWNER)
        value = self._history.at(pid, ts_ns)
        if value is None:
            return CgroupInfo(NOT_RECORDED)
        if value.startswith("/"):
            return CgroupInfo.from_path(value)
        return CgroupInfo(value if value in STATUSES else NOT_RECORDED)
