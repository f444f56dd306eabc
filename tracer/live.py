"""The live session: records -> incidents -> explanations -> a sink.

It goes through the same Pipeline as replay (tracer/replay.py), so a replay of a recording
gives the explanations the live run printed.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Optional

from tracer.explain import insights
from tracer.explain.filters import NO_FILTER, EventFilter
from tracer.kernel import host as kernel_host
from tracer.kernel.attribution import Attributor
from tracer.kernel.cgroups import CgroupResolver
from tracer.kernel.uids import UidResolver
from tracer.kernel import localaddrs
from tracer.kernel import netns as netns_mod
from tracer.kernel import privileges, procfs
from tracer.kernel import snmp
from tracer.sinks import outfile, recording
from tracer.kernel.capture import BATCH_MAX, Capture
from tracer.model.counters import Counters
from tracer.model.errors import OutputFailed, RecordingStopped, RecordsLost
from tracer.explain.owners import OwnerResolver
from tracer.explain.procinfo import ProcessFacts
from tracer.explain.pipeline import Pipeline
from tracer.explain.rules import Explanation
from tracer.model.options import Options
from tracer.model.record import Record
from tracer.replay import show_storm
from tracer.explain.summary import Summary
from tracer.sinks.base import Sink

POLL_MS = 10
DRAIN_S = 2.0   # at exit, what is in the ring is read for at most this long (a load may go on)
STATUS_EVERY_S = 10.0
INSIGHT_EVERY_S = 5.0
INSIGHT_REPEAT_S = 60.0


@dataclass(frozen=True)
class RunLimits:
    duration_s: Optional[float] = None
    max_events: Optional[int] = None
    strict: bool = False


class _Stop:
    def __init__(self) -> None:
        self.flag = False
        self.why = ""

    def __call__(self, signum: int, frame: object) -> None:
        self.flag = True
        self.why = signal.Signals(signum).name


# SIGHUP: the terminal closed or the ssh session dropped; end as on Ctrl-C, recording whole.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def owner_resolver(event_filter: EventFilter) -> OwnerResolver:
    """Holders of accepted sockets: from their close, else /proc; --pid decides on the holder."""
    return OwnerResolver(lookup=procfs.ProcfsOwners(), scope=event_filter.scope if event_filter.pids else None)


def refresh_scope(capture: Capture, pipe: Pipeline) -> None:
    """--children: the family now (also handed to the kernel's pid filter)."""
    scope = pipe.owners.scope
    if scope is not None and scope.children:
        scope.descendants = capture.refresh_children()


def run_live(options: Options, sink: Sink, limits: RunLimits, record_path: Optional[str] = None,
             ready_file: Optional[str] = None, event_filter: EventFilter = NO_FILTER,
             record_existing: outfile.Existing = outfile.Existing.REFUSE, banner: Optional[str] = None,
             drop_to: Optional[str] = privileges.DEFAULT_USER) -> Summary:
    """`banner`: shown once every probe is attached (never before a failure to start)."""
    stop = _Stop()
    old = {s: signal.signal(s, stop) for s in STOP_SIGNALS}
    writer: Optional[recording.RecordingWriter] = None
    capture: Optional[Capture] = None
    try:
        # Output files are checked (and the recording created) before anything is compiled.
        if ready_file:
            outfile.check(ready_file, "--ready-file")
        rec_fd = _open_recording(record_path, record_existing) if record_path else -1
        capture = Capture(options)
        try:
            capture.build()
        except BaseException:
            if rec_fd >= 0:
                os.close(rec_fd)
            raise
        assert capture.context is not None and capture.features is not None
        if rec_fd >= 0:
            writer = recording.RecordingWriter(rec_fd, capture.context, meta=_meta(options, capture))
        return _run(capture, options, sink, limits, stop, writer, ready_file, event_filter, banner, drop_to)
    finally:
        privileges.end()
        if capture is not None:
            capture.close()
        if writer is not None:
            writer.close()
        for s, h in old.items():
            signal.signal(s, h)


def _run(capture: Capture, options: Options, sink: Sink, limits: RunLimits, stop: _Stop,
         writer: Optional[recording.RecordingWriter], ready_file: Optional[str],
         event_filter: EventFilter, banner: Optional[str] = None,
         drop_to: Optional[str] = None) -> Summary:
    assert capture.context is not None and capture.features is not None
    summary = Summary()
    started = time.monotonic()
    # Namespace names as events arrive: a container's or a lab's may be gone by the end.
    ns_names = netns_mod.NameCache()
    cgroups = CgroupResolver()
    uids = UidResolver()
    told_stopped = False

    def recording_stopped() -> None:
        nonlocal told_stopped
        if writer is not None and writer.stopped and not told_stopped:
            told_stopped = True
            sink.notice(f"recording stopped: {_strerror(writer.error)}; {writer.written} records are in the "
                        "file; tracing goes on")

    witness = None if capture.features.rst_layout_sockaddr else snmp.OutRstsWitness()
    capture.start(raw_sink=writer.write if writer else None)
    # --children: the workers go into the kernel's pid filter now, not after the privilege drop
    # (about 0.4 s): their resets in between would be filtered out in the kernel.
    capture.refresh_children()
    # The ready file is created before the privilege drop (its directory may be root's) and
    # written after it: "ready" means attached and unprivileged.
    ready_fd = outfile.open_output(ready_file, "--ready-file") if ready_file else -1
    privileges.after_start(drop_to, capture)
    if banner:
        sink.notice(banner)
    if witness is not None:
        sink.notice(f"this kernel ({kernel_host.release()}, before 6.10) does not trace resets sent with no "
                    "socket or by TIME_WAIT sockets; the summary gives the kernel's OutRsts count beside the tool's")
    if ready_file:
        outfile.write_fd(ready_fd, ready_file, "--ready-file", f"{os.getpid()}\n")
    local = localaddrs.peer_check(options, capture.features)
    attributor = Attributor(cgroups, ns_names, uids)
    facts = ProcessFacts()
    pipe = Pipeline(peer_is_local=local.contains if local else None, owners=owner_resolver(event_filter),
                    annotator=attributor, facts=facts)
    refresh_scope(capture, pipe)
    since = datetime.now().strftime("%H:%M:%S")
    last_status = last_pidcheck = last_insight = last_storm = time.monotonic()
    closes = capture.active_closes()
    told: dict[tuple[Any, ...], float] = {}
    alive = set(options.pids)

    def emit(explained: list[Explanation]) -> bool:
        for e in explained:
            if not event_filter.match(e):
                continue
            sink.event(e)
            summary.add(e)
            if witness is not None:
                witness.saw(e.event, e.netns)
            if limits.max_events and summary.total >= limits.max_events:
                return True
        return False

    def feed(records: list[Record]) -> None:
        pipe.feed(records)

    def loop() -> None:
        nonlocal closes, last_status, last_pidcheck, last_insight, last_storm
        while not stop.flag:
            feed(capture.poll(POLL_MS))
            if writer is not None:
                writer.tick()
                recording_stopped()
            if emit(pipe.release(time.monotonic_ns())):
                break
            now = time.monotonic()
            if limits.duration_s and now - started >= limits.duration_s:
                break
            if alive and now - last_pidcheck >= 1.0:
                last_pidcheck = now
                refresh_scope(capture, pipe)
                for pid in sorted(alive):
                    if not procfs.process_exists(pid):
                        alive.discard(pid)
                        sink.notice(f"traced process {pid} exited")
                if not alive:
                    sink.notice("every traced process has exited; stopping")
                    break
            if now - last_storm >= 1.0:
                last_storm = now
                _storm(capture, sink, summary, event_filter, attributor, writer)
            if now - last_insight >= INSIGHT_EVERY_S:
                fresh = capture.active_closes()
                for ins in insights.time_wait_pileups(closes, fresh, now - last_insight,
                                                      time_wait_of=insights.proc_time_wait):
                    key = (ins.kind, ins.pid, ins.remote)
                    if now - told.get(key, -INSIGHT_REPEAT_S) >= INSIGHT_REPEAT_S:
                        told[key] = now
                        sink.insight(ins)
                        summary.add_insight(ins)
                closes, last_insight = fresh, now
            if now - last_status >= STATUS_EVERY_S:
                last_status = now
                sink.status(since, summary, pipe.counters(capture.counters()))

    def drain() -> None:
        # Records already in the ring buffer still count: read and explain them, in batches,
        # for at most DRAIN_S (under a load that goes on the ring never empties).
        deadline = time.monotonic() + DRAIN_S
        while True:
            got = capture.poll(0)
            feed(got)
            if len(got) < BATCH_MAX or time.monotonic() >= deadline:
                return

    out_gone = False
    out_failed: Optional[OutputFailed] = None
    try:
        loop()
        drain()
        emit(pipe.release(None))
        _storm(capture, sink, summary, event_filter, attributor, writer)
    except (BrokenPipeError, OutputFailed) as exc:
        # The reader of our output went away (`| head -1`), or the output cannot be written (a
        # full disk under `> file`): the recording is still finished whole (the drain reaches
        # it, the end line keeps the counters), then the CLI ends quietly, or with exit 14.
        out_gone = True
        out_failed = exc if isinstance(exc, OutputFailed) else None
        drain()
    counters = pipe.counters(capture.counters())
    counters = dataclasses.replace(counters, unread=max(0, counters.records - capture.received))
    if witness is not None:
        counters = dataclasses.replace(counters, kernel_out_rsts=witness.delta(), explained_sent_here=witness.explained)
    if writer is not None:
        seen = sorted(local.seen) if local else []
        writer.finish(end={"counters": _counters_json(counters), "local_addrs": seen,
                           "netns_names": {str(k): v for k, v in sorted(ns_names.history.last().items())},
                           "netns_history": ns_names.history.to_json(),
                           "cgroups": {str(k): v for k, v in sorted(cgroups.seen.items())},
                           "cgroup_history": cgroups.history.to_json(),
                           "uids": {str(k): v for k, v in sorted(uids.seen.items())},
                           "uid_history": uids.history.to_json(),
                           "runtimes": facts.table(),
                           "ended_ns": time.monotonic_ns()})
        writer.flush()
        if not out_gone:
            recording_stopped()
    if out_failed is not None:
        raise out_failed
    if out_gone:
        raise BrokenPipeError("the output was closed")
    summary.evicted = pipe.evictions()
    sink.summary(summary, counters, time.monotonic() - started, tables=capture.table_usage())
    if writer is not None and writer.error is not None:
        raise RecordingStopped(f"the recording stopped early: {_strerror(writer.error)} "
                               f"({writer.written} records were written)",
                               "free space on that filesystem or record elsewhere; the events were printed")
    if limits.strict and counters.lost:
        raise RecordsLost(f"{counters.lost} records were lost", "raise --ringbuf-pages")
    if limits.strict and counters.missed:
        raise RecordsLost(f"{counters.missed} kernel events were not traced (a BPF program was already running "
                          "on that CPU)", "run again; fewer other BPF tracing tools on the host make this rarer")
    return summary


def _open_recording(path: str, existing: outfile.Existing) -> int:
    fd = outfile.open_output(path, "--record", existing)
    try:
        if existing is outfile.Existing.APPEND:
            recording.prepare_append(fd, path)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _strerror(exc: Optional[OSError]) -> str:
    return (exc.strerror or str(exc)) if exc is not None else "no error"


def _storm(capture: Capture, sink: Sink, summary: Summary, event_filter: EventFilter,
           attributor: Attributor, writer: Optional[recording.RecordingWriter] = None) -> None:
    drained = capture.storm()
    if drained and writer is not None:
        # All of them, as the records are: replay applies its own filters.
        writer.storm([b.to_record() for b in drained])
    show_storm(drained, sink, summary, event_filter, attributor)


def _opts_json(o: Options) -> dict[str, Any]:
    return {"pids": sorted(o.pids), "comms": sorted(o.comms), "ports": sorted(o.ports),
            "netns": sorted(o.netns), "states": o.states, "ignore_kernel_reason": o.ignore_kernel_reason,
            "children": o.children}


def _meta(o: Options, capture: Capture) -> dict[str, Any]:
    """What a merge of several hosts' recordings needs to know about this one (tracer/merge.py):
    which machine and boot it is, when it started (CLOCK_MONOTONIC, like the records), and
    whether a reset missing from it means none was sent (the kernel traces resets sent by
    TIME_WAIT sockets and without a socket since 6.10: the sockaddr layout of tcp_send_reset)."""
    assert capture.features is not None
    return {"options": _opts_json(o), "boot_id": kernel_host.boot_id(), "started_ns": time.monotonic_ns(),
            "traces_every_reset": capture.features.rst_layout_sockaddr}


def _counters_json(c: Counters) -> dict[str, Any]:
    return {"lost": c.lost, "filtered": c.filtered, "records": c.records, "unread": c.unread, "missed": c.missed,
            "rst_sent_by_reason": c.rst_sent_by_reason, "rst_received": c.rst_received,
            "aborts_by_errno": {str(k): v for k, v in c.aborts_by_errno.items()},
            "kernel_out_rsts": c.kernel_out_rsts}
