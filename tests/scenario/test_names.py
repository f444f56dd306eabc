"""Explanations that name the right thing, with real servers and clients in lab namespaces.

- redis-server (timeout 2), nginx (keepalive_timeout 2s) and HAProxy (timeout http-keep-alive
  2s) close an idle connection; the client reuses it after 3.5 s. The explanation names that
  server and its setting and no other product, the inferred range contains 2 s, every advice
  number is below the range, and the client's own runtime comes first: Python (a python3
  script), Java (javac-compiled here, Debian's OpenJDK 17) and C (redis-cli, hiredis).
- A real nftables `reject with tcp reset` on the lab router, during traffic and after 1 s idle:
  middlebox_reset; an idle longer than the NAT's conntrack timeout: stale_after_idle.
- A burst of 3,000 per-request connections: the insight's time_wait within 5 % of
  `ss -tan state time-wait` at the same moment.
"""

from __future__ import annotations

import time
from typing import Callable

import pytest

from tests.lab import runner
from tests.lab.netns import Topology
from tests.lab.idle import TIMEOUT_S, idle_close_act
from tests.lab.scenarios import BY_NAME, Scenario
from tests.unit.test_software import assert_advice_below, products_in
from tracer.explain import bounds, insights, knowledge, software
from tracer.model.verdicts import Verdict

pytestmark = pytest.mark.scenario

def client_reset(result: runner.RunResult):
    ino = result.netns["client"]
    found = sorted((x for x in result.explanations if x.netns == ino and x.event == "reset_received"),
                   key=lambda x: x.ts_ns)
    assert found, f"no reset received by the client: {result.truth} {[x.to_json() for x in result.explanations]}"
    return found[0]


# (server kind, its process name, the setting's words, client, runtime, the runtime's first setting)
CASES = [
    ("redis", "redis-server", "timeout", "python", "python", "redis-py"),
    ("redis", "redis-server", "timeout", "redis-cli", "hiredis", "hiredis"),
    ("nginx", "nginx", "keepalive_timeout", "java", "java", "Reactor Netty"),
    ("haproxy", "haproxy", "timeout http-keep-alive", "python", "python", "Python requests/urllib3"),
]


@pytest.mark.parametrize("kind,comm,setting,client,runtime,first", CASES,
                         ids=[f"{c[0]}-{c[3]}" for c in CASES])
def test_idle_close_names_the_server_its_setting_and_the_clients_runtime(capture, kind, comm, setting, client,
                                                                       runtime, first):
    scenario = Scenario(f"{kind}_{client}", f"{kind} idle timeout, {client} client", Topology.pair,
                        idle_close_act(kind, client), expects=())
    result = runner.run(scenario, capture)
    e = client_reset(result)
    j = e.to_json()
    assert e.verdict is Verdict.WRITE_AFTER_PEER_CLOSE, j
    srv = software.server(comm)
    assert srv is not None and e.software is not None
    assert (e.software["name"], e.software["identified"]) == (srv.product, True), j
    said = " ".join((e.explanation, *e.evidence))
    assert setting in said
    assert products_in(said) - {srv.product, comm, "Redis"} == set(), said
    # The fixes: the client runtime's own settings first, then words that name no product.
    own = len(knowledge.pool_fix(bounds.Range(1, 1), runtime, srv.protocol)) - 1
    assert own >= 1
    assert all(products_in(f) == set() for f in e.fix[own:]), e.fix
    lo, hi = e.inferred_range["peer_keepalive_timeout_s"]
    assert lo <= TIMEOUT_S <= hi, j
    assert_advice_below(e.fix, lo)
    assert e.runtime == runtime and e.fix[0].startswith(first), j
    if client == "python":
        # What the application saw is what app_sees says: EOF on read, then EPIPE on write.
        assert result.truth["stdout"].split() == ["read", "0", "write", "BrokenPipeError"], result.truth
        assert [(x["call"], x["result"]) for x in e.app_sees] == [("read", "EOF"), ("write", "EPIPE")]


