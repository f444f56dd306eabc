"""The cgroup of an event's owner, read from /proc/<pid>/cgroup while the process lives.

A record is explained a little after it arrives (the correlator waits for its partners), and
the process that owned the socket may have exited by then, so the owner's cgroup is read when
its record arrives (prime) and kept per pid. The cache is bounded (MAX_PIDS, least recently
used first out) and an entry is re-read after TTL_S: a process can be moved to another cgroup,
and a pid can be reused.
"""

from __future__ import annotations

import time
from typing import Callable, Optional

from tracer.kernel import procfs
from tracer.kernel.pidcache import MAX_PIDS, TTL_S, PidCache
from tracer.model.cgroups import NO_OWNER, NOT_RECORDED, PROCESS_GONE, STATUSES, CgroupInfo, v2_path

SEEN_MAX = 16384


class CgroupResolver:
    def __init__(self, read: Callable[[int], Optional[str]] = procfs.process_cgroup, ttl_s: float = TTL_S,
                 limit: int = MAX_PIDS, clock: Callable[[], float] = time.monotonic) -> None:
        def parsed(pid: int) -> Optional[CgroupInfo]:
            text = read(pid)
            return None if text is None else CgroupInfo.from_path(v2_path(text))

        self._cache: PidCache[CgroupInfo] = PidCache(parsed, CgroupInfo(PROCESS_GONE), ttl_s, limit, clock)
        # pid -> v2 path, or the status saying why there is none, of every owner seen (at most
        # SEEN_MAX): the recording's table, since replay has no /proc
        self.seen: dict[int, str] = {}

    @property
    def reads(self) -> int:
        """/proc/<pid>/cgroup files read, for benchmarks and tests."""
        return self._cache.reads

    @property
    def evicted(self) -> int:
        return self._cache.evicted

    def prime(self, pid: int) -> None:
        """Read `pid`'s cgroup now unless a fresh answer is cached (a record just arrived)."""
        if pid:
            self.info(pid)

    def info(self, pid: Optional[int]) -> CgroupInfo:
        if not pid:
            return CgroupInfo(NO_OWNER)
        found = self._cache.get(pid)
        if len(self.seen) < SEEN_MAX or pid in self.seen:
            self.seen[pid] = found.workload.cgroup if found.workload else found.status
        return found


class RecordedCgroups:
    """Replay: the cgroups a live run saw, from its recording (RecordingWriter's end line)."""

    def __init__(self, table: dict[int, str]) -> None:
        self._table = table

    def prime(self, pid: int) -> None:
        pass

    def info(self, pid: Optional[int]) -> CgroupInfo:
        if not pid:
            return CgroupInfo(NO_OWNER)
        if pid not in self._table:
            return CgroupInfo(NOT_RECORDED)
        value = self._table[pid]
        if value.startswith("/"):
            return CgroupInfo.from_path(value)
        return CgroupInfo(value if value in STATUSES else NOT_RECORDED)
