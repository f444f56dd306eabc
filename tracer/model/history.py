"""A value per key over time: what a namespace inode was named, or a pid's cgroup or uid, when.

The kernel reuses namespace inodes and pids, so one key can stand for two things in one run.
A live run keeps, per key, the values it saw with the time each was first seen; its recording's
end line carries them, and replay takes for each event the value its key had at the event's
time. Pure data (tracer/model/netnames.py, tracer/kernel/cgroups.py, tracer/kernel/uids.py).
"""

from __future__ import annotations

from typing import Any, Callable, Generic, Optional, TypeVar

V = TypeVar("V")

MAX_PER_KEY = 16   # values one key had in a run (its oldest are dropped past this)


class History(Generic[V]):
    """key -> [(from ts_ns, value or None)], oldest first; None: the value went away."""

    def __init__(self, entries: Optional[dict[int, list[tuple[int, Optional[V]]]]] = None,
                 max_keys: Optional[int] = None) -> None:
        self.entries: dict[int, list[tuple[int, Optional[V]]]] = entries or {}
        self.max_keys = max_keys   # keys kept at most (new keys past it are not noted)

    def note(self, key: int, ts_ns: int, value: Optional[V]) -> None:
        h = self.entries.get(key)
        if h is None:
            if value is not None and (self.max_keys is None or len(self.entries) < self.max_keys):
                self.entries[key] = [(ts_ns, value)]
            return
        if h[-1][1] != value:
            h.append((max(ts_ns, h[-1][0]), value))
            del h[:-MAX_PER_KEY]

    def at(self, key: int, ts_ns: Optional[int]) -> Optional[V]:
        """The value `key` had at `ts_ns` (before the first entry: the first value; None: the last)."""
        h = self.entries.get(key)
        if not h:
            return None
        if ts_ns is None:
            return h[-1][1]
        value = h[0][1]
        for since, v in h:
            if since > ts_ns:
                break
            value = v
        return value

    def last(self) -> dict[int, V]:
        """key -> the last value it had that was not None."""
        out: dict[int, V] = {}
        for key, h in self.entries.items():
            known = [v for _, v in h if v is not None]
            if known:
                out[key] = known[-1]
        return out

    def merged_entries(self, other: "History[V]") -> dict[int, list[tuple[int, Optional[V]]]]:
        """Two runs' entries in one (recordings appended to one file), in time order."""
        out = {key: list(h) for key, h in self.entries.items()}
        for key, h in other.entries.items():
            out[key] = sorted(out.get(key, []) + list(h), key=lambda x: x[0])
        return out

    def to_json(self) -> dict[str, list[list[Any]]]:
        return {str(key): [[since, v] for since, v in h] for key, h in sorted(self.entries.items())}

    @staticmethod
    def entries_from_json(history: Any, flat: Any, valid: Callable[[Any], bool],
                          what: str) -> dict[int, list[tuple[int, Optional[V]]]]:
        """Entries from a recording's end line: the history `what`, and for a key it lacks (a
        recording made before histories were kept) its `flat` entry as its value throughout.
        ValueError if either is not of the recorded shape."""
        out: dict[int, list[tuple[int, Optional[V]]]] = {}
        if not isinstance(history or {}, dict) or not isinstance(flat or {}, dict):
            raise ValueError(f"{what} is not an object")
        for k, h in (history or {}).items():
            if not (str(k).isdigit() and isinstance(h, list) and all(
                    isinstance(x, list) and len(x) == 2 and type(x[0]) is int and (x[1] is None or valid(x[1]))
                    for x in h)):
                raise ValueError(f"{what} entry {k!r} is not a list of [ts_ns, value]")
            if h:
                out[int(k)] = [(x[0], x[1]) for x in h][-MAX_PER_KEY:]
        for k, v in (flat or {}).items():
            if not (str(k).isdigit() and valid(v)):
                raise ValueError(f"{what}: entry {k!r} is not of the recorded shape")
            out.setdefault(int(k), [(0, v)])
        return out
