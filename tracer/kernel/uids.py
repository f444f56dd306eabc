"""The uid of an event's owner, read from /proc/<pid>/status while the process lives.

For --uid (tracer/explain/filters.py) and the event's `uid` field. Like the cgroup
(tracer/kernel/cgroups.py) it is read when the owner's record arrives, before the owner may
exit, and cached per pid: bounded (MAX_PIDS, least recently used out), re-read after TTL_S (a
process may change uid, a pid may be reused). A live run writes every owner's uid into its
recording, by time (a pid can be reused), so replay filters by the uids the live run saw.
"""

from __future__ import annotations

import time
from typing import Callable, Optional

from tracer.kernel import procfs
from tracer.kernel.pidcache import MAX_PIDS, TTL_S, PidCache
from tracer.model.history import History

SEEN_MAX = 16384


class UidResolver:
    def __init__(self, read: Callable[[int], Optional[int]] = procfs.process_uid, ttl_s: float = TTL_S,
                 limit: int = MAX_PIDS, clock: Callable[[], float] = time.monotonic) -> None:
        self._cache: PidCache[Optional[int]] = PidCache(read, None, ttl_s, limit, clock)
        # pid -> (from ts_ns, uid) of every owner seen (at most SEEN_MAX pids): the recording's
        # table, by time (a pid can be reused within a run)
        self.history: History[int] = History(max_keys=SEEN_MAX)

    @property
    def reads(self) -> int:
        return self._cache.reads

    @property
    def seen(self) -> dict[int, int]:
        """pid -> the last uid seen for it."""
        return self.history.last()

    def prime(self, pid: int, ts_ns: int = 0, comm: str = "") -> None:
        if pid:
            self.uid(pid, ts_ns, comm)

    def uid(self, pid: Optional[int], ts_ns: Optional[int] = None, comm: str = "") -> Optional[int]:
        """`pid`'s uid as now cached (for the process named `comm`, the record's); kept in the
        history from `ts_ns` when given."""
        if not pid:
            return None
        found = self._cache.get(pid, comm)
        if found is not None and ts_ns is not None:
            self.history.note(pid, ts_ns, found)
        return found


class RecordedUids:
    """Replay: the uids a live run saw, by time, from its recording's end line."""

    def __init__(self, history: History[int]) -> None:
        self._history = history

    def prime(self, pid: int, ts_ns: int = 0, comm: str = "") -> None:
        pass

    def uid(self, pid: Optional[int], ts_ns: Optional[int] = None, comm: str = "") -> Optional[int]:
        return self._history.at(pid, ts_ns) if pid else None
