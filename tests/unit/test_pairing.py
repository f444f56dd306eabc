"""Pairing across hosts and two-sided verdicts, on synthetic records whose sequence numbers obey
the kernel's accounting (tracer/explain/pairing.py docstring). The same logic on streams the
real kernel recorded: tests/unit/test_merge_recordings.py."""

from __future__ import annotations

import dataclasses

import pytest

from tests.unit.helpers import record
from tracer.explain import crosshost
from tracer.explain.pairing import Paired, Pairing, Unpaired, HostStream, origins, seq_diff
from tracer.explain.pipeline import explain_hosts
from tracer.model.record import FLAG_BITS, Record, RecordType
from tracer.model.verdicts import Confidence, Verdict, Who

pytestmark = pytest.mark.unit

S = 10**9
C_ISN, S_ISN = 0xFFFF_FF00, 0x1234_5678   # the client's wraps around 2^32 on the way
WALL = 1_700_000_000 * S


def flags(*names: str) -> int:
    return sum(FLAG_BITS[n] for n in names)


def client_rec(ts: float, **kw: object) -> Record:
    """The client's socket after sending 20 bytes (+ its SYN) and receiving 10."""
    base = dict(
        type=RecordType.RESET_RECEIVED, state="ESTABLISHED", ts_ns=int(ts * S), wall_ns=WALL + int(ts * S),
        flags_raw=flags("sock_known", "tcp_fields", "connected", "seq"), netns=11, skaddr=0xA,
        laddr="10.9.0.1", lport=40000, raddr="10.9.1.2", rport=8080, comm="client", pid=10,
        estab_ns=1 * S, birth_ns=1 * S, last_send_ns=int(ts * S) - 1000, last_recv_ns=int(1.2 * S),
        snd_una=(C_ISN + 21) % 2**32, snd_nxt=(C_ISN + 31) % 2**32, bytes_acked=21,
        rcv_nxt=(S_ISN + 11) % 2**32, bytes_received=10, srtt_us=200)
    base.update(kw)
    return record(**base)  # type: ignore[arg-type]


def server_rec(ts: float, skew: float = 0.0, **kw: object) -> Record:
    """The server's end of the same connection, seen through masquerade (another client port)."""
    base = dict(
        type=RecordType.RESET_RECEIVED, state="FIN_WAIT1", ts_ns=int(ts * S), wall_ns=WALL + int((ts + skew) * S),
        flags_raw=flags("sock_known", "tcp_fields", "accepted", "seq", "orphan"), netns=22, skaddr=0xB,
        laddr="10.9.1.2", lport=8080, raddr="10.9.1.1", rport=23456, comm="nginx", pid=20,
        estab_ns=1 * S + 100_000, birth_ns=1 * S + 100_000, last_send_ns=int(1.2 * S), last_recv_ns=int(1.1 * S),
        snd_una=(S_ISN + 11) % 2**32, snd_nxt=(S_ISN + 12) % 2**32, bytes_acked=10,
        rcv_nxt=(C_ISN + 21) % 2**32, bytes_received=20, srtt_us=200, owner_source="listener")
    base.update(kw)
    return record(**base)  # type: ignore[arg-type]


def hosts(client: list[Record], server: list[Record], server_skew: float = 0.0) -> list[crosshost.Host]:
    return [crosshost.Host("client-host", "client.jsonl", client, window=(WALL, WALL + 60 * S)),
            crosshost.Host("server-host", "server.jsonl", server, mono_to_wall_ns=int(server_skew * S),
                           window=(WALL + int(server_skew * S), WALL + int((60 + server_skew) * S)))]


def by_host(judged: list, h: int) -> list:
    return [e for i, e in judged if i == h]


def test_origins_are_the_same_at_every_moment_and_on_both_ends():
    early = client_rec(2, snd_una=(C_ISN + 1) % 2**32, bytes_acked=1, rcv_nxt=(S_ISN + 1) % 2**32, bytes_received=0)
    late = client_rec(9)
    assert origins(early) == origins(late) == (C_ISN, (S_ISN + 1) % 2**32)
    mine, theirs = origins(server_rec(7))  # type: ignore[misc]
    # the connecting side counts its SYN: its stream starts one earlier in its own view
    assert (seq_diff(mine, origins(late)[1]), seq_diff(theirs, origins(late)[0])) == (0, 1)  # type: ignore[index]


