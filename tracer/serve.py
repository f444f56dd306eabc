"""The exporter command: trace, explain, and serve Prometheus metrics until stopped.

The metrics themselves (kernel-map counters read at scrape time, explained totals) live in
tracer/sinks/exporter.py; this module runs the capture, the pipeline and the HTTP server.
"""

from __future__ import annotations

import os
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


def _reload_web(server: MetricsServer, path: Optional[str], host: str) -> None:
    """SIGHUP: the web configuration read again; on any error the one in use stays."""
    say = sys.stderr.write
    if not path:
        say("tcptrace-explain exporter: SIGHUP: no --web.config.file to re-read; nothing changed\n")
        return
    try:
        web = webconfig.load(path)
    except TteError as exc:
        say(f"tcptrace-explain exporter: SIGHUP: {exc.message}; still serving with the previous web configuration "
            f"(it runs as uid {os.getuid()} now, after the privilege drop: the files must be readable by it)\n")
        return
    server.web = web
    say(f"tcptrace-explain exporter: SIGHUP: {path} read again (TLS {'on' if web.tls else 'off'}, "
        f"{len(web.users)} basic-auth users)\n")
    warning = listen_warning(host, server.server_address[1], web)
    if warning:
        say(f"tcptrace-explain exporter: {warning}\n")


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
    reload = threading.Event()
    old = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGTERM, signal.SIGINT)}
    # SIGHUP: re-read --web.config.file (a renewed certificate, a changed password), as a
    # daemon's reload; never a stop (the default action would end the exporter).
    old[signal.SIGHUP] = signal.signal(signal.SIGHUP, lambda *_: reload.set())
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
            if reload.is_set():
                reload.clear()
                _reload_web(server, web_config, host)
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
