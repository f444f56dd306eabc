"""Exporter mode against a real Prometheus server scraping it while the lab runs."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections import Counter
from typing import Iterator

import pytest

from tests.conftest import REPO
from tests.lab import runner
from tests.lab.loopback import refused_for
from tests.lab.netns import Topology, in_netns
from tests.lab.scenarios import BY_NAME

pytestmark = pytest.mark.scenario
LAB_PORTS = ("8080", "9")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.read().decode()


@contextlib.contextmanager
def running_exporter(*extra: str) -> Iterator[str]:
    """A real exporter (the CLI) on a free port; its base URL."""
    d = tempfile.mkdtemp(prefix="tte-exp-")
    ready = os.path.join(d, "ready")
    args = [sys.executable, "-m", "tracer.cli", "exporter", "--listen", "127.0.0.1:0", "--ready-file", ready, *extra]
    p = subprocess.Popen(args, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not os.path.exists(ready) or not open(ready).read().strip():
        if p.poll() is not None or time.monotonic() > deadline:
            p.kill()
            raise AssertionError(f"exporter did not start: {p.communicate()}")
        time.sleep(0.1)
    port = int(open(ready).read())
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=30)
        shutil.rmtree(d, ignore_errors=True)
    assert p.returncode == 0, err


@contextlib.contextmanager
def running_prometheus(exporter: str) -> Iterator[str]:
    """A real Prometheus scraping `exporter` every second; its base URL."""
    binary = shutil.which("prometheus") or "/usr/bin/prometheus"
    d = tempfile.mkdtemp(prefix="tte-prom-")
    cfg = os.path.join(d, "prometheus.yml")
    target = exporter.split("//", 1)[1]
    with open(cfg, "w", encoding="utf-8") as fh:
        fh.write(f"global: {{scrape_interval: 1s, evaluation_interval: 1s}}\n"
                 f"scrape_configs:\n  - job_name: tte\n    static_configs: [{{targets: ['{target}']}}]\n")
    port = free_port()
    p = subprocess.Popen([binary, f"--config.file={cfg}", f"--storage.tsdb.path={d}/data",
                          f"--web.listen-address=127.0.0.1:{port}"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    try:
        while True:
            try:
                if "Ready" in http(base + "/-/ready"):
                    break
            except OSError:
                pass
            if p.poll() is not None or time.monotonic() > deadline:
                p.kill()
                raise AssertionError(f"prometheus did not start: {p.communicate()[1][-2000:]}")
            time.sleep(0.2)
        yield base
    finally:
        p.terminate()
        p.wait(timeout=30)
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def exporter():
    args = [a for p in LAB_PORTS for a in ("--port", p)]
    with running_exporter(*args) as url:
        yield url


@pytest.fixture(scope="module")
def prometheus(exporter):
    with running_prometheus(exporter) as base:
        yield base


def query(prom: str, q: str) -> dict:
    data = json.loads(http(prom + "/api/v1/query?" + urllib.parse.urlencode({"query": q})))
    assert data["status"] == "success", data
    return {tuple(sorted(r["metric"].items())): float(r["value"][1]) for r in data["data"]["result"]}


def wait_scraped(prom: str, q: str, want: float, timeout: float = 20.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        got = query(prom, q)
        if sum(got.values()) >= want or time.monotonic() > deadline:
            return got


def test_promql_counts_match_what_the_lab_produced(capture, exporter, prometheus):
    names = ["closed_port", "unread_close", "linger0", "abort_on_data", "client_timeout"]
    results = [runner.run(BY_NAME[n], capture) for n in names]
    verdicts = Counter(x.verdict.value for r in results for x in r.explanations)
    reasons = Counter(rec.reason for r in results for rec in r.records if rec.type.value == "reset_sent")
    got = wait_scraped(prometheus, "sum by (verdict) (tcptrace_events_total)", sum(verdicts.values()))
    assert {dict(k)["verdict"]: int(v) for k, v in got.items()} == dict(verdicts)
    got = query(prometheus, 'sum by (reason) (tcptrace_resets_total{direction="sent"})')
    # (every reason the kernel names is served, at 0 until its first reset)
    assert {dict(k)["reason"]: int(v) for k, v in got.items() if v} == dict(reasons)


def test_promtool_accepts_the_metrics(exporter):
    text = http(exporter + "/metrics")
    p = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "tcptrace_build_info{" in text and "tcptrace_records_lost_total" in text
    assert 'tcptrace_events_missed_total{tracepoint="tcp:tcp_send_reset"}' in text


def test_dashboard_queries_name_metrics_the_exporter_serves(exporter):
    with open(os.path.join(REPO, "deploy", "grafana-dashboard.json"), encoding="utf-8") as fh:
        dash = json.load(fh)
    # every family the exporter declares (a family with no series yet, e.g. per process before
    # any event, still has its # TYPE line), by the names its samples take
    served = set()
    for line in http(exporter + "/metrics").splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            served |= {name.removesuffix("_total") + "_total"} if kind == "counter" else \
                {name + sfx for sfx in ("_bucket", "_sum", "_count")} if kind == "histogram" else {name}
    exprs = [t["expr"] for panel in dash["panels"] for t in panel["targets"]]
    used = {m for e in exprs for m in re.findall(r"\btcptrace_[a-z_]+", e)}
    assert used and used <= served, used - served


def test_every_dashboard_query_runs_and_the_quantile_panels_plot_p50_and_p90(capture, exporter, prometheus):
    """Each panel's query, with the dashboard's $job/$instance variables as Grafana sends them,
    evaluated by the real Prometheus after real resets with idle time before them."""
    with open(os.path.join(REPO, "deploy", "grafana-dashboard.json"), encoding="utf-8") as fh:
        dash = json.load(fh)
    wait_scraped(prometheus, "tcptrace_build_info", 1)   # scraped once before the resets
    time.sleep(1.5)
    r = runner.run(BY_NAME["unread_close"], capture)
    assert any(x.idle_s is not None for x in r.explanations)
    wait_scraped(prometheus, "sum(tcptrace_reset_idle_seconds_count)", 1)
    time.sleep(3)    # rate() needs samples on both sides of the resets
    quantiles: dict[str, set[float]] = {}
    for panel in dash["panels"]:
        for t in panel["targets"]:
            expr = t["expr"].replace("$job", "tte").replace("$instance", ".*")
            got = query(prometheus, expr)          # asserts the query is valid
            m = re.match(r"histogram_quantile\(([0-9.]+),", expr)
            if m:
                # a number (not NaN) for the whole host and for each event kind the resets were
                # of; a kind without any event is NaN, which Grafana leaves blank
                made = {x.event for x in r.explanations if x.idle_s is not None}
                plotted = {dict(k).get("event"): v for k, v in got.items() if v == v and v > 0}
                assert plotted and (set(plotted) == {None} or made <= set(plotted)), (expr, got)
                quantiles.setdefault(panel["title"], set()).add(float(m.group(1)))
    assert quantiles and all(q == {0.5, 0.9} for q in quantiles.values()), quantiles


def test_reset_storm_counts_are_exact_against_out_rsts(exporter):
    """Thousands of resets per second: the kernel-map counts equal the kernel's OutRsts."""
    def sent(text: str) -> int:
        return int(sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                       if line.startswith('tcptrace_resets_total{direction="sent"')))

    with Topology.pair() as topo:
        before_k = topo.nstat(topo.server)["TcpOutRsts"]
        before_x = sent(http(exporter + "/metrics"))
        start = time.monotonic()
        done = refused_for(topo.client, topo.server.v4, 9, seconds=30, limit=20_000)
        elapsed = time.monotonic() - start
        time.sleep(0.5)
        kernel = topo.nstat(topo.server)["TcpOutRsts"] - before_k
        text = http(exporter + "/metrics")
    print(f"\nstorm: {done} resets in {elapsed:.1f} s ({done / elapsed:.0f}/s)")
    assert done / elapsed > 1000
    assert kernel == done
    assert sent(text) - before_x == kernel
    lost = [line for line in text.splitlines() if line.startswith("tcptrace_records_lost_total")]
    assert lost, "the loss counter must be served"


