"""Exporter mode: Prometheus metrics of resets by reason, verdict, process and idle time.

Cheap by construction: resets by direction and reason, aborts by errno, state transitions and
active closes are counted in kernel maps and read at scrape time by a custom collector; only
the metrics that need the explainer (verdicts, processes, idle times) come from its running
totals. Label sets are bounded: the first --top-processes process names get their own label
value for the life of the exporter (so counters stay monotonic), later ones count as "other";
service endpoints (the listening side's address:port) are labels only with --endpoint-labels,
bounded the same way.
"""

from __future__ import annotations

import errno as errno_mod
import sys
import threading
import time
from collections import Counter, deque
from typing import TYPE_CHECKING, Any, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

from tracer.explain.rules import Explanation
from tracer.explain.summary import service_endpoint
from tracer.model.safe import label_value

if TYPE_CHECKING:
    from tracer.explain.pipeline import Pipeline
    from tracer.kernel.capture import Capture
    from tracer.kernel.loader import ActiveCloses

PREFIX = "tcptrace"
# Edges at the well-known idle timeouts (gunicorn/Node 2-5 s, ALB/Tomcat 60 s, nginx 75 s,
# Go 90 s, Azure 240 s, AWS NAT/NLB 350 s, GCP 600 s, GCP NAT 1200 s, Envoy 1 h).
IDLE_BUCKETS = (1, 5, 30, 60, 75, 90, 240, 350, 600, 1200, 3600)
TIME_WAIT_WINDOW_S = 60
OTHER = "other"