def test_nat_forgot_the_flow_proven_by_the_server_recording():
    judged, pairing = explain_hosts(hosts([client_rec(5)], [server_rec(7)]))
    (c,), (s,) = by_host(judged, 0), by_host(judged, 1)
    assert (c.verdict, c.who, c.confidence) == (Verdict.STALE_AFTER_IDLE, Who.MIDDLEBOX, Confidence.HIGH)
    assert any("the server's host recorded this connection and sent no reset (server.jsonl" in x for x in c.evidence)
    assert any("despite translated addresses" in x for x in c.evidence)
    assert c.pairing == {**c.pairing, "paired": True, "host": "server-host", "translated": True}
    assert c.peer is not None and c.peer["rport"] == 23456
    # the server's own reset (its FIN met the NAT too): the client's host sent nothing either
    assert (s.verdict, s.who, s.confidence) == (Verdict.MIDDLEBOX_RESET, Who.MIDDLEBOX, Confidence.HIGH)
    assert any("the client's host recorded this connection and sent no reset" in x for x in s.evidence)


def test_the_server_really_reset_it_with_its_own_reason():
    sent = server_rec(5.0001, type=RecordType.RESET_SENT, state="CLOSE", reason="TCP_ABORT_ON_CLOSE",
                      flags_raw=flags("sock_known", "tcp_fields", "accepted", "seq", "active", "orphan"),
                      snd_nxt=(S_ISN + 11) % 2**32, unread_bytes=10)
    judged, _ = explain_hosts(hosts([client_rec(5.0002)], [sent]))
    (c,), (s,) = by_host(judged, 0), by_host(judged, 1)
    assert s.verdict is Verdict.CLOSED_WITH_UNREAD_DATA
    assert (c.verdict, c.who, c.confidence, c.reason) == (Verdict.PEER_ABORT, Who.PEER, Confidence.HIGH,
                                                          "TCP_ABORT_ON_CLOSE")
    assert "recorded sending this reset (closed_with_unread_data" in c.explanation
    assert "It was not a middlebox" in c.explanation    # one side alone guessed a stale flow
    assert any(f.startswith("on the server (server-host): read the request") for f in c.fix)
    assert any("recorded this reset arriving in ESTABLISHED" in x for x in s.evidence)


def test_skewed_clock_still_pairs_and_is_measured():
    # the server's wall clock is 7 s ahead; its records have no ESTABLISHED time, only the reset
    sent = server_rec(5.0001, skew=7.0, type=RecordType.RESET_SENT, state="CLOSE", reason="TCP_ABORT_ON_CLOSE",
                      flags_raw=flags("sock_known", "tcp_fields", "accepted", "seq", "active"),
                      snd_nxt=(S_ISN + 11) % 2**32)
    judged, pairing = explain_hosts(hosts([client_rec(5.0002)], [sent], server_skew=7.0))
    sk = pairing.skew[1]
    assert sk is not None and abs(sk.offset_ns - 7 * S) <= sk.uncertainty_ns and sk.uncertainty_ns < S // 1000
    assert by_host(judged, 0)[0].who is Who.PEER
    assert by_host(judged, 0)[0].pairing["clock_skew_s"] == pytest.approx(7.0, abs=1e-3)  # type: ignore[index]


def test_skew_from_the_handshake_alone():
    p = Pairing([HostStream("c", [client_rec(5, wall_ns=WALL + 5 * S)]),
                 HostStream("s", [server_rec(7, skew=-3.0)])])
    sk = p.skew[1]
    # server ESTABLISHED 100 µs after the client's; its clock 3 s behind
    assert sk is not None and abs(sk.offset_ns - (-3 * S + 100_000)) <= sk.uncertainty_ns <= 200_000


def test_absence_is_not_proof_when_the_other_recording_lost_records():
    h = hosts([client_rec(5)], [server_rec(7)])
    h[1] = dataclasses.replace(h[1], gaps=("its tracer lost 3 records (ring buffer full: raise --ringbuf-pages)",))
    judged, _ = explain_hosts(h)
    c = by_host(judged, 0)[0]
    assert (c.who, c.confidence) == (Who.MIDDLEBOX, Confidence.MEDIUM)
    assert any(x.startswith("not proven: its tracer lost 3 records") for x in c.evidence)


