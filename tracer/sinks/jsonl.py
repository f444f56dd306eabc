"""The JSON-lines sink: one object per explained event on stdout (the contract of
docs/schema/event.schema.json); insights, storms, notices and the summary go to stderr."""

from __future__ import annotations

import json
import sys
from typing import IO, Optional, Sequence

from tracer.explain.insights import Insight
from tracer.explain.rules import Explanation
from tracer.explain.storm import StormCount
from tracer.explain.summary import Summary
from tracer.model.counters import Counters
from tracer.sinks.base import TableUsage
from tracer.model.safe import printable
from tracer.sinks.stream import whole

# ensure_ascii escapes every control and non-ASCII character: untrusted names stay inert. An
# event's JSON is a tree of fresh dicts and lists (Explanation.to_json), never a cycle, so the
# encoder skips the cycle check that costs json.dumps a third of its time per event.
_ENCODE = json.JSONEncoder(ensure_ascii=True, check_circular=False).encode


class JsonSink:
    """One JSON object per explained event on stdout; nothing else goes to stdout."""

    def __init__(self, out: Optional[IO[str]] = None, err: Optional[IO[str]] = None) -> None:
        self.out = whole(out or sys.stdout)
        self.err = whole(err or sys.stderr)

    def event(self, e: Explanation) -> None:
        self.out.write(_ENCODE(e.to_json()) + "\n")
        self.out.flush()

    def events(self, es: Sequence[Explanation]) -> None:
        # One write for the events released together (replay): a write per event was a tenth
        # of replay's time.
        if es:
            self.out.write("".join([_ENCODE(e.to_json()) + "\n" for e in es]))
            self.out.flush()

    def flush_storm(self) -> None:
        pass

    def storm(self, buckets: Sequence[StormCount]) -> None:
        self.err.write(json.dumps({"insight": "reset_storm", "summarized": sum(b.count for b in buckets),
                                   "buckets": [b.to_json() for b in buckets]}, ensure_ascii=True) + "\n")

    def insight(self, ins: Insight) -> None:
        # Insights are not events: they go to stderr so stdout stays one event per line.
        self.err.write(json.dumps(ins.to_json(), ensure_ascii=True) + "\n")

    def notice(self, message: str) -> None:
        self.err.write(printable(message) + "\n")

    def status(self, since: str, summary: Summary, counters: Counters) -> None:
        pass

    def summary(self, summary: Summary, counters: Counters, seconds: float,
                tables: Optional[TableUsage] = None) -> None:
        self.err.write(json.dumps({"summary": summary.to_json(), "records": counters.records,
                                   "lost": counters.lost, "unread": counters.unread, "filtered": counters.filtered,
                                   "missed": counters.missed, "missed_by": counters.missed_by,
                                   "missed_uncounted": list(counters.missed_uncounted),
                                   "summarized": counters.summarized, "storm_full": counters.storm_full,
                                   "kernel_out_rsts": counters.kernel_out_rsts,
                                   "explained_sent_here": counters.explained_sent_here,
                                   "seconds": round(seconds, 1), "tables": tables or {}}) + "\n")
