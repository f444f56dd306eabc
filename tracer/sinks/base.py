"""The interface every output sink of a live run or a replay implements.

tracer/live.py drives a Sink and nothing else: the console (tracer/sinks/console.py) and JSON
lines (tracer/sinks/jsonl.py) are the two implementations; the exporter keeps totals instead
(tracer/sinks/exporter.py) because Prometheus reads at scrape time.
"""

from __future__ import annotations

from typing import Mapping, Optional, Protocol, Sequence

from tracer.explain.insights import Insight
from tracer.explain.rules import Explanation
from tracer.explain.storm import StormCount
from tracer.explain.summary import Summary
from tracer.model.counters import Counters

TableUsage = Mapping[str, tuple[int, int]]


class Sink(Protocol):
    def event(self, e: Explanation) -> None:
        """One explained reset or abort, as soon as it is settled."""

    def events(self, es: Sequence[Explanation]) -> None:
        """Explained events settled together, in order: what event() would show of each."""

    def storm(self, buckets: Sequence[StormCount]) -> None:
        """Events the kernel counted instead of sending one by one (over its per-CPU rate)."""

    def insight(self, ins: Insight) -> None:
        """An aggregate pattern (e.g. a TIME_WAIT pile-up)."""

    def notice(self, message: str) -> None:
        """A line about the run itself (a traced process exited, records skipped)."""

    def status(self, since: str, summary: Summary, counters: Counters) -> None:
        """The periodic status line of a live run."""

    def summary(self, summary: Summary, counters: Counters, seconds: float,
                tables: Optional[TableUsage] = None) -> None:
        """The end-of-run summary."""