def test_absence_is_not_proof_outside_the_other_recording():
    h = hosts([client_rec(5)], [server_rec(7)])
    h[1] = dataclasses.replace(h[1], window=(WALL + 6 * S, WALL + 60 * S))   # started after the reset
    judged, _ = explain_hosts(h)
    c = by_host(judged, 0)[0]
    assert c.confidence is Confidence.MEDIUM and any("does not cover this moment" in x for x in c.evidence)


def test_unrelated_connection_is_not_paired_and_says_why():
    other = server_rec(7, snd_una=5, bytes_acked=0, rcv_nxt=77, bytes_received=0)
    judged, _ = explain_hosts(hosts([client_rec(5)], [other]))
    c = by_host(judged, 0)[0]
    assert c.pairing is not None and c.pairing["paired"] is False
    assert (c.verdict, c.confidence) == (Verdict.STALE_AFTER_IDLE, Confidence.MEDIUM)   # the one-sided view
    assert any(x.startswith("not paired with another host's recording: no other recording has this") for x in c.evidence)


def test_old_recordings_without_sequence_numbers_say_so():
    bare = dataclasses.replace(client_rec(5), flags_raw=flags("sock_known", "tcp_fields", "connected"))
    cp = Pairing([HostStream("c", [bare]), HostStream("s", [server_rec(7)])]).counterpart(0, bare)
    assert isinstance(cp, Unpaired) and "did not record them" in cp.why


def test_a_timewait_reset_pairs_by_the_segment_it_answered():
    # the server closed first; its TIME_WAIT socket answers the client's late data
    late = client_rec(5.0002, state="ESTABLISHED", snd_nxt=(C_ISN + 41) % 2**32)
    tw = server_rec(5.0001, type=RecordType.RESET_SENT, state="TIME_WAIT", reason="TCP_TIMEWAIT_SOCKET",
                    flags_raw=flags("timewait", "from_closed", "accepted", "seg_seq"), seg_flags=0x18,
                    seg_seq=(C_ISN + 31) % 2**32, seg_ack=(S_ISN + 11) % 2**32, snd_una=0, rcv_nxt=0)
    p = Pairing([HostStream("c", [late]), HostStream("s", [tw])])
    cp = p.counterpart(0, late)
    assert isinstance(cp, Paired) and cp.by == "segment" and cp.reset is tw
    judged, _ = explain_hosts(hosts([late], [tw]))
    c = by_host(judged, 0)[0]
    assert (c.verdict, c.who, c.confidence) == (Verdict.WRITE_AFTER_PEER_CLOSE, Who.PEER, Confidence.HIGH)


def test_a_segment_that_fits_two_connections_is_not_paired():
    tw = server_rec(5.0001, type=RecordType.RESET_SENT, state="TIME_WAIT", reason="TCP_TIMEWAIT_SOCKET",
                    flags_raw=flags("timewait", "seg_seq"), seg_flags=0x10,
                    seg_seq=(C_ISN + 25) % 2**32, seg_ack=(S_ISN + 11) % 2**32)
    a = client_rec(5)
    b = client_rec(5, skaddr=0xC, snd_una=(C_ISN + 30) % 2**32, bytes_acked=20, rcv_nxt=(S_ISN + 20) % 2**32,
                   bytes_received=10)   # another connection whose streams start close by
    p = Pairing([HostStream("c", [a, b]), HostStream("s", [tw])])
    cp = p.counterpart(1, tw)
    assert isinstance(cp, Unpaired) and "several" in cp.why


def test_merged_events_follow_the_json_contract():
    import jsonschema

    from tests.unit.test_schema import schema

    judged, _ = explain_hosts(hosts([client_rec(5)], [server_rec(7), server_rec(9, skaddr=0xD, snd_una=1, rcv_nxt=2)]))
    validator = jsonschema.Draft202012Validator(schema())
    for _, e in judged:
        validator.validate(e.to_json())
    assert {e.to_json()["pairing"]["paired"] for _, e in judged} == {True, False}
