"""Facts about an event's owner read from /proc/<pid> while the process lives (its uid, its
cgroup), cached per pid.

A record is explained a little after it arrives (the correlator waits for its partners), and
the owner may have exited by then, so the fact is read when the record arrives and kept. The
cache is bounded (least recently used out, counted in `evicted`) and an entry is re-read after
`ttl_s`: a process can change uid or cgroup. Entries are per pid and process name (the record's
comm): a pid reused within the ttl by another program is another entry, read anew, not the
exited process's facts (a pid reused by the same program, a respawned worker, is not told
apart: it is most often the same service's). A process gone keeps what was known while it
lived; one never read before gets `gone`, which is final.
"""

from __future__ import annotations

import time
from typing import Callable, Generic, Optional, TypeVar

from tracer.model.bounded import BoundedDict

T = TypeVar("T")

MAX_PIDS = 4096
TTL_S = 30.0


class PidCache(Generic[T]):
    def __init__(self, read: Callable[[int], Optional[T]], gone: T, ttl_s: float = TTL_S,
                 limit: int = MAX_PIDS, clock: Callable[[], float] = time.monotonic) -> None:
        self._read = read          # None: the process is gone (or its file unreadable)
        self._gone = gone
        self._ttl = ttl_s
        self._clock = clock
        self._cache: BoundedDict[tuple[int, str], tuple[float, T]] = BoundedDict(limit)
        self.reads = 0             # /proc files read, for benchmarks and tests

    @property
    def evicted(self) -> int:
        return self._cache.evicted

    def __len__(self) -> int:
        return len(self._cache)

    def get(self, pid: int, comm: str = "") -> T:
        now = self._clock()
        key = (pid, comm)
        hit = self._cache.get(key)
        if hit is not None and (now - hit[0] < self._ttl or hit[1] == self._gone):
            self._cache.move_to_end(key)
            return hit[1]
        self.reads += 1
        found = self._read(pid)
        if found is None:
            found = hit[1] if hit is not None else self._gone
        self._cache[key] = (now, found)
        return found
