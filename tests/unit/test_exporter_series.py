"""The exporter's collector on plain data: every series known in advance at 0 before any
event, and workload labels that stay bounded while pods come and go."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import pytest
from prometheus_client.core import CollectorRegistry
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from tests.unit.helpers import record
from tracer.explain.pipeline import explain_stream
from tracer.model.cgroups import CgroupInfo
from tracer.model.counters import Counters
from tracer.sinks.exporter import KNOWN_ERRNOS, OTHER, KernelCollector, TimeWaitWindow, Totals, WorkloadLabels, \
    known_explained

pytestmark = pytest.mark.unit
REASONS = {0: "NOT_SPECIFIED", 1: "NO_SOCKET", 2: "TCP_INVALID_ACK_SEQUENCE"}


def scrape(totals: Totals, counters: Counters) -> dict[str, list]:
    capture = SimpleNamespace(context=SimpleNamespace(reset_reasons=REASONS), counters=lambda: counters)
    pipeline = SimpleNamespace(counters=lambda c: c)
    reg = CollectorRegistry(auto_describe=False)
    reg.register(KernelCollector(capture, totals, TimeWaitWindow(), 7, pipeline, ("v", "bcc", "k")))  # type: ignore[arg-type]
    out: dict[str, list] = {}
    for fam in text_string_to_metric_families(generate_latest(reg).decode()):
        for s in fam.samples:
            out.setdefault(s.name, []).append((s.labels, s.value))
    return out


def empty() -> Counters:
    return Counters(lost=0, filtered=0, records=0, socks_insert=0, socks_delete=0, rst_received=0,
                    rst_sent_by_reason={}, aborts_by_errno={}, states={})


def test_every_known_series_is_served_at_zero_before_any_event():
    m = scrape(Totals(20, False), empty())
    sent = {s["reason"]: v for s, v in m["tcptrace_resets_total"] if s["direction"] == "sent"}
    assert sent == dict.fromkeys(REASONS.values(), 0.0)
    assert {s["errno"]: v for s, v in m["tcptrace_aborts_total"]} == dict.fromkeys(KNOWN_ERRNOS, 0.0)
    explained = {(s["event"], s["verdict"], s["who"]): v for s, v in m["tcptrace_explained_total"]}
    assert explained == dict.fromkeys(known_explained(), 0.0)
    assert ("reset_received", "connection_refused", "peer") in explained and len(explained) > 20
    counts = {s["event"]: v for s, v in m["tcptrace_reset_idle_seconds_count"]}
    assert counts == {"abort": 0.0, "reset_received": 0.0, "reset_sent": 0.0}


def test_counts_add_to_the_zero_series():
    t = Totals(20, False)
    [e] = explain_stream([record()])
    t.add(e, 3)
    c = dataclasses.replace(empty(), rst_sent_by_reason={"NO_SOCKET": 5}, aborts_by_errno={104: 2, 113: 1})
    m = scrape(t, c)
    sent = {s["reason"]: v for s, v in m["tcptrace_resets_total"] if s["direction"] == "sent"}
    assert sent["NO_SOCKET"] == 5 and sent["NOT_SPECIFIED"] == 0
    aborts = {s["errno"]: v for s, v in m["tcptrace_aborts_total"]}
    assert aborts["ECONNRESET"] == 2 and aborts["EHOSTUNREACH"] == 1 and aborts["EPIPE"] == 0
    explained = {(s["event"], s["verdict"], s["who"]): v for s, v in m["tcptrace_explained_total"]}
    assert explained[(e.event, e.verdict.value, e.who.value)] == 3
    assert sum(explained.values()) == 3


def _in(path: str):
    [e] = explain_stream([record()])
    return dataclasses.replace(e, cgroup=CgroupInfo.from_path(path))


def test_workload_labels_are_bounded_and_idle_ones_retire():
    clock = [0.0]
    t = Totals(20, False, top_workloads=2)
    t.workload = WorkloadLabels(2, ttl_s=100, clock=lambda: clock[0])
    cid = "ab" * 32
    t.add(_in("/system.slice/nginx.service"))
    t.add(_in(f"/system.slice/docker-{cid}.scope"))
    t.add(_in("/system.slice/redis-server.service"))          # a third: folded
    m = scrape(t, empty())
    got = {(s["unit"], s["container"]): v for s, v in m["tcptrace_events_by_workload_total"]}
    assert got == {("nginx.service", ""): 1, ("", f"docker://{cid}"): 1, (OTHER, OTHER): 1}
    clock[0] = 50
    t.add(_in("/system.slice/nginx.service"))                  # nginx stays busy
    clock[0] = 120
    t.retire_workloads()                                       # docker idle for 120 s > 100
    t.add(_in("/system.slice/redis-server.service"))           # gets the freed slot
    m = scrape(t, empty())
    got = {(s["unit"], s["container"]): v for s, v in m["tcptrace_events_by_workload_total"]}
    assert got == {("nginx.service", ""): 2, ("redis-server.service", ""): 1, (OTHER, OTHER): 1}
    assert t.workload.retired == 1


def test_pod_labels_name_pod_and_qos():
    uid = "0c3a1e7c-5d2b-4a8f-9e61-7b2f1d6c4e90"
    cid = "cd" * 32
    t = Totals(20, False)
    t.add(_in(f"/kubepods/besteffort/pod{uid}/{cid}"))
    [(labels, v)] = scrape(t, empty())["tcptrace_events_by_workload_total"]
    assert (labels["container"], labels["pod_uid"], labels["pod_qos"], labels["unit"]) == \
        (f"unknown://{cid}", uid, "besteffort", "")


def test_dashboard_has_job_and_instance_variables_on_every_query():
    import json
    import os
    import re

    from tests.conftest import REPO

    with open(os.path.join(REPO, "deploy", "grafana-dashboard.json"), encoding="utf-8") as fh:
        dash = json.load(fh)
    names = {v["name"] for v in dash["templating"]["list"]}
    assert {"datasource", "job", "instance"} <= names
    for panel in dash["panels"]:
        for t in panel["targets"]:
            for sel in re.findall(r"\btcptrace_[a-z_]+(\{[^}]*\})?", t["expr"]):
                assert 'job=~"$job"' in sel and 'instance=~"$instance"' in sel, t["expr"]
    p50_p90 = [p for p in dash["panels"] if "p50, p90" in p["title"]]
    assert p50_p90
    for p in p50_p90:
        assert sorted(re.match(r"histogram_quantile\(([0-9.]+),", t["expr"]).group(1) for t in p["targets"]) \
            == ["0.5", "0.9"]
