"""Replay: a recording explained as a stream, as the live run explained it.

Records go through the same Pipeline as a live run's, in chunks, released by the newest
record's time as the live run released them by the clock: memory stays that of a live run's
window, not of the file. The work has two halves. The reader (this process) reads, decodes and
correlates, and settles cases; the explainer explains them, filters, prints and counts. Either
both run here (processes=1), or the explainer runs in a forked child (processes=2,
tracer/forked.py) and the halves overlap on two CPUs; the output is the same byte for byte.
"""

from __future__ import annotations

import itertools
import os
import sys
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Optional, Sequence

from tracer import forked
from tracer.explain.filters import NO_FILTER, EventFilter
from tracer.explain.owners import OwnerResolver, PidScope
from tracer.explain.pipeline import Explainer, Pipeline, Settled
from tracer.explain.procinfo import RecordedFacts
from tracer.explain.storm import StormCount
from tracer.explain.summary import Summary
from tracer.kernel.attribution import Attributor
from tracer.kernel.cgroups import RecordedCgroups
from tracer.kernel.uids import RecordedUids
from tracer.model.counters import Counters
from tracer.sinks import recording
from tracer.sinks.base import Sink

REPLAY_CHUNK = 4096
# Below this size a recording is replayed in one process: a fork costs more than it saves.
SPLIT_MIN_BYTES = 4 << 20


def default_processes(path: str) -> int:
    """2 when the recording is big enough to gain from a second process, this process may run
    on two CPUs and its output goes to file descriptors (which the child shares), else 1."""
    if not forked.shares(sys.stdout, sys.stderr):
        return 1
    try:
        cpus = len(os.sched_getaffinity(0))
        size = os.stat(path).st_size
    except OSError:
        return 1
    return 2 if cpus >= 2 and size >= SPLIT_MIN_BYTES else 1


def replay(path: str, sink: Sink, event_filter: EventFilter = NO_FILTER, processes: int = 1) -> Summary:
    """Explain a recording as a stream: constant memory in the file's size. processes=2 needs a
    sink that writes to file descriptors (the CLI's), since the child process does the writing."""
    if processes not in (1, 2):
        raise ValueError(f"processes must be 1 or 2, not {processes}")
    if processes == 2 and not forked.shares(sys.stdout, sys.stderr):
        processes = 1     # what a child wrote there would be lost (a test's captured output)
    reader, fh = recording.open_reader(path)
    with fh:
        # Errors say which side failed: the recording's reads (RecordingInvalid, from the
        # reader) or the output's writes (OutputFailed, from the sinks' streams).
        return _replay(reader, recording.tail_end(path), sink, event_filter, processes)


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

    def handle(self, kind: str, payload: Any) -> Optional[Summary]:
        """A message from the reader in another process: (the pids --children learnt, if
        that changed; the settled cases or the storm), or the end."""
        if kind == forked.END:
            return self.end(payload)
        learnt, body = payload
        if learnt is not None:
            self.event_filter.scope.learnt = OrderedDict.fromkeys(learnt)
        if kind == "settled":
            self.settled(body)
        elif kind == "storm":
            self.storm(body)
        else:
            raise ValueError(f"unknown message {kind!r}")
        return None

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


class _InProcess:
    """The explainer's half called directly (processes=1): it shares the reader's scope."""

    def __init__(self, explaining: Explaining) -> None:
        self._explaining = explaining

    def send(self, kind: str, payload: Any) -> None:
        self._explaining.handle(kind, (None, payload))

    def finish(self, payload: Ending) -> Summary:
        return self._explaining.end(payload)

    def abandon(self, interrupt: bool = False) -> Optional[BaseException]:
        return None


class _ToChild:
    """The explainer's half in a forked child (processes=2). --pid --children learns the
    family's pids in this process, as owners are resolved; the child's copy of the filter gets
    them with the next message after they changed, which is when one process would have used
    them."""

    def __init__(self, child: forked.Forked, scope: PidScope) -> None:
        self._child = child
        self._scope = scope
        self._sent = scope.learnings

    def send(self, kind: str, payload: Any) -> None:
        learnt = None
        if self._scope.learnings != self._sent:
            self._sent = self._scope.learnings
            learnt = tuple(self._scope.learnt)
        self._child.send(kind, (learnt, payload))

    def finish(self, payload: Ending) -> Summary:
        result: Summary = self._child.finish(payload)
        return result

    def abandon(self, interrupt: bool = False) -> Optional[BaseException]:
        return self._child.abandon(interrupt)


def _replay(reader: recording.Reader, end: Optional[dict[str, Any]], sink: Sink,
            event_filter: EventFilter, processes: int = 1) -> Summary:
    # Holders come from the recording's OWNER records; --pid decides on them as it did live, but
    # on the explanations: a recording holds the other processes' records too, and the peer's
    # record is what tells a peer's reset from a middlebox's.
    owners = OwnerResolver(scope=event_filter.scope if event_filter.pids else None, drop=False)
    attribution = recorded_attribution(end)
    pipe = Pipeline(recording.peer_check(end), owners, attribution,
                    RecordedFacts.from_end(recording.end_of(end).get("runtimes")))
    explaining = Explaining(sink, event_filter, attribution)
    out: Any = _InProcess(explaining)
    if processes == 2:
        child = forked.start(explaining.handle)
        if isinstance(child, OSError):
            sink.notice(f"replay: no second process ({child.strerror or child}); explaining in this one")
        else:
            out = _ToChild(child, event_filter.scope)
    try:
        storms: list[list[StormCount]] = []
        reader.on_storm = storms.append
        records = reader.iter_records()
        while True:
            chunk = list(itertools.islice(records, REPLAY_CHUNK))
            if chunk:
                pipe.feed(chunk)
                out.send("settled", pipe.release_settled(max(r.ts_ns for r in chunk)))
            for drained in storms:
                out.send("storm", drained)
            storms.clear()
            if not chunk:
                break
        out.send("settled", pipe.release_settled(None))
        ending = Ending(Counters.replayed(reader.count, recording.end_of(reader.end).get("counters", {})),
                        reader.name, reader.bad, reader.ignored_bytes, pipe.evictions())
        summary: Summary = out.finish(ending)
    except BaseException as exc:
        # The child works behind this process: an error of its own (a full disk, a closed
        # stdout) came first in the stream's order, and is the one a single process meets.
        first = out.abandon(interrupt=isinstance(exc, KeyboardInterrupt))
        if first is not None and not isinstance(exc, KeyboardInterrupt):
            raise first from None
        raise
    return summary


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
