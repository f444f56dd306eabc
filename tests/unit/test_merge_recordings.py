"""The merge on two hosts' recordings the real kernel made (tests/data/merge, recorded by
scripts/record_merge.py from the lab of tests/lab/crosshost.py): golden output, the facts the
pairing rests on, and clock skew."""

from __future__ import annotations

import json
import os

import pytest

from tests.unit.helpers import DATA
from tracer.explain.pairing import SEQ_SPACE, Pairing, HostStream, origins, seq_diff
from tracer.explain.pipeline import explain_hosts
from tracer.merge import load_hosts
from tracer.model.record import RecordType
from tracer.model.verdicts import Confidence, Verdict, Who
from tracer.sinks import recording

pytestmark = pytest.mark.unit
INPUTS = ("tests/data/merge/client.jsonl", "tests/data/merge/server.jsonl")


@pytest.fixture
def in_repo(monkeypatch):
    monkeypatch.chdir(os.path.dirname(os.path.dirname(DATA)))


def truth() -> dict:
    with open(os.path.join(DATA, "merge", "truth.json"), encoding="utf-8") as fh:
        return json.load(fh)


def merged(paths=INPUTS):
    hosts = load_hosts(paths)
    return explain_hosts(hosts)


def test_merge_matches_golden(in_repo):
    judged, _ = merged()
    with open(os.path.join(DATA, "golden", "merge.json"), encoding="utf-8") as fh:
        assert [e.to_json() for _, e in judged] == json.load(fh)


def test_verdicts_per_connection(in_repo):
    judged, _ = merged()
    t = truth()
    got = {(h, e.event, e.rport if h == 0 else e.lport): (e.verdict, e.who, e.confidence) for h, e in judged}
    assert got == {
        (0, "reset_received", 8080): (Verdict.STALE_AFTER_IDLE, Who.MIDDLEBOX, Confidence.HIGH),
        (1, "reset_received", 8080): (Verdict.MIDDLEBOX_RESET, Who.MIDDLEBOX, Confidence.HIGH),
        (0, "reset_received", 8081): (Verdict.WRITE_AFTER_PEER_CLOSE, Who.PEER, Confidence.HIGH),
        (1, "reset_sent", 8081): (Verdict.DATA_AFTER_CLOSE, Who.LOCAL, Confidence.HIGH),
        (0, "reset_received", 8082): (Verdict.MIDDLEBOX_RESET, Who.MIDDLEBOX, Confidence.HIGH),
    }
    for h, e in judged:
        assert e.pairing is not None and e.pairing["paired"] and e.pairing["translated"]
        if h == 0:   # the port the server's end has is the one nginx logged
            name = {v: k for k, v in t["ports"].items()}[e.rport]
            assert e.peer is not None and [e.peer["raddr"], e.peer["rport"]] == t["nginx_saw"][name]
            assert e.lport == t["client_port"][name] != e.peer["rport"]


def _recs(name: str):
    rec = recording.load(os.path.join(DATA, "merge", name))
    return recording.decoded(rec)[0]


def test_stream_origins_are_constant_and_agree_across_the_nat():
    """What pairing rests on, in the kernel's own numbers: every record of one socket has the
    same origins, and the two ends agree within one (the connecting side counts its SYN)."""
    client, server = _recs("client.jsonl"), _recs("server.jsonl")
    by_sock: dict[tuple[int, int, int], set[tuple[int, int]]] = {}
    for r in client + server:
        o = origins(r)
        if o is not None:
            by_sock.setdefault((r.netns, r.skaddr, r.birth_ns or 0), set()).add(o)
    assert by_sock and all(len(v) == 1 for v in by_sock.values())
    c = [next(iter(v)) for (ns, _, _), v in by_sock.items() if ns == client[0].netns]
    s = [next(iter(v)) for (ns, _, _), v in by_sock.items() if ns == server[0].netns]
    assert len(c) == len(s) == 3   # the three connections, each socket with its own origins
    matched = [(a, b) for a in c for b in s if seq_diff(b[1], a[0]) == 1 and seq_diff(b[0], a[1]) == 0]
    assert len(matched) == 3 and len({a for a, _ in matched}) == len({b for _, b in matched}) == 3
    assert all(0 <= x < SEQ_SPACE for pair in matched for o in pair for x in o)


