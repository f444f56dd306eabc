"""Records in, explanations out: the one path from a record stream to explained events.

Live tracing, replay, the exporter, the lab and the golden files all go through Pipeline, so a
recording replayed offline gives the explanations the live run printed. The correlator holds
back records whose partners may still arrive; ``release(None)`` flushes everything (end of a run
or of a recording).
"""

from __future__ import annotations

from typing import Callable, Iterable, Optional

from tracer.explain.correlate import Correlator
from tracer.explain.rules import Explanation, explain
from tracer.model.record import Record

PeerCheck = Callable[[str], Optional[bool]]


class Pipeline:
    def __init__(self, peer_is_local: Optional[PeerCheck] = None) -> None:
        self._corr = Correlator(peer_is_local=peer_is_local)

    def feed(self, records: Iterable[Record]) -> None:
        self._corr.feed(records)

    def release(self, now_ns: Optional[int]) -> list[Explanation]:
        """Explanations of every incident settled by ``now_ns`` (None: all of them)."""
        return [explain(inc) for inc in self._corr.release(now_ns)]

    @property
    def dropped_states(self) -> int:
        return self._corr.dropped_states


def explain_stream(records: Iterable[Record], peer_is_local: Optional[PeerCheck] = None) -> list[Explanation]:
    """A whole, finished stream (a recording, a test's records) explained at once."""
    p = Pipeline(peer_is_local)
    p.feed(records)
    return p.release(None)
