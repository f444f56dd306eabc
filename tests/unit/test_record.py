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