def test_the_timewait_reset_answered_the_clients_segment():
    """The TIME_WAIT socket's reset carries the client's segment: its TSecr is the server TSval
    the client last accepted, its ack the client's rcv_nxt (where the reset must land)."""
    client, server = _recs("client.jsonl"), _recs("server.jsonl")
    tw = [r for r in server if r.type is RecordType.RESET_SENT and r.state == "TIME_WAIT"]
    got = [r for r in client if r.type is RecordType.RESET_RECEIVED and r.rport == 8081]
    assert len(tw) == len(got) == 1
    assert tw[0].flag("seg_seq") and tw[0].flag("seg_ts") and got[0].flag("ts")
    assert tw[0].seg_tsecr == got[0].ts_recent and tw[0].seg_ack == got[0].rcv_nxt
    assert got[0].snd_una <= tw[0].seg_seq < got[0].snd_nxt


def test_clock_skew_of_a_shifted_recording_is_measured(tmp_path, in_repo):
    src = os.path.join(DATA, "merge", "server.jsonl")
    with open(src, encoding="utf-8") as fh:
        lines = fh.readlines()
    header = json.loads(lines[0])
    header["context"]["mono_to_wall_ns"] -= 5_250_000_000   # its clock 5.25 s behind
    shifted = tmp_path / "server.jsonl"
    shifted.write_text(json.dumps(header) + "\n" + "".join(lines[1:]), encoding="utf-8")
    base, p0 = merged()
    moved, p1 = merged((INPUTS[0], str(shifted)))
    assert p0.skew[1] is not None and p1.skew[1] is not None
    assert abs(p1.skew[1].offset_ns - p0.skew[1].offset_ns + 5_250_000_000) < 1000
    assert p1.skew[1].uncertainty_ns == p0.skew[1].uncertainty_ns < 1_000_000
    assert [(h, e.verdict, e.who, e.confidence) for h, e in moved] == [(h, e.verdict, e.who, e.confidence) for h, e in base]


def test_without_the_server_recording_the_client_is_one_sided(in_repo):
    hosts = load_hosts(INPUTS)
    p = Pairing([HostStream(hosts[0].label, hosts[0].records), HostStream("empty", [])])
    c = [r for r in hosts[0].records if r.type is RecordType.RESET_RECEIVED and r.rport == 8080][0]
    cp = p.counterpart(0, c)
    assert getattr(cp, "why", "").startswith("no other recording has this connection")


def test_events_carry_their_sequence_numbers(in_repo):
    judged, _ = merged()
    by = {(h, e.event, e.rport if h == 0 else e.lport): e.to_json() for h, e in judged}
    tw = by[(1, "reset_sent", 8081)]["seq"]
    got = by[(0, "reset_received", 8081)]["seq"]
    assert set(tw) == {"segment"} and tw["segment"]["ack"] == got["rcv_nxt"]   # where the reset landed
    assert {"snd_una", "snd_nxt", "rcv_nxt", "bytes_acked", "bytes_received", "ts_recent", "ts_echo_ms"} <= set(got)


def test_without_states_the_server_is_recorded_only_where_something_happened_to_it(in_repo):
    """The README's claim: without --states the server's recording has a connection only if it
    reset, was reset or aborted. The NAT-forgotten connection still is (nginx's close met the
    forgotten flow); the rejected one is not, so the client's view of it stays one-sided."""
    import dataclasses

    client, server = load_hosts(INPUTS)
    server = dataclasses.replace(server, records=[r for r in server.records if r.type is not RecordType.STATE])
    judged, _ = explain_hosts([client, server])
    c = {e.rport: e for h, e in judged if h == 0}
    assert (c[8080].who, c[8080].confidence) == (Who.MIDDLEBOX, Confidence.HIGH)
    assert (c[8082].who, c[8082].confidence, c[8082].pairing["paired"]) == (Who.PEER, Confidence.MEDIUM, False)  # type: ignore[index]
    assert c[8082].verdict is Verdict.PEER_ABORT
