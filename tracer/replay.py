"""Replay: a recording explained as a stream, as the live run explained it.

Records go through the same Pipeline as a live run's, in chunks, released by the newest
record's time as the live run released them by the clock: memory stays that of a live run's
window, not of the file. The work has two halves. The reader reads, decodes and correlates,
and settles cases; the explainer explains them, filters, prints and counts. The reader hands
the explainer what is settled, storms and the end, in stream order.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, Optional, Sequence

from tracer.explain.filters import NO_FILTER, EventFilter
from tracer.explain.owners import OwnerResolver
from tracer.explain.pipeline import Explainer, Pipeline, Settled
from tracer.explain.procinfo import RecordedFacts
from tracer.explain.storm import StormCount
from tracer.explain.summary import Summary
from tracer.kernel.attribution import Attributor
from tracer.kernel.cgroups import RecordedCgroups
from tracer.kernel.uids import RecordedUids
from tracer.model.counters import Counters
from tracer.model.errors import RecordingInvalid
from tracer.sinks import recording
from tracer.sinks.base import Sink

REPLAY_CHUNK = 4096


def replay(path: str, sink: Sink, event_filter: EventFilter = NO_FILTER) -> Summary:
    """Explain a recording as a stream: constant memory in the file's size."""
    reader, fh = recording.open_reader(path)
    with fh:
        try:
            return _replay(reader, recording.tail_end(path), sink, event_filter)
        except BrokenPipeError:
            raise                     # our reader went away (`| head -1`): not the recording's fault
        except OSError as exc:
            raise RecordingInvalid(f"cannot read {path}: {exc.strerror}") from exc


@dataclass(frozen=True)
class Ending:
    """What the explainer says at the end, from the reader's side."""

    counters: Counters
    name: str
    bad: int
    ignored_bytes: int
    evictions: dict[str, int]


class Explaining:
    """The explainer's half: settled cases and storms in, in stream order; the sink written."""

    def __init__(self, sink: Sink, event_filter: EventFilter, attribution: Attributor) -> None:
        self.sink = sink
        self.event_filter = event_filter
        self.attribution = attribution
        self.explainer = Explainer(attribution)
        self.summary = Summary()

    def settled(self, settled: Sequence[Settled]) -> None:
        shown = [e for e in self.explainer.explain(settled) if self.event_filter.match(e)]
        self.sink.events(shown)
        for e in shown:
            self.summary.add(e)

    def storm(self, drained: list[StormCount]) -> None:
        show_storm(drained, self.sink, self.summary, self.event_filter, self.attribution)

    def end(self, ending: Ending) -> Summary:
        if ending.bad:
            self.sink.notice(f"{ending.bad} records in {ending.name} could not be decoded and were skipped")
        if ending.ignored_bytes:
            self.sink.notice(f"{ending.name} ends in a partial line (the run was cut short: a crash, kill -9 or a "
                             f"full disk); its last {ending.ignored_bytes} bytes were ignored")
        self.summary.evicted = ending.evictions
        self.sink.summary(self.summary, ending.counters, 0.0)
        return self.summary


def _replay(reader: recording.Reader, end: Optional[dict[str, Any]], sink: Sink,
            event_filter: EventFilter) -> Summary:
    # Holders come from the recording's OWNER records; --pid decides on them as it did live, but
    # on the explanations: a recording holds the other processes' records too, and the peer's
    # record is what tells a peer's reset from a middlebox's.
    owners = OwnerResolver(scope=event_filter.scope if event_filter.pids else None, drop=False)
    attribution = recorded_attribution(end)
    pipe = Pipeline(recording.peer_check(end), owners, attribution,
                    RecordedFacts.from_end(recording.end_of(end).get("runtimes")))
    out = Explaining(sink, event_filter, attribution)
    storms: list[list[StormCount]] = []
    reader.on_storm = storms.append
    records = reader.iter_records()
    while True:
        chunk = list(itertools.islice(records, REPLAY_CHUNK))
        if chunk:
            pipe.feed(chunk)
            out.settled(pipe.release_settled(max(r.ts_ns for r in chunk)))
        for drained in storms:
            out.storm(drained)
        storms.clear()
        if not chunk:
            break
    out.settled(pipe.release_settled(None))
    ending = Ending(Counters.replayed(reader.count, recording.end_of(reader.end).get("counters", {})),
                    reader.name, reader.bad, reader.ignored_bytes, pipe.evictions())
    return out.end(ending)


def show_storm(drained: list[StormCount], sink: Sink, summary: Summary, event_filter: EventFilter,
               attributor: Attributor) -> None:
    buckets = [b for b in drained
               if event_filter.match_storm(b, attributor.annotate(b.explained()) if event_filter.judges_storm_explained else None)]
    if buckets:
        sink.storm(buckets)
        summary.add_storm(buckets)


def recorded_attribution(rec: recording.EndSource) -> Attributor:
    """Replay's cgroups and namespace names: the tables the live run wrote at its end (a
    recording made before cgroups were recorded gives events without cgroup fields)."""
    end = recording.end_of(rec)
    cgroups, uids = recording.pid_histories(end)
    return Attributor(None if cgroups is None else RecordedCgroups(cgroups), recording.netns_history(end),
                      None if uids is None else RecordedUids(uids))
