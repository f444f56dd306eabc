"""The uid of an event's owner, read from /proc/<pid>/status while the process lives.

For --uid (tracer/explain/filters.py) and the event's `uid` field. Like the cgroup
(tracer/kernel/cgroups.py) it is read when the owner's record arrives, before the owner may
exit, and cached per pid: bounded (MAX_PIDS, least recently used out), re-read after TTL_S (a
process may change uid, a pid may be reused). A live run writes every owner's uid into its
recording, so replay filters by the uids the live run saw.
"""

from __future__ import annotations

import time
from typing import Callable, Optional

from tracer.kernel import procfs
from tracer.kernel.pidcache import MAX_PIDS, TTL_S, PidCache

SEEN_MAX = 16384


class UidResolver:
    def __init__(self, read: Callable[[int], Optional[int]] = procfs.process_uid, ttl_s: float = TTL_S,
                 limit: int = MAX_PIDS, clock: Callable[[], float] = time.monotonic) -> None:
        self._cache: PidCache[Optional[int]] = PidCache(read, None, ttl_s, limit, clock)
        self.seen: dict[int, int] = {}    # pid -> uid of every owner seen: the recording's table

    @property
    def reads(self) -> int:
        return self._cache.reads

    def prime(self, pid: int) -> None:
        if pid:
            self.uid(pid)

    def uid(self, pid: Optional[int]) -> Optional[int]:
        if not pid:
            return None
        found = self._cache.get(pid)
        if found is not None and (len(self.seen) < SEEN_MAX or pid in self.seen):
            self.seen[pid] = found
        return found


class RecordedUids:
    """Replay: the uids a live run saw, from its recording's end line."""

    def __init__(self, table: dict[int, int]) -> None:
        self._table = table

    def prime(self, pid: int) -> None:
        pass

    def uid(self, pid: Optional[int]) -> Optional[int]:
        return self._table.get(pid) if pid else None
