"""Exporter mode: Prometheus metrics of resets by reason, verdict, process and idle time.

Cheap by construction: resets by direction and reason, aborts by errno, state transitions and
active closes are counted in kernel maps and read at scrape time by a custom collector; only
the metrics that need the explainer (verdicts, processes, idle times) come from its running
totals. Label sets are bounded: the first --top-processes process names get their own label
value for the life of the exporter (so counters stay monotonic), later ones count as "other";
service endpoints (the listening side's address:port) are labels only with --endpoint-labels,
bounded the same way; so are workloads (systemd unit, container, pod), with --top-workloads
and a retirement of the ones without events for WORKLOAD_TTL_S, since pods come and go.

Series at 0: every label combination known before the first event (the kernel's reset
reasons, the errnos TCP's reset and abort paths set, the explainer's (event, verdict, who)
rules, the event kinds of the idle histogram) is served from the first scrape at 0, so the
first burst is an increase Prometheus sees (a series that appears at 6 has no increase).
"""

from __future__ import annotations

import errno as errno_mod
import sys
import threading
import time
from collections import Counter, deque
from typing import TYPE_CHECKING, Any, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

from tracer.explain.rules import RULES, Explanation
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
# What tcp_reset() (ECONNREFUSED in SYN_SENT, EPIPE in CLOSE_WAIT, ECONNRESET otherwise),
# tcp_write_err() (ETIMEDOUT) and tcp_abort() (ECONNABORTED) report: net/ipv4/tcp_input.c,
# tcp_timer.c, tcp.c. Other errnos (ICMP errors) get their series when first seen.
KNOWN_ERRNOS = ("ECONNREFUSED", "ECONNRESET", "EPIPE", "ETIMEDOUT", "ECONNABORTED")
# A workload label set with no event for this long gives its slot back (its series goes).
WORKLOAD_TTL_S = 3600.0
WORKLOAD_LABELS = ["event", "unit", "container", "pod_uid", "pod_qos"]


def known_explained() -> list[tuple[str, str, str]]:
    """(event, verdict, who) of every rule of the explainer: the series that start at 0."""
    return sorted({(r.event.value, r.verdict.value, r.who.value) for r in RULES})


def event_kinds() -> list[str]:
    return sorted({r.event.value for r in RULES})


def workload_key(e: Explanation) -> tuple[str, str, str, str]:
    """(unit, container, pod_uid, pod_qos) label values of an event's owner ('' where none).
    A container is runtime://id, as Kubernetes writes container IDs; its systemd scope is then
    not repeated as the unit."""
    w = e.cgroup.workload if e.cgroup is not None else None
    if w is None:
        return ("", "", "", "")
    container = f"{w.container_runtime or 'unknown'}://{w.container_id}" if w.container_id else ""
    unit = "" if container else (w.unit or w.slice or "")
    return (unit, container, w.pod_uid or "", w.pod_qos or "")