class StickyLabels:
    """The first `limit` distinct values keep their own label; the rest become 'other'. Every
    process-name and endpoint label value passes here, so control characters are replaced here
    (tracer.model.safe.label_value)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.known: set[str] = set()

    def __call__(self, value: str) -> str:
        value = label_value(value)
        if value in self.known:
            return value
        if len(self.known) < self.limit:
            self.known.add(value)
            return value
        return OTHER


class Totals:
    """Explainer-derived counters, updated by the event loop, read by scrapes."""

    def __init__(self, top_processes: int, endpoint_labels: bool) -> None:
        self.lock = threading.Lock()
        self.comm = StickyLabels(top_processes)
        self.endpoint = StickyLabels(top_processes) if endpoint_labels else None
        self.events: Counter[Any] = Counter()        # (event, verdict, who, comm)
        self.by_endpoint: Counter[str] = Counter()
        self.idle_buckets: dict[str, list[int]] = {}
        self.idle_sum: dict[str, float] = {}
        self.idle_count: Counter[str] = Counter()

    def add(self, e: Explanation, n: int = 1) -> None:
        with self.lock:
            comm = self.comm(e.comm or "unknown")
            self.events[(e.event, e.verdict.value, e.who.value, comm)] += n
            if self.endpoint is not None:
                # the service endpoint (the listening side's address:port): every client of one
                # service, and both ends of a connection, share one label value
                self.by_endpoint[self.endpoint(service_endpoint(e))] += n
            if e.idle_s is not None:
                b = self.idle_buckets.setdefault(e.event, [0] * len(IDLE_BUCKETS))
                for i, edge in enumerate(IDLE_BUCKETS):
                    if e.idle_s <= edge:
                        b[i] += 1
                self.idle_sum[e.event] = self.idle_sum.get(e.event, 0.0) + e.idle_s
                self.idle_count[e.event] += 1


class TimeWaitWindow:
    """Connections closed first per process: monotonic totals, and the last minute's worth (the
    TIME_WAIT sockets they hold). The kernel map is an LRU, so an entry can be evicted and come
    back from zero: totals add the increase per key, treating a drop as a fresh count."""

    def __init__(self) -> None:
        self.samples: deque[Any] = deque()   # (monotonic, {comm: running total})
        self.totals: Counter[Any] = Counter()
        self._last: dict[tuple[int, int, bytes, int], int] = {}

    def observe(self, t: float, snapshot: ActiveCloses) -> None:
        for key, (n, comm) in snapshot.items():
            prev = self._last.get(key, 0)
            self.totals[comm] += n - prev if n >= prev else n
            self._last[key] = n
        self._last = {k: v for k, v in self._last.items() if k in snapshot}
        self.add(t, dict(self.totals))

    def add(self, t: float, per_comm: dict[str, int]) -> None:
        self.samples.append((t, per_comm))
        while self.samples and t - self.samples[0][0] > TIME_WAIT_WINDOW_S:
            self.samples.popleft()

    def estimate(self) -> dict[str, int]:
        if len(self.samples) < 2:
            return {}
        (_, old), (_, new) = self.samples[0], self.samples[-1]
        return {c: n - old.get(c, 0) for c, n in new.items() if n - old.get(c, 0) > 0}


class KernelCollector:
    """prometheus_client custom collector: everything is read when Prometheus scrapes."""

    def __init__(self, capture: "Capture", totals: Totals, tw: TimeWaitWindow, attached: int,
                 pipeline: "Pipeline", build: tuple[str, str, str]) -> None:
        self.capture = capture
        self.pipeline = pipeline  # uncounts what --pid dropped once a holder was known
        self.build = build  # (tool version, bcc version, kernel release)
        self.totals = totals
        self.tw = tw
        self.attached = attached
        self.last_scrape_s = 0.0
        self.lock = threading.Lock()
        self.closed = False
        self.errors = 0

    def collect(self) -> Iterator[Metric]:
        # A scrape racing shutdown, or a kernel read failing, must not print a traceback from
        # the HTTP thread: serve what can be served and count the failure.
        with self.lock:
            if self.closed:
                return
            try:
                yield from self._collect()
            except Exception as exc:  # noqa: BLE001 - boundary of the HTTP thread
                self.errors += 1
                sys.stderr.write(f"tcptrace-explain exporter: scrape failed: {exc}\n")
            yield CounterMetricFamily(f"{PREFIX}_scrape_errors", "Scrapes that failed to read the kernel "
                                      "maps.", value=self.errors)

    def _collect(self) -> Iterator[Metric]:
        start = time.monotonic()
        c = self.pipeline.counters(self.capture.counters())
        info = GaugeMetricFamily(f"{PREFIX}_build_info", "Build and platform of the exporter (always 1).",
                                 labels=["version", "bcc", "kernel"])
        info.add_metric(list(self.build), 1)
        yield info
        yield GaugeMetricFamily(f"{PREFIX}_programs_attached", "BPF programs attached to tracepoints.",
                                value=self.attached)

        resets = CounterMetricFamily(f"{PREFIX}_resets", "TCP resets by direction and kernel reason "
                                     "(counted in the kernel; 'received' includes this host's own "
                                     "tcp_reset() before a TCP_ABORT_ON_DATA reset).", labels=["direction", "reason"])
        for reason, n in sorted(c.rst_sent_by_reason.items()):
            resets.add_metric(["sent", reason], n)
        resets.add_metric(["received", "none"], c.rst_received)
        yield resets
        aborts = CounterMetricFamily(f"{PREFIX}_aborts", "Errors reported to applications, by errno "
                                     "(counted in the kernel).", labels=["errno"])
        for num, n in sorted(c.aborts_by_errno.items()):
            aborts.add_metric([errno_mod.errorcode.get(num, str(num))], n)
        yield aborts
        states = CounterMetricFamily(f"{PREFIX}_state_transitions", "TCP state transitions of traced "
                                     "sockets (counted in the kernel).", labels=["from", "to"])
        for (a, b), n in sorted(c.states.items()):
            states.add_metric([a, b], n)
        yield states

        with self.totals.lock:
            # Fold label values first, then sum: several names folded into "other" must make
            # one series, not duplicates.
            closes: Counter[Any] = Counter()
            for comm, n in self.tw.totals.items():
                closes[self.totals.comm(comm)] += n
            active = CounterMetricFamily(f"{PREFIX}_active_closes", "Connections closed first by this host "
                                         "(each holds a TIME_WAIT socket for 60 s), by process.", labels=["comm"])
            for comm, n in sorted(closes.items()):
                active.add_metric([comm], n)
            yield active
            est: Counter[Any] = Counter()
            for comm, n in self.tw.estimate().items():
                est[self.totals.comm(comm)] += n
            tw = GaugeMetricFamily(f"{PREFIX}_time_wait_estimate", "Connections a process closed first in "
                                   "the last 60 s: the TIME_WAIT sockets it holds.", labels=["comm"])
            for comm, n in sorted(est.items()):
                tw.add_metric([comm], n)
            yield tw

            ev = CounterMetricFamily(f"{PREFIX}_events", "Explained resets and aborts by verdict, who reset "
                                     "and owning process.", labels=["event", "verdict", "who", "comm"])
            for key, n in sorted(self.totals.events.items()):
                ev.add_metric(list(key), n)
            yield ev
            if self.totals.endpoint is not None:
                rem = CounterMetricFamily(f"{PREFIX}_events_by_endpoint", "Explained events by service "
                                          "endpoint, the listening side's address:port (opt-in, bounded).",
                                          labels=["endpoint"])
                for key, n in sorted(self.totals.by_endpoint.items()):
                    rem.add_metric([key], n)
                yield rem
            hist = HistogramMetricFamily(f"{PREFIX}_reset_idle_seconds", "Idle time of the connection "
                                         "before the reset or abort.", labels=["event"])
            for event, counts in sorted(self.totals.idle_buckets.items()):
                buckets: list[tuple[str, float]] = [(str(edge), counts[i]) for i, edge in enumerate(IDLE_BUCKETS)]
                buckets.append(("+Inf", self.totals.idle_count[event]))
                hist.add_metric([event], buckets, self.totals.idle_sum.get(event, 0.0))
            yield hist

        yield CounterMetricFamily(f"{PREFIX}_records", "Records the kernel side submitted.", value=c.records)
        yield CounterMetricFamily(f"{PREFIX}_records_lost", "Records lost because the ring buffer was "
                                  "full (raise --ringbuf-pages).", value=c.lost)
        yield CounterMetricFamily(f"{PREFIX}_records_filtered", "Events dropped in the kernel by filters.",
                                  value=c.filtered)
        yield CounterMetricFamily(f"{PREFIX}_records_summarized", "Events over the per-CPU rate, counted in "
                                  "the kernel's storm summaries instead of sent one by one.", value=c.summarized)
        yield CounterMetricFamily(f"{PREFIX}_records_storm_overflow", "Storm events counted only in the kernel "
                                  "totals because the storm summary table was full.", value=c.storm_full)
        yield GaugeMetricFamily(f"{PREFIX}_scrape_duration_seconds", "Duration of the previous scrape.",
                                value=self.last_scrape_s)
        self.last_scrape_s = time.monotonic() - start
