"""Merged recordings from two hosts behind a NAT gateway prove who reset each connection.

Real software throughout (tests/lab/crosshost.py): two tracer processes, one per "host"
namespace, a real nginx, an nftables NAT router that translates addresses and ports, forgets
idle flows and, in one act, rejects with a reset. Ground truth: what the client's calls raised,
the port nginx logged for each connection, and the server namespace's nstat TcpOutRsts.
"""

from __future__ import annotations

import json
import os
import shutil

import jsonschema
import pytest

from tests.lab import crosshost
from tracer.cli import main
from tracer.explain.pipeline import explain_hosts
from tracer.merge import load_hosts
from tracer.model.verdicts import Confidence, Verdict, Who

pytestmark = [
    pytest.mark.scenario,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: BPF programs and network namespaces"),
    pytest.mark.skipif(shutil.which("nginx") is None and not os.path.exists("/usr/sbin/nginx"),
                       reason="nginx not installed (scripts/setup.sh installs nginx-light)"),
]
SKEW_S = 7.0


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    out = tmp_path_factory.mktemp("merge")
    run = crosshost.run(str(out))
    hosts = load_hosts([run.client_recording, run.server_recording])
    judged, pairing = explain_hosts(hosts)
    return run, judged, pairing


def side(judged, h: int, port: int, event: str):
    """The first event of host h (0 client, 1 server) about the connection to server port `port`."""
    found = [e for i, e in judged if i == h and e.event == event and port in ((e.rport,) if h == 0 else (e.lport,))]
    assert found, f"no {event} on host {h} for port {port}: {[(i, e.event, e.lport, e.rport) for i, e in judged]}"
    return found[0]


def test_nat_forgot_the_idle_flow_proven_by_the_server_recording(lab):
    run, judged, _ = lab
    assert run.errors["nat_idle"] == ["http_response:ECONNRESET"]          # what the client saw
    c = side(judged, 0, 8080, "reset_received")
    assert (c.verdict, c.who, c.confidence) == (Verdict.STALE_AFTER_IDLE, Who.MIDDLEBOX, Confidence.HIGH)
    assert c.comm == "tte-scheduler" and c.idle_s == pytest.approx(4.0, abs=0.5)
    assert any(x.startswith(f"the server's host recorded this connection and sent no reset ({run.server_recording}")
               for x in c.evidence)
    # paired although the router translated the client's address and port: nginx logged the
    # translated ones, and the merge found them on the server's side
    addr, port = run.nginx_saw["nat_idle"]
    assert port != run.client_port["nat_idle"] and crosshost.NAT_PORTS[0] <= port <= crosshost.NAT_PORTS[1]
    assert c.pairing is not None and c.pairing["translated"] is True and c.pairing["by"] == "stream origins"
    assert c.peer is not None and (c.peer["raddr"], c.peer["rport"]) == (addr, port)
    # nginx's own close of the idle connection met the forgotten flow too: the client's host
    # (whose socket was gone) sent nothing
    s = side(judged, 1, 8080, "reset_received")
    assert s.comm == "nginx" and s.state == "FIN_WAIT1"
    assert (s.verdict, s.who, s.confidence) == (Verdict.MIDDLEBOX_RESET, Who.MIDDLEBOX, Confidence.HIGH)
    assert any(x.startswith("the client's host recorded this connection and sent no reset") for x in s.evidence)


def test_the_server_really_reset_and_its_reason_is_given(lab):
    run, judged, _ = lab
    c = side(judged, 0, 8081, "reset_received")
    s = side(judged, 1, 8081, "reset_sent")
    assert (s.verdict, s.reason, s.comm) == (Verdict.DATA_AFTER_CLOSE, "TCP_TIMEWAIT_SOCKET", "nginx")
    assert (c.verdict, c.who, c.confidence, c.reason) == (Verdict.WRITE_AFTER_PEER_CLOSE, Who.PEER, Confidence.HIGH,
                                                          "TCP_TIMEWAIT_SOCKET")
    assert "recorded sending this reset (data_after_close, TCP_TIMEWAIT_SOCKET)" in c.explanation
    assert c.pairing is not None and c.pairing["by"] == "segment"      # a TIME_WAIT socket has no full state
    # the kernel's count: the server namespace sent exactly this one reset in the whole run
    # (none for the connections the router reset)
    sent = [e for i, e in judged if i == 1 and e.event == "reset_sent"]
    assert run.server_out_rsts == len(sent) == 1


def test_a_reject_rule_on_the_router_is_a_proven_middlebox_reset(lab):
    run, judged, _ = lab
    assert run.errors["reject"] == ["http_response:ECONNRESET"]
    c = side(judged, 0, 8082, "reset_received")
    assert (c.verdict, c.who, c.confidence) == (Verdict.MIDDLEBOX_RESET, Who.MIDDLEBOX, Confidence.HIGH)
    assert any(x.startswith("the server's host recorded this connection and sent no reset") for x in c.evidence)
    assert not [e for i, e in judged if i == 1 and e.event == "reset_sent" and e.lport == 8082]


def _shifted(src: str, dst: str, seconds: float) -> str:
    """The recording as a host whose wall clock is `seconds` ahead would have written it."""
    with open(src, encoding="utf-8") as fh:
        lines = fh.readlines()
    header = json.loads(lines[0])
    header["context"]["mono_to_wall_ns"] += int(seconds * 1e9)
    with open(dst, "w", encoding="utf-8") as fh:
        fh.write(json.dumps(header) + "\n")
        fh.writelines(lines[1:])
    return dst


def test_a_skewed_clock_still_pairs_and_the_skew_is_reported(lab, tmp_path, capsys):
    run, judged, pairing = lab
    skewed = _shifted(run.server_recording, str(tmp_path / "server-skewed.jsonl"), SKEW_S)
    hosts = load_hosts([run.client_recording, skewed])
    judged2, pairing2 = explain_hosts(hosts)
    sk0, sk = pairing.skew[1], pairing2.skew[1]
    assert sk0 is not None and sk is not None and sk.consistent and sk.pairs >= 3
    assert abs(sk0.offset_ns) <= sk0.uncertainty_ns < 5_000_000    # one machine: no skew, within the bound
    assert abs(sk.offset_ns - sk0.offset_ns - SKEW_S * 1e9) < 1e6
    key = lambda j: sorted((h, e.event, e.lport, e.rport, e.verdict, e.who, e.confidence) for h, e in j)  # noqa: E731
    assert key(judged2) == key(judged)
    # the CLI reports it, and every event follows the JSON contract
    assert main(["merge", "--json", run.client_recording, skewed]) == 0
    out, err = capsys.readouterr()
    assert "reads 7.000 s ahead of the reference" in err
    schema_path = os.path.join(os.path.dirname(__file__), "..", "..", "docs", "schema", "event.schema.json")
    with open(schema_path, encoding="utf-8") as fh:
        validator = jsonschema.Draft202012Validator(json.load(fh))
    events = [json.loads(line) for line in out.splitlines()]
    for e in events:
        validator.validate(e)
    assert all(e["pairing"]["paired"] for e in events)
    assert {round(e["pairing"]["clock_skew_s"]) for e in events} == {SKEW_S, -SKEW_S}


def test_two_recordings_of_one_host_are_refused(lab, tmp_path, capsys):
    run, _, _ = lab
    copy = shutil.copy(run.client_recording, tmp_path / "again.jsonl")
    assert main(["merge", run.client_recording, str(copy)]) == 10
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and "are recordings of the same host" in err[0] and err[1].startswith("  fix: ")
