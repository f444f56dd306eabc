"""The cgroup of an event's owner, read from /proc/<pid>/cgroup while the process lives.

A record is explained a little after it arrives (the correlator waits for its partners), and
the process that owned the socket may have exited by then, so the owner's cgroup is read when
its record arrives (prime) and kept per pid. The cache is bounded (MAX_PIDS, least recently
used first out) and an entry is re-read after TTL_S: a process can be moved to another cgroup,
and a pid can be reused.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Callable, Optional

from tracer.kernel import procfs
from tracer.model.cgroups import NO_OWNER, NOT_RECORDED, PROCESS_GONE, STATUSES, CgroupInfo, v2_path

MAX_PIDS = 4096
TTL_S = 30.0
SEEN_MAX = 16384


class CgroupResolver:
    def __init__(self, read: Callable[[int], Optional[str]] = procfs.process_cgroup, ttl_s: float = TTL_S,
                 limit: int = MAX_PIDS, clock: Callable[[], float] = time.monotonic) -> None:
        self._read = read
        self._ttl = ttl_s
        self._limit = limit
        self._clock = clock
        self._cache: OrderedDict[int, tuple[float, CgroupInfo]] = OrderedDict()
        self.reads = 0           # /proc/<pid>/cgroup files read, for benchmarks and tests
        self.evicted = 0
        # pid -> v2 path, or the status saying why there is none, of every owner seen (at most
        # SEEN_MAX): the recording's table, since replay has no /proc
        self.seen: dict[int, str] = {}

    def prime(self, pid: int) -> None:
        """Read `pid`'s cgroup now unless a fresh answer is cached (a record just arrived)."""
        if pid:
            self.info(pid)

    def info(self, pid: Optional[int]) -> CgroupInfo:
        if not pid:
            return CgroupInfo(NO_OWNER)
        now = self._clock()
        hit = self._cache.get(pid)
        if hit is not None and (now - hit[0] < self._ttl or hit[1].status == PROCESS_GONE):
            self._cache.move_to_end(pid)
            return hit[1]
        self.reads += 1
        text = self._read(pid)
        if text is None:
            # Gone: keep what was known while it lived (its records are still being explained).
            found = hit[1] if hit is not None else CgroupInfo(PROCESS_GONE)
        else:
            found = CgroupInfo.from_path(v2_path(text))
        self._cache[pid] = (now, found)
        self._cache.move_to_end(pid)
        if len(self.seen) < SEEN_MAX or pid in self.seen:
            self.seen[pid] = found.workload.cgroup if found.workload else found.status
        while len(self._cache) > self._limit:
            self._cache.popitem(last=False)
            self.evicted += 1
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
