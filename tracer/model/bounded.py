"""A dict with a size bound for user-space tables of long sessions: past `maxlen` entries the
least recently set one is dropped and counted in `evicted` (shown in the summary and in the
exporter's own metrics), so a run of days over millions of endpoints keeps its memory flat."""

from __future__ import annotations

from collections import OrderedDict
from typing import TypeVar

K = TypeVar("K")
V = TypeVar("V")


class BoundedDict(OrderedDict[K, V]):
    def __init__(self, maxlen: int) -> None:
        super().__init__()
        if maxlen < 1:
            raise ValueError("a bounded table holds at least one entry")
        self.maxlen = maxlen
        self.evicted = 0

    def __setitem__(self, key: K, value: V) -> None:
        super().__setitem__(key, value)
        self.move_to_end(key)
        while len(self) > self.maxlen:
            self.popitem(last=False)
            self.evicted += 1
