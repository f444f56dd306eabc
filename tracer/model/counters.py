"""Kernel-side counters of a capture session, summed over CPUs (plain data for every sink)."""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Optional

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
    # Kernels before 6.10 send resets with no socket and from TIME_WAIT sockets untraced: the
    # kernel's Tcp OutRsts delta over the session in the tracer's own network namespace, and
    # the resets the tool explained there (tracer/kernel/snmp.py). None where every reset is traced.
    kernel_out_rsts: Optional[int] = None
    explained_sent_here: int = 0
    # Records the kernel wrote into the ring that the tracer had not read when it exited: the
    # load went on through the final drain (tracer/live.py DRAIN_S). Neither lost nor explained.
    unread: int = 0
    # Kernel events a program was not run for (tracer/kernel/proginfo.py): no record of them
    # exists. None where the kernel keeps no such counter (before 5.12). By tracepoint in a live
    # run; a recording keeps the total only.
    missed: Optional[int] = None
    missed_by: dict[str, int] = dataclasses.field(default_factory=dict)
    # Tracepoints whose skips this kernel does not count (before 6.7): missed says nothing of them.
    missed_uncounted: tuple[str, ...] = ()

    @classmethod
    def missed_fields(cls, by: Optional[dict[str, int]], uncounted: tuple[str, ...] = ()) -> dict[str, Any]:
        """The missed counters from a live capture's per-tracepoint counts."""
        if by is None:
            return {"missed": None, "missed_by": {}, "missed_uncounted": ()}
        return {"missed": sum(by.values()), "missed_by": by, "missed_uncounted": uncounted}

    def without(self, dropped: Mapping[tuple[str, str], int]) -> "Counters":
        """These counters with the records user space filtered out moved to `filtered`: the
        kernel counted them before their holder was known (tracer/explain/owners.drop_key)."""
        if not dropped:
            return self
        sent = dict(self.rst_sent_by_reason)
        aborts = dict(self.aborts_by_errno)
        received = self.rst_received
        dropped = dict(dropped)  # a copy: the exporter reads while the event loop counts
        for (kind, name), n in dropped.items():
            if kind == "sent":
                sent[name] = sent.get(name, 0) - n
            elif kind == "received":
                received -= n
            else:
                aborts[int(name)] = aborts.get(int(name), 0) - n
        return dataclasses.replace(
            self, filtered=self.filtered + sum(dropped.values()), rst_received=received,
            rst_sent_by_reason={k: v for k, v in sent.items() if v},
            aborts_by_errno={k: v for k, v in aborts.items() if v})

    @classmethod
    def replayed(cls, records: int, end: dict[str, Any]) -> "Counters":
        """What a recording's end line kept of a live run's counters."""
        missed = end.get("missed")
        return cls(lost=end.get("lost", 0), filtered=end.get("filtered", 0), records=records,
                   socks_insert=0, socks_delete=0, rst_received=0, rst_sent_by_reason={},
                   aborts_by_errno={}, states={}, missed=missed)
