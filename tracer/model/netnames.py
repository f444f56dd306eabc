"""Network namespace names over time: which `ip netns` name an inode had when.

Pure data, shared by the live NameCache (tracer/kernel/netns.py) and replay, which reads the
history a live run wrote into its recording's end line.
"""

from __future__ import annotations

from typing import Any, Optional

from tracer.model.history import MAX_PER_KEY, History

MAX_NAMES_PER_INODE = MAX_PER_KEY   # names one inode had in a run (its oldest are dropped past this)


class NameHistory(History[str]):
    """Which `ip netns` name an inode had when: the kernel reuses a freed namespace's inode for
    the next namespace, so one inode can be "lab1-client" for the first events of a run and
    "lab2-client" for later ones. Entries are (from ts_ns, name or None), oldest first; None
    means the name went away (the namespace was deleted or its inode now has no name)."""

    def learn(self, ino: int, ts_ns: int) -> Optional[str]:
        """A recorded history is complete: what it says for that time (replay's NameSource)."""
        return self.at(ino, ts_ns)

    def merged(self, other: "NameHistory") -> "NameHistory":
        """Two runs' histories in one (recordings appended to one file), in time order."""
        return NameHistory(self.merged_entries(other))

    @classmethod
    def from_json(cls, history: Any, names: Any = None) -> "NameHistory":
        """From a recording's end line: "netns_history", and for an inode it lacks (a recording
        made before the history was kept) its "netns_names" entry as its name throughout.
        ValueError if either is not of the recorded shape."""
        return cls(cls.entries_from_json(history, names, lambda v: isinstance(v, str), "netns_history"))

    def inodes_by_name(self) -> dict[str, int]:
        """Every name the run saw -> its inode (a name that named two inodes: the later)."""
        out: dict[str, int] = {}
        for ino, h in self.entries.items():
            for _, n in h:
                if n is not None:
                    out[n] = ino
        return out
