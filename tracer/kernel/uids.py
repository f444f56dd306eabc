"""The uid of an event's owner, read from /proc/<pid>/status while the process lives.

For --uid (tracer/explain/filters.py) and the event's `uid` field. Like the cgroup
(tracer/kernel/cgroups.py) it is read when the owner's record arrives, before the owner may
exit, and cached per pid: bounded (MAX_PIDS, least recently used out), re-read after TTL_S (a
process may change uid, a pid may be reused). A live run writes every owner's uid into its
recording, so replay filters by the uids the live run saw.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Callable, Optional

from tracer.kernel import procfs

MAX_PIDS = 4096
TTL_S = 30.0
SEEN_MAX = 16384


class UidResolver:
    def __init__(self, read: Callable[[int], Optional[int]] = procfs.process_uid, ttl_s: float = TTL_S,
                 limit: int = MAX_PIDS, clock: Callable[[], float] = time.monotonic) -> None:
        self._read = read
        self._ttl = ttl_s
        self._limit = limit
        self._clock = clock
        self._cache: OrderedDict[int, tuple[float, Optional[int]]] = OrderedDict()
        self.reads = 0
        self.seen: dict[int, int] = {}    # pid -> uid of every owner seen: the recording's table

    def prime(self, pid: int) -> None:
        if pid:
            self.uid(pid)

    def uid(self, pid: Optional[int]) -> Optional[int]:
        if not pid:
            return None
        now = self._clock()
        hit = self._cache.get(pid)
        if hit is not None and (now - hit[0] < self._ttl or hit[1] is None):
            self._cache.move_to_end(pid)
            return hit[1]
        self.reads += 1
        found = self._read(pid)
        if found is None and hit is not None:
            found = hit[1]        # gone: keep what was known while it lived
        self._cache[pid] = (now, found)
        self._cache.move_to_end(pid)
        if found is not None and (len(self.seen) < SEEN_MAX or pid in self.seen):
            self.seen[pid] = found
        while len(self._cache) > self._limit:
            self._cache.popitem(last=False)
        return found


class RecordedUids:
    """Replay: the uids a live run saw, from its recording's end line."""

    def __init__(self, table: dict[int, int]) -> None:
        self._table = table

    def prime(self, pid: int) -> None:
        pass

    def uid(self, pid: Optional[int]) -> Optional[int]:
        return self._table.get(pid) if pid else None
