"""Network namespace names over time: which `ip netns` name an inode had when.

Pure data, shared by the live NameCache (tracer/kernel/netns.py) and replay, which reads the
history a live run wrote into its recording's end line.
"""

from __future__ import annotations

from typing import Any, Optional

MAX_NAMES_PER_INODE = 16   # names one inode had in a run (its oldest are dropped past this)


class NameHistory:
    """Which `ip netns` name an inode had when: the kernel reuses a freed namespace's inode for
    the next namespace, so one inode can be "lab1-client" for the first events of a run and
    "lab2-client" for later ones. Entries are (from ts_ns, name or None), oldest first; None
    means the name went away (the namespace was deleted or its inode now has no name)."""

    def __init__(self, entries: Optional[dict[int, list[tuple[int, Optional[str]]]]] = None) -> None:
        self.entries: dict[int, list[tuple[int, Optional[str]]]] = entries or {}

    def note(self, ino: int, ts_ns: int, name: Optional[str]) -> None:
        h = self.entries.get(ino)
        if h is None:
            if name is not None:
                self.entries[ino] = [(ts_ns, name)]
            return
        if h[-1][1] != name:
            h.append((max(ts_ns, h[-1][0]), name))
            del h[:-MAX_NAMES_PER_INODE]

    def at(self, ino: int, ts_ns: int) -> Optional[str]:
        """The name `ino` had at `ts_ns` (before the first entry: the first name)."""
        h = self.entries.get(ino)
        if not h:
            return None
        name = h[0][1]
        for since, n in h:
            if since > ts_ns:
                break
            name = n
        return name

    def learn(self, ino: int, ts_ns: int) -> Optional[str]:
        """A recorded history is complete: what it says for that time (replay's NameSource)."""
        return self.at(ino, ts_ns)

    def merged(self, other: "NameHistory") -> "NameHistory":
        """Two runs' histories in one (recordings appended to one file), in time order."""
        out = {ino: list(h) for ino, h in self.entries.items()}
        for ino, h in other.entries.items():
            out[ino] = sorted(out.get(ino, []) + list(h), key=lambda x: x[0])
        return NameHistory(out)

    @classmethod
    def from_json(cls, history: Any, names: Any = None) -> "NameHistory":
        """From a recording's end line: "netns_history", and for an inode it lacks (a recording
        made before the history was kept) its "netns_names" entry as its name throughout.
        ValueError if either is not of the recorded shape."""
        out: dict[int, list[tuple[int, Optional[str]]]] = {}
        if not isinstance(history or {}, dict) or not isinstance(names or {}, dict):
            raise ValueError("netns_history or netns_names is not an object")
        for k, h in (history or {}).items():
            if not (str(k).isdigit() and isinstance(h, list) and all(
                    isinstance(x, list) and len(x) == 2 and type(x[0]) is int and (x[1] is None or isinstance(x[1], str))
                    for x in h)):
                raise ValueError(f"netns_history entry {k!r} is not a list of [ts_ns, name]")
            if h:
                out[int(k)] = [(x[0], x[1]) for x in h][-MAX_NAMES_PER_INODE:]
        for k, v in (names or {}).items():
            if not (str(k).isdigit() and isinstance(v, str)):
                raise ValueError(f"netns_names entry {k!r} is not inode: name")
            out.setdefault(int(k), [(0, v)])
        return cls(out)

    def last(self) -> dict[int, str]:
        """inode -> the last name it had (what `--netns NAME` of a replay resolves against)."""
        out: dict[int, str] = {}
        for ino, h in self.entries.items():
            named = [n for _, n in h if n is not None]
            if named:
                out[ino] = named[-1]
        return out

    def inodes_by_name(self) -> dict[str, int]:
        """Every name the run saw -> its inode (a name that named two inodes: the later)."""
        out: dict[str, int] = {}
        for ino, h in self.entries.items():
            for _, n in h:
                if n is not None:
                    out[n] = ino
        return out

    def to_json(self) -> dict[str, list[list[Any]]]:
        return {str(ino): [[since, n] for since, n in h] for ino, h in sorted(self.entries.items())}
