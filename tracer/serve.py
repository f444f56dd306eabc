"""The exporter command: trace, explain, and serve Prometheus metrics until stopped.

The metrics themselves (kernel-map counters read at scrape time, explained totals) live in
tracer/sinks/exporter.py; this module runs the capture, the pipeline and the HTTP server.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from typing import Optional

from prometheus_client.core import CollectorRegistry

from tracer import __version__, webconfig
from tracer.explain.filters import NO_FILTER, EventFilter
from tracer.explain.pipeline import Pipeline
from tracer.httpd import MetricsServer, listen_warning
from tracer.live import owner_resolver, refresh_scope
from tracer.kernel import host as kernel
from tracer.kernel import localaddrs, privileges
from tracer.kernel import loader
from tracer.kernel import netns as netns_mod
from tracer.kernel.attribution import Attributor
from tracer.kernel.cgroups import CgroupResolver
from tracer.kernel.uids import UidResolver
from tracer.kernel.capture import Capture
from tracer.model.errors import TteError
from tracer.model.options import Options
from tracer.sinks.exporter import KernelCollector, TimeWaitWindow, Totals
from tracer.sinks import outfile


def parse_listen(value: str) -> tuple[str, int]:
    import click

    host, sep, port = value.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise click.BadParameter(f"{value!r}: use HOST:PORT, e.g. 127.0.0.1:9567 (port 0: any free port, written to --ready-file)", param_hint="--listen")
    return host, int(port)


def run_exporter(options: Options, host: str, port: int, top_processes: int = 20, endpoint_labels: bool = False,
                 top_workloads: int = 20,
                 ready_file: Optional[str] = None, duration_s: Optional[float] = None,
                 event_filter: EventFilter = NO_FILTER, web_config: Optional[str] = None,
                 drop_to: Optional[str] = privileges.DEFAULT_USER) -> None:
    if ready_file:
        outfile.check(ready_file, "--ready-file")
    web = webconfig.load(web_config) if web_config else webconfig.WebConfig()
    capture = Capture(options)
    capture.build()
    assert capture.features is not None
    stop = threading.Event()
    old = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGTERM, signal.SIGINT)}
    server = None
    collector = None
    try:
        capture.start()
        capture.refresh_children()      # before the drop: see tracer/live.py
        local = localaddrs.peer_check(options, capture.features)
        pipe = Pipeline(peer_is_local=local.contains if local else None, owners=owner_resolver(event_filter),
                        annotator=(attributor := Attributor(CgroupResolver(), netns_mod.NameCache(),
                                                            UidResolver())))
        refresh_scope(capture, pipe)
        totals = Totals(top_processes, endpoint_labels, top_workloads)
        tw = TimeWaitWindow()
        registry = CollectorRegistry(auto_describe=False)
        collector = KernelCollector(capture, totals, tw, capture.attached(), pipe,
                                    (__version__, loader.bcc_version(), kernel.release()))
        registry.register(collector)
        try:
            server = MetricsServer(host, port, registry, web)
        except OSError as exc:
            raise TteError(f"cannot listen on {host}:{port}: {exc.strerror}",
                           "choose another --listen address or port") from None
        warning = listen_warning(host, server.server_address[1], web)
        if warning:
            sys.stderr.write(f"tcptrace-explain exporter: {warning}\n")
        # Listening (any port), the ready file created (any directory) and the web config read
        # as root; then unprivileged before the first thread starts (tracer/kernel/privileges.py).
        ready_fd = outfile.open_output(ready_file, "--ready-file") if ready_file else -1
        privileges.after_start(drop_to, capture)
        server.start()
        if ready_file:
            outfile.write_fd(ready_fd, ready_file, "--ready-file", f"{server.server_address[1]}\n")
        started = last_tw = time.monotonic()
        while not stop.is_set():
            pipe.feed(capture.poll(50))
            for e in pipe.release(time.monotonic_ns()):
                if event_filter.match(e):
                    totals.add(e)
            now = time.monotonic()
            if now - last_tw >= 1.0:
                last_tw = now
                refresh_scope(capture, pipe)
                for b in capture.storm():
                    if b.type.value == "state":
                        continue
                    explained = attributor.annotate(b.explained())
                    if event_filter.match_storm(b, explained):
                        totals.add(explained, b.count)
                totals.retire_workloads()
                snap = capture.active_closes()
                with totals.lock:
                    tw.observe(now, snap)
            if duration_s and now - started >= duration_s:
                break
    finally:
        if server is not None:
            server.shutdown()
        if collector is not None:
            with collector.lock:
                collector.closed = True
        privileges.end()
        capture.close()
        for s, h in old.items():
            signal.signal(s, h)
