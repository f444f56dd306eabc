"""Decoding recorded records and the recording format's errors."""

from __future__ import annotations

import io
import json

import pytest

from tests.unit.helpers import RECORDINGS
from tracer.sinks import recording
from tracer.model.errors import RecordingInvalid
from tracer.model.record import PREFIX_SIZES, RECORD_SIZE, RecordDecodeError, RecordType, decode

pytestmark = pytest.mark.unit


def test_recorded_records_decode_to_named_values():
    rec = recording.load([p for p in RECORDINGS if p.endswith("closed_port.jsonl")][0])
    records = [decode(b, rec.context) for b in rec.raw]
    assert all(len(b) in (RECORD_SIZE, *PREFIX_SIZES) for b in rec.raw)
    sent = [r for r in records if r.type is RecordType.RESET_SENT][0]
    recv = [r for r in records if r.type is RecordType.RESET_RECEIVED][0]
    assert sent.reason == "NO_SOCKET" and sent.state is None and sent.segment_was_syn
    assert recv.state == "SYN_SENT" and recv.comm == "tte-client" and recv.rport == 9
    assert (sent.laddr, sent.lport, sent.raddr, sent.rport) == (recv.raddr, recv.rport, recv.laddr, recv.lport)


def test_records_of_the_first_layout_decode_without_sequence_numbers():
    """A recording made before the sequence fields were appended (bpf/tte.h) still decodes."""
    rec = recording.load([p for p in RECORDINGS if p.endswith("nat_idle.jsonl")][0])
    old = [b for b in rec.raw if len(b) == PREFIX_SIZES[0]]
    assert old, "the committed recordings keep the first layout"
    r = decode(old[0], rec.context)
    assert not r.flag("seq") and (r.snd_una, r.rcv_nxt, r.bytes_acked, r.seg_seq) == (0, 0, 0, 0)
    assert decode(old[0] + bytes(RECORD_SIZE - len(old[0])), rec.context) == r


def test_unknown_numbers_stay_visible():
    rec = recording.load(RECORDINGS[0])
    ctx = rec.context.__class__(tcp_states={}, reset_reasons={})
    r = [decode(b, ctx) for b in rec.raw if decode(b, rec.context).reason][0]
    assert r.reason.startswith("UNKNOWN(")


def test_short_or_unknown_records_are_rejected():
    rec = recording.load(RECORDINGS[0])
    with pytest.raises(RecordDecodeError):
        decode(rec.raw[0][:100], rec.context)
    with pytest.raises(RecordDecodeError):
        decode(b"\x09" + rec.raw[0][1:], rec.context)


@pytest.mark.parametrize("text, message", [
    ("", "empty"),
    ('{"format": "pcap"}\n', "not a tcptrace-explain recording"),
    ('{"format": "tcptrace-explain-recording", "version": 99, "context": {}}\n', "version 99"),
    ('{"format": "tcptrace-explain-recording", "version": 1, "context": {"tcp_states": {}, '
     '"reset_reasons": {}}}\nnot json\n', "not a JSON line"),
    ('{"format": "tcptrace-explain-recording", "version": 1, "context": {"tcp_states": {}, '
     '"reset_reasons": {}}}\n{"r": "!!!"}\n', "bad record encoding"),
])
def test_bad_recordings_say_what_is_wrong(text, message):
    with pytest.raises(RecordingInvalid) as err:
        recording.read(io.StringIO(text), "x.jsonl")
    assert message in err.value.message


def test_a_recording_round_trips():
    src = recording.load(RECORDINGS[0])
    buf = io.StringIO()
    w = recording.RecordingWriter(buf, src.context, meta={"k": 1})
    for b in src.raw:
        w.write(b)
    w.finish(end={"local_addrs": ["10.0.0.1"]})
    back = recording.read(io.StringIO(buf.getvalue()))
    assert back.raw == src.raw and back.meta == {"k": 1} and back.end["local_addrs"] == ["10.0.0.1"]
    assert json.loads(buf.getvalue().splitlines()[0])["format"] == recording.MAGIC


def test_every_member_of_a_record_lands_in_its_own_field():
    """decode() builds Record positionally: a distinct value in every member of a packed
    record must come back under that member's name."""
    from tracer.model.record import _STRUCT, FIELD_ORDER, DecodeContext
    text = {"comm": b"owner", "thread": b"worker", "cur_comm": b"softirq"}
    addr = {"laddr": bytes([10, 0, 0, 1]) + bytes(12), "raddr": bytes([10, 0, 0, 2]) + bytes(12)}
    small = {"type": 1, "family": 2, "state": 1, "old_state": 0, "owner_src": 1, "seg_flags": 0x12, "err": 104,
             "reason": 1, "unread_bytes": 7}
    values = []
    for i, name in enumerate(FIELD_ORDER):
        values.append(text.get(name) or addr.get(name) or small.get(name, 1000 + i))
    ctx = DecodeContext(tcp_states={1: "ESTABLISHED"}, reset_reasons={1: "NO_SOCKET"}, mono_to_wall_ns=5)
    r = decode(_STRUCT.pack(*values), ctx)
    v = dict(zip(FIELD_ORDER, values))
    assert (r.type, r.family, r.state, r.old_state, r.reason, r.reason_raw, r.errno, r.errno_raw) == (
        RecordType.RESET_SENT, 2, "ESTABLISHED", None, "NO_SOCKET", 1, "ECONNRESET", 104)
    assert (r.laddr, r.raddr, r.comm, r.thread, r.cur_comm) == ("10.0.0.1", "10.0.0.2", "owner", "worker", "softirq")
    assert (r.owner_source, r.seg_flags, r.unread_bytes, r.wall_ns) == ("connect", 0x12, 7, v["ts_ns"] + 5)
    same = ("ts_ns", "skaddr", "cookie", "ino", "netns", "pid", "cur_pid", "lport", "rport", "birth_ns", "estab_ns",
            "fin_ns", "close_ns", "state_ns", "last_send_ns", "last_recv_ns", "last_ack_ns", "destroy_ns",
            "fin_last_send_ns", "fin_last_recv_ns", "retrans", "total_retrans", "srtt_us", "unacked_bytes",
            "snd_una", "snd_nxt", "rcv_nxt", "ts_recent", "ts_echo", "seg_seq", "seg_ack", "seg_tsval", "seg_tsecr",
            "bytes_acked", "bytes_received")
    assert {n: getattr(r, n) for n in same} == {n: v[n] for n in same}
    assert r.flags_raw == v["flags"]