def test_series_start_at_zero_so_increase_sees_the_first_burst():
    """The measured bug: a counter that first appears at 6 has no increase() in Prometheus.
    Served at 0 from the first scrape, the first burst of real resets is an increase."""
    port, n = 42917, 6
    sent = 'tcptrace_resets_total{direction="sent",reason="NO_SOCKET"}'
    refused = 'tcptrace_explained_total{event="reset_received",verdict="connection_refused",who="peer"}'
    with Topology.pair() as topo, \
            running_exporter("--port", str(port), "--netns", f"{topo.client.name},{topo.server.name}") as exp, \
            running_prometheus(exp) as prom:
        # scraped before any event: the series exist, at 0
        deadline = time.monotonic() + 30
        while not (query(prom, sent) and query(prom, refused)) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert list(query(prom, sent).values()) == [0.0]
        assert list(query(prom, refused).values()) == [0.0]
        assert len(query(prom, 'tcptrace_resets_total{direction="sent"}')) > 10   # every kernel reason
        assert len(query(prom, "tcptrace_explained_total")) > 20                    # every rule
        time.sleep(2)    # a few scrapes at 0
        with in_netns(topo.client.name):
            for _ in range(n):
                with socket.socket() as s, contextlib.suppress(ConnectionRefusedError):
                    s.settimeout(5)
                    s.connect((topo.server.v4, port))
        assert sum(wait_scraped(prom, sent, n).values()) == n
        assert sum(wait_scraped(prom, refused, n).values()) == n
        for metric in (sent, refused):
            [inc] = query(prom, f"increase({metric}[1m])").values()
            # increase() extrapolates a little past the last sample, never below the raw delta
            assert n <= inc <= 1.5 * n, (metric, inc)
