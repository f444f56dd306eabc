"""Records in, explanations out: the one path from a record stream to explained events.

Live tracing, replay, the exporter, the lab and the golden files all go through Pipeline, so a
recording replayed offline gives the explanations the live run printed; a merge of several
hosts' recordings (explain_hosts) explains each host's stream the same way, then from both ends. The correlator holds
back records whose partners may still arrive; ``release(None)`` flushes everything (end of a run
or of a recording).
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Optional, Protocol, Sequence

from tracer.model.frozen import evolve
from tracer.explain import crosshost
from tracer.explain.case import Case, from_incident
from tracer.explain.correlate import Correlator, Incident
from tracer.explain.owners import OwnerResolver
from tracer.explain.pairing import HostStream, Pairing, seq_json
from tracer.explain.rules import Explanation, explain, explain_case
from tracer.model.counters import Counters
from tracer.model.record import Record

PeerCheck = Callable[[str], Optional[bool]]
# A settled incident as an Explainer needs it: its case and its record's sequence numbers.
Settled = tuple[Case, Optional[dict[str, object]]]


class FactsSource(Protocol):
    """Where runtimes come from: /proc while the processes live (procinfo.ProcessFacts), the
    recording's table in replay (procinfo.RecordedFacts)."""

    def note(self, pid: int, comm: str) -> None: ...

    def runtime(self, pid: int, comm: str) -> Optional[str]: ...


class Annotator(Protocol):
    """Facts about an event's owner that come from the host, not the records (its cgroup, the
    name of its network namespace): looked up as records arrive, while the owner still lives."""

    def prime(self, records: Sequence[Record]) -> None: ...

    def annotate(self, e: Explanation) -> Explanation: ...

    def fields(self, e: Explanation) -> dict[str, Any]: ...


class Pipeline:
    def __init__(self, peer_is_local: Optional[PeerCheck] = None, owners: Optional[OwnerResolver] = None,
                 annotator: Optional[Annotator] = None, facts: Optional[FactsSource] = None) -> None:
        self._corr = Correlator(peer_is_local=peer_is_local, owners=owners)
        self._annotator = annotator
        # Live runs read each process's runtime from /proc as its first record arrives; replay
        # has only the recorded process names (tracer/explain/procinfo.py).
        self._facts = facts

    def feed(self, records: Iterable[Record]) -> None:
        batch = list(records)
        if self._annotator is not None:
            self._annotator.prime(batch)
        if self._facts is not None:
            for r in batch:
                self._facts.note(r.pid, r.comm)
        self._corr.feed(batch)

    def release(self, now_ns: Optional[int]) -> list[Explanation]:
        """Explanations of every incident settled by ``now_ns`` (None: all of them)."""
        return [e for _, e in self.release_explained(now_ns)]

    def release_explained(self, now_ns: Optional[int]) -> list[tuple[Incident, Explanation]]:
        """Like release(), with the incident each explanation is about (for merges)."""
        runtime_of = self._facts.runtime if self._facts is not None else None
        fields = self._annotator.fields if self._annotator is not None else None
        return [(inc, _finished(explain(inc, runtime_of), seq_json(inc.primary), fields))
                for inc in self._corr.release(now_ns)]

    def release_settled(self, now_ns: Optional[int]) -> list[Settled]:
        """The part of release() that needs the stream: what is settled by ``now_ns``, as cases
        for an Explainer (replay explains them in a second process: tracer/replay.py)."""
        runtime_of = self._facts.runtime if self._facts is not None else None
        return [(from_incident(inc, runtime_of), seq_json(inc.primary)) for inc in self._corr.release(now_ns)]

    def evictions(self) -> dict[str, int]:
        """Entries the bounded user-space tables dropped, per table (summary, self metrics)."""
        return {"peer_index": self._corr.peers_evicted, "errno_index": self._corr.no_errno_evicted,
                **self._corr.owners.evictions()}

    @property
    def dropped_states(self) -> int:
        return self._corr.dropped_states

    @property
    def owners(self) -> OwnerResolver:
        return self._corr.owners

    def counters(self, kernel: Counters) -> Counters:
        """The kernel's counters less what --pid dropped here once a holder was known."""
        return kernel.without(self._corr.owners.dropped)


class Explainer:
    """The rest of release(): settled cases in, explanations out. It keeps no state of the
    stream, so it may run in another process than the Pipeline that settled the cases."""

    def __init__(self, annotator: Optional[Annotator] = None) -> None:
        self._fields = annotator.fields if annotator is not None else None

    def explain(self, settled: Sequence[Settled]) -> list[Explanation]:
        fields = self._fields
        return [_finished(explain_case(c), seq, fields) for c, seq in settled]


def _finished(e: Explanation, seq: Optional[dict[str, object]],
              fields: Optional[Callable[[Explanation], dict[str, Any]]]) -> Explanation:
    """The explanation with its sequence numbers and its annotator's fields, in one copy."""
    changes = fields(e) if fields is not None else {}
    if seq is not None:
        changes["seq"] = seq
    return evolve(e, **changes) if changes else e


def explain_stream(records: Iterable[Record], peer_is_local: Optional[PeerCheck] = None,
                   owners: Optional[OwnerResolver] = None, annotator: Optional[Annotator] = None,
                   facts: Optional[FactsSource] = None) -> list[Explanation]:
    """A whole, finished stream (a recording, a test's records) explained at once; `facts`
    already noted while the processes lived (tests/lab/runner.py), else names only."""
    p = Pipeline(peer_is_local, owners, annotator, facts)
    p.feed(records)
    return p.release(None)


def explain_hosts(hosts: Sequence[crosshost.Host]) -> tuple[list[tuple[int, Explanation]], Pairing]:
    """Several hosts' finished streams (one recording each), explained from both ends of every
    connection recorded on two of them; events in time order on the first host's clock."""
    per_host = []
    for h in hosts:
        p = Pipeline(h.peer_is_local)
        p.feed(h.records)
        per_host.append(p.release_explained(None))
    pairing = Pairing([HostStream(h.label, h.records) for h in hosts])
    judged = crosshost.judge_all(hosts, per_host, pairing)

    def when(item: tuple[int, Explanation]) -> int:
        h, e = item
        sk = pairing.skew[h]
        wall = e.ts_ns + hosts[h].mono_to_wall_ns
        return sk.correct(wall) if sk is not None else wall

    judged.sort(key=when)
    return judged, pairing