def reject_act(pause_s: float) -> Callable[[Topology, object], dict]:
    """A router's nftables rule rejects the flow with a reset, `pause_s` after the last data."""
    def act(topo, spawn) -> dict:
        assert topo.router is not None
        sv = spawn(topo, topo.server, "tte-server", "listen port=8080;accept;recv;send n=10;wait")
        sv.next("listen")
        sleep = f"sleep s={pause_s};" if pause_s else ""
        cl = spawn(topo, topo.client, "tte-client", f"connect host={topo.server.v4} port=8080;send n=10;recv;wait;"
                                                    f"{sleep}send n=10;recv timeout=5")
        cl.next("wait")
        topo.nft(topo.router, "table inet tte_fw {\n chain tte_forward {\n type filter hook forward priority -10;\n"
                              f" ip daddr {topo.server.v4} tcp dport 8080 reject with tcp reset\n }}\n}}\n")
        cl.release()
        cl.finish()
        topo.nft(topo.router, "delete table inet tte_fw\n")
        sv.release()
        sv.finish()
        return {"client": [f"{d['op']}:{d['error']}" for d in cl.lines if "error" in d]}
    return act


@pytest.mark.parametrize("pause_s,words", [(0.0, "active use"), (1.0, "shorter than any real idle timeout")])
def test_a_firewall_reject_is_a_middlebox_reset_not_an_idle_timeout(capture, pause_s, words):
    scenario = Scenario(f"reject_after_{pause_s}", "router reject rule", lambda: Topology.routed(
        nat=True, conntrack_established_timeout=60), reject_act(pause_s), expects=())
    result = runner.run(scenario, capture)
    assert result.truth["client"] == ["recv:ECONNRESET"], result.truth
    e = client_reset(result)
    assert (e.verdict, e.who.value) == (Verdict.MIDDLEBOX_RESET, "middlebox"), e.to_json()
    assert abs((e.idle_s or 0) - pause_s) < 0.3
    assert any(words in x for x in e.evidence), e.evidence
    assert any("reject rules" in f for f in e.fix) and not any("evict" in f for f in e.fix)


def test_an_idle_longer_than_the_nats_conntrack_timeout_is_stale_after_idle(capture):
    result = runner.run(BY_NAME["nat_idle"], capture)
    e = client_reset(result)
    assert e.verdict is Verdict.STALE_AFTER_IDLE, e.to_json()
    lo, hi = e.inferred_range["middlebox_idle_timeout_s"]
    assert lo <= result.truth["nat_timeout_s"] <= hi < result.truth["idle_s"] + 0.5


def test_time_wait_of_a_burst_is_what_ss_counts(capture):
    n = 3000
    with Topology.pair() as topo:
        from tests.lab.driver import spawn_peer
        before = capture.capture.active_closes()
        start = time.monotonic()
        sv = spawn_peer(topo, topo.server, "tte-upstream", f"listen port=8080 backlog=1024;serve n={n}")
        sv.next("listen")
        cl = spawn_peer(topo, topo.client, "tte-burst", f"churn host={topo.server.v4} port=8080 n={n};wait")
        assert cl.next("churn", timeout=120)["n"] == n
        after = capture.capture.active_closes()
        found = insights.time_wait_pileups(before, after, time.monotonic() - start,
                                           time_wait_of=insights.proc_time_wait)
        ss = topo.run(topo.client, ["ss", "-Htan", "state", "time-wait", "dst", f"{topo.server.v4}:8080"],
                      capture_output=True, text=True, check=True).stdout
        cl.release()
        cl.finish()
        sv.finish(timeout=60)
    [ins] = [i for i in found if i.pid == cl.pid]
    counted = len(ss.splitlines())
    assert counted >= n * 0.95
    assert ins.time_wait is not None and abs(ins.time_wait - counted) <= 0.05 * counted, (ins.to_json(), counted)
    assert ins.closes == n and ins.time_wait_projected == int(ins.per_second * 60)
