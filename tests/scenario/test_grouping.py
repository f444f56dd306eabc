"""Offenders grouped the way operators think: 200 short-lived curl processes refused by one port
and a smaller second offender. The summary's headline names the curl group by process name and
service endpoint; the exporter's labels stay bounded; counts equal the kernel's."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.request

import pytest

from tests.conftest import REPO
from tests.lab.driver import Tracer, spawn_peer, start_all
from tests.lab.netns import Topology, in_netns

pytestmark = pytest.mark.scenario
CURLS = 200
SECOND = 40
REFUSED, OTHER = 7, 13        # closed ports nothing else in the suite uses


def metrics(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        return r.read().decode()


def series(text: str, name: str) -> dict[str, float]:
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
            if line.startswith(name + "{")}


def refuse_curls(topo: Topology, n: int) -> int:
    """n curl processes, 20 at a time, each refused by the closed port; returns how many failed
    the way a refused connect does (curl exit 7: could not connect)."""
    refused = 0
    url = f"http://{topo.server.v4}:{REFUSED}/"
    for start in range(0, n, 20):
        with in_netns(topo.client):       # processes started here live in the client's namespace
            procs = [subprocess.Popen(["curl", "-s", "--max-time", "5", url], stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL) for _ in range(min(20, n - start))]
        refused += sum(1 for p in procs if p.wait(timeout=30) == 7)
    return refused


def test_two_hundred_refused_curls_make_one_headline_group(tmp_path):
    ports = ["--port", str(REFUSED), "--port", str(OTHER)]
    ready = str(tmp_path / "exporter-ready")
    exporter = subprocess.Popen([sys.executable, "-m", "tracer.cli", "exporter", "--listen", "127.0.0.1:0",
                                 "--ready-file", ready, "--endpoint-labels", *ports],
                                cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        json_t, console = start_all([Tracer(tmp_path, "--json", *ports),
                                     Tracer(tmp_path, "--no-color", *ports, env={**os.environ, "COLUMNS": "200"})])
        deadline = time.monotonic() + 60
        while not (os.path.exists(ready) and open(ready).read().strip()):
            assert exporter.poll() is None and time.monotonic() < deadline, exporter.communicate()
            time.sleep(0.1)
        mport = int(open(ready).read())
        before_x = metrics(mport)
        with Topology.pair() as topo:
            before = topo.nstat(topo.server)["TcpOutRsts"]
            assert refuse_curls(topo, CURLS) == CURLS
            batch = spawn_peer(topo, topo.client, "tte-batch",
                               ";".join([f"connect host={topo.server.v4} port={OTHER} timeout=5"] * SECOND))
            lines = batch.finish()
            assert sum(1 for d in lines if d.get("error") == "ECONNREFUSED") == SECOND
            time.sleep(1.5)
            kernel_rsts = topo.nstat(topo.server)["TcpOutRsts"] - before
            after_x = metrics(mport)
            server = topo.server.v4
        events, summary = json_t.stop()
        screen, _ = console.stop_text()
    finally:
        exporter.send_signal(signal.SIGTERM)
        exporter.communicate(timeout=60)

    assert kernel_rsts == CURLS + SECOND
    mine = [e for e in events if server in (e["laddr"], e["raddr"])]
    assert sum(1 for e in mine if e["event"] == "reset_sent") == kernel_rsts
    assert len({e["pid"] for e in mine if e["comm"] == "curl"}) == CURLS

    top = summary["summary"]["top_fix"]
    assert (top["process"], top["endpoint"], top["events"], top["processes"]) == ("curl", f"{server}:{REFUSED}",
                                                                                  CURLS, CURLS)
    assert top["verdict"] == "connection_refused" and len(top["pids"]) == 20
    flat = " ".join(screen.split())
    assert f"The one fix that would remove most of them ({CURLS} x connection_refused, curl ({CURLS} processes:" in flat
    assert f"-> {server}:{REFUSED})" in flat

    # Exporter: one endpoint label per service, one comm label per process name.
    endpoints = {k: v - series(before_x, "tcptrace_events_by_endpoint_total").get(k, 0)
                 for k, v in series(after_x, "tcptrace_events_by_endpoint_total").items() if server in k}
    assert endpoints == {f'tcptrace_events_by_endpoint_total{{endpoint="{server}:{REFUSED}"}}': 2 * CURLS,
                         f'tcptrace_events_by_endpoint_total{{endpoint="{server}:{OTHER}"}}': 2 * SECOND}
    comms = {m.group(1) for k in series(after_x, "tcptrace_events_total") for m in [re.search(r'comm="([^"]*)"', k)] if m}
    assert {"curl", "tte-batch"} <= comms and len(comms) <= 20
    sent = sum(v for k, v in series(after_x, "tcptrace_resets_total").items() if 'direction="sent"' in k) - \
        sum(v for k, v in series(before_x, "tcptrace_resets_total").items() if 'direction="sent"' in k)
    assert sent == kernel_rsts
