"""Kernel-side counters of a capture session, summed over CPUs (plain data for every sink)."""

from __future__ import annotations

from typing import Any

from dataclasses import dataclass


@dataclass(frozen=True)
class Counters:
    """Kernel-side counters, summed over CPUs."""

    lost: int
    filtered: int
    records: int
    socks_insert: int
    socks_delete: int
    rst_received: int
    rst_sent_by_reason: dict[str, int]
    aborts_by_errno: dict[int, int]
    states: dict[tuple[str, str], int]
    summarized: int = 0
    storm_full: int = 0

    @classmethod
    def replayed(cls, records: int, end: dict[str, Any]) -> "Counters":
        """What a recording's end line kept of a live run's counters."""
        return cls(lost=end.get("lost", 0), filtered=end.get("filtered", 0), records=records,
                   socks_insert=0, socks_delete=0, rst_received=0, rst_sent_by_reason={},
                   aborts_by_errno={}, states={})