class WorkloadLabels:
    """At most `limit` workloads keep their own labels at a time; more fold into 'other'. A
    workload without events for `ttl_s` is retired (its series disappears, freeing its slot):
    pods and containers churn, and a first-come-forever rule would fill up with dead ones."""

    def __init__(self, limit: int, ttl_s: float = WORKLOAD_TTL_S, clock: Any = time.monotonic) -> None:
        self.limit = limit
        self.ttl_s = ttl_s
        self._clock = clock
        self.last: dict[tuple[str, str, str, str], float] = {}
        self.retired = 0

    def __call__(self, key: tuple[str, str, str, str]) -> tuple[str, str, str, str]:
        now = self._clock()
        if key not in self.last and len(self.last) >= self.limit:
            self.expire(now)
        if key in self.last or len(self.last) < self.limit:
            self.last[key] = now
            return tuple(label_value(v) for v in key)  # type: ignore[return-value]
        return (OTHER, OTHER, OTHER, OTHER)

    def expire(self, now: float) -> list[tuple[str, str, str, str]]:
        gone = [k for k, t in self.last.items() if now - t >= self.ttl_s]
        for k in gone:
            del self.last[k]
        self.retired += len(gone)
        return [tuple(label_value(v) for v in k) for k in gone]  # type: ignore[misc]


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

    def __init__(self, top_processes: int, endpoint_labels: bool, top_workloads: int = 20) -> None:
        self.lock = threading.Lock()
        self.comm = StickyLabels(top_processes)
        self.endpoint = StickyLabels(top_processes) if endpoint_labels else None
        self.workload = WorkloadLabels(top_workloads)
        self.events: Counter[Any] = Counter()        # (event, verdict, who, comm)
        # (event, verdict, who): no process label, so every series is known in advance
        self.explained: Counter[Any] = Counter({k: 0 for k in known_explained()})
        self.by_workload: Counter[Any] = Counter()   # (event, unit, container, pod_uid, pod_qos)
        self.by_endpoint: Counter[str] = Counter()
        kinds = event_kinds()
        self.idle_buckets: dict[str, list[int]] = {k: [0] * len(IDLE_BUCKETS) for k in kinds}
        self.idle_sum: dict[str, float] = {k: 0.0 for k in kinds}
        self.idle_count: Counter[str] = Counter({k: 0 for k in kinds})

    def add(self, e: Explanation, n: int = 1) -> None:
        with self.lock:
            comm = self.comm(e.comm or "unknown")
            self.events[(e.event, e.verdict.value, e.who.value, comm)] += n
            self.explained[(e.event, e.verdict.value, e.who.value)] += n
            if e.cgroup is not None and e.cgroup.workload is not None:
                self.by_workload[(e.event, *self.workload(workload_key(e)))] += n
            if self.endpoint is not None:
                # the service endpoint (the listening side's address:port): every client of one
                # service, and both ends of a connection, share one label value
                self.by_endpoint[self.endpoint(service_endpoint(e))] += n
            if e.idle_s is not None:
                b = self.idle_buckets.setdefault(e.event, [0] * len(IDLE_BUCKETS))
                for i, edge in enumerate(IDLE_BUCKETS):
                    if e.idle_s <= edge:
                        b[i] += n
                self.idle_sum[e.event] = self.idle_sum.get(e.event, 0.0) + e.idle_s * n
                self.idle_count[e.event] += n

    def retire_workloads(self) -> None:
        """Drop the series of workloads without events for WORKLOAD_TTL_S."""
        with self.lock:
            for labels in self.workload.expire(self.workload._clock()):
                for k in [k for k in self.by_workload if k[1:] == labels]:
                    del self.by_workload[k]


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
        # The reset reasons the running kernel can give (tcp_send_reset's format), each served
        # at 0 before its first reset; "unknown" where the kernel gives none.
        ctx = capture.context
        # (MAX is the enum's end marker, SK_RST_REASON_MAX, never a reason)
        names = sorted(set(ctx.reset_reasons.values()) - {"MAX"}) if ctx is not None else []
        self.reasons = names or ["unknown"]
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
        sent = dict.fromkeys(self.reasons, 0)
        sent.update(c.rst_sent_by_reason)
        for reason, n in sorted(sent.items()):
            resets.add_metric(["sent", reason], n)
        resets.add_metric(["received", "none"], c.rst_received)
        yield resets
        aborts = CounterMetricFamily(f"{PREFIX}_aborts", "Errors reported to applications, by errno "
                                     "(counted in the kernel).", labels=["errno"])
        by_name = dict.fromkeys(KNOWN_ERRNOS, 0)
        for num, n in c.aborts_by_errno.items():
            by_name[errno_mod.errorcode.get(num, str(num))] = n
        for name, n in sorted(by_name.items()):
            aborts.add_metric([name], n)
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
            ex = CounterMetricFamily(f"{PREFIX}_explained", "Explained resets and aborts by verdict and who "
                                     "reset; every rule's series from the start, at 0 (for rate() and "
                                     "increase() alerts).", labels=["event", "verdict", "who"])
            for key, n in sorted(self.totals.explained.items()):
                ex.add_metric(list(key), n)
            yield ex
            wl = CounterMetricFamily(f"{PREFIX}_events_by_workload", "Explained events by the owner's "
                                     "systemd unit, container (runtime://id) and pod; at most --top-workloads "
                                     "at a time, the rest 'other', idle ones retired after an hour.",
                                     labels=WORKLOAD_LABELS)
            for key, n in sorted(self.totals.by_workload.items()):
                wl.add_metric(list(key), n)
            yield wl
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
        if c.missed is not None:
            missed = CounterMetricFamily(f"{PREFIX}_events_missed", "Kernel events a program was not run for "
                                         "because a BPF program was already running on that CPU: no record of "
                                         "them exists (counted for raw tracepoints since Linux 5.12, for "
                                         "tracepoints since 6.7).", labels=["tracepoint"])
            for tp, n in sorted(c.missed_by.items()):
                missed.add_metric([tp], n)
            yield missed
        yield CounterMetricFamily(f"{PREFIX}_records_filtered", "Events dropped in the kernel by filters.",
                                  value=c.filtered)
        yield CounterMetricFamily(f"{PREFIX}_records_summarized", "Events over the per-CPU rate, counted in "
                                  "the kernel's storm summaries instead of sent one by one.", value=c.summarized)
        yield CounterMetricFamily(f"{PREFIX}_records_storm_overflow", "Storm events counted only in the kernel "
                                  "totals because the storm summary table was full.", value=c.storm_full)
        evicted = CounterMetricFamily(f"{PREFIX}_table_evictions", "Entries the exporter's bounded user-space "
                                      "tables dropped to stay within their size (a link or holder may be missed).",
                                      labels=["table"])
        for table, n in sorted(self.pipeline.evictions().items()):
            evicted.add_metric([table], n)
        yield evicted
        yield GaugeMetricFamily(f"{PREFIX}_scrape_duration_seconds", "Duration of the previous scrape.",
                                value=self.last_scrape_s)
        self.last_scrape_s = time.monotonic() - start
