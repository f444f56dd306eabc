"""Storm buckets: one incident per connection, and storm lines in recordings."""

from __future__ import annotations

import io
import json

import pytest

from tests.unit.helpers import RECORDINGS
from tracer.explain.storm import StormCount, join
from tracer.model.errors import RecordingInvalid
from tracer.model.record import RecordType
from tracer.sinks import recording


def bucket(rtype, count, state=None, reason=None, errno=None, pid=0, comm="", port=8080, raddr="10.0.0.2",
           syn=False):
    return StormCount(type=rtype, state=state, reason=reason, errno=errno, pid=pid, comm=comm, raddr=raddr,
                      port=port, family=2, count=count, syn=syn)


REFUSED = [  # what the kernel counts for 100 connects of pid 7 refused by 10.0.0.2:8080
    bucket(RecordType.RESET_RECEIVED, 100, state="SYN_SENT", pid=7, comm="curl"),
    bucket(RecordType.ABORT, 100, state="SYN_SENT", errno="ECONNREFUSED", pid=7, comm="curl"),
    # this host's answers, keyed by the port the SYNs came to and marked as answering SYNs
    bucket(RecordType.RESET_SENT, 100, reason="NO_SOCKET", raddr="10.0.0.1", port=8080, syn=True),
]


def verdicts(buckets):
    out = {}
    for b in buckets:
        v = b.explained().verdict.value
        out[v] = out.get(v, 0) + b.count
    return out


def test_a_refused_connect_is_one_incident_on_each_side():
    assert verdicts(join(REFUSED)) == {"connection_refused": 100, "port_closed": 100}
    assert {b.port for b in join(REFUSED) if b.type is RecordType.RESET_SENT} == {8080}


def test_without_the_join_the_kernel_buckets_double_count():
    assert verdicts(REFUSED) != {"connection_refused": 100, "port_closed": 100}


def test_aborts_beyond_the_received_resets_stay_aborts():
    more = [REFUSED[0], bucket(RecordType.ABORT, 130, state="SYN_SENT", errno="ECONNREFUSED", pid=7, comm="curl")]
    joined = join(more)
    assert sum(b.count for b in joined) == 130
    assert [b.count for b in joined if b.type is RecordType.ABORT] == [30]


def test_no_socket_resets_that_answered_no_syn_stay_unknown_connections():
    alone = [bucket(RecordType.RESET_SENT, 5, reason="NO_SOCKET", port=443)]
    assert join(alone) == alone
    # not even beside this host's refused connects to that port: the kernel's key says which
    # resets answered SYNs (a guess from the refusals once turned these into port_closed)
    other = bucket(RecordType.RESET_SENT, 5, reason="NO_SOCKET", raddr="10.0.0.1", port=8080)
    assert verdicts(join(REFUSED + [other])) == {"connection_refused": 100, "port_closed": 100,
                                                  "unknown_connection": 5}


def test_a_socketless_reset_the_kernel_saw_answer_a_syn_is_a_closed_port_without_any_join():
    # Remote clients (a scanner, another host's health checks): no refused connect of this
    # host to infer it from; the kernel's key says the answered segment was a SYN.
    from tracer.explain.storm import decode_bucket
    from tracer.model.record import RAW_BY_TYPE, DecodeContext

    ctx = DecodeContext(tcp_states={}, reset_reasons={2: "NO_SOCKET"}, mono_to_wall_ns=0)
    key = {"type": RAW_BY_TYPE[RecordType.RESET_SENT], "state": 0, "family": 2, "reason": 2, "err": 0, "pid": 0, "port": 443, "syn": 1,
           "_pad": 0, "raddr": bytes([10, 0, 0, 9]) + bytes(12), "comm": ""}
    b = decode_bucket(key, 25, ctx)
    assert b.syn and b.type is RecordType.RESET_SENT
    assert verdicts(join([b])) == {"port_closed": 25}
    assert verdicts(join([decode_bucket({**key, "syn": 0}, 25, ctx)])) == {"unknown_connection": 25}


def test_storm_lines_round_trip_through_a_recording():
    text = open(RECORDINGS[0], encoding="utf-8").read()
    line = json.dumps({"storm": [b.to_record() for b in join(REFUSED)]}) + "\n"
    reader = recording.Reader(io.BytesIO((text + line).encode()), "x.jsonl")
    seen = []
    reader.on_storm = seen.append
    list(reader.iter_records())
    assert seen == [join(REFUSED)] and reader.storms == 1


@pytest.mark.parametrize("bad", [{"storm": 1}, {"storm": [{"type": "nope", "count": 1, "remote": "1.2.3.4"}]},
                                 {"storm": [{"type": "abort", "count": -1, "remote": "1.2.3.4"}]},
                                 {"storm": [{"type": "abort", "count": 1, "remote": "x"}]},
                                 {"storm": [{"type": "abort", "count": 1, "remote": "1.2.3.4", "port": 70000}]}])
def test_a_bad_storm_line_is_a_bad_recording_with_its_line(bad):
    text = open(RECORDINGS[0], encoding="utf-8").read()
    n = len(text.splitlines()) + 1
    with pytest.raises(RecordingInvalid) as err:
        recording.read(io.BytesIO((text + json.dumps(bad) + "\n").encode()), "x.jsonl")
    assert f"x.jsonl:{n}: bad storm line" in err.value.message


# What the kernel counted for 100 SO_LINGER 0 closes by pid 7 of connections to 10.0.0.2:8080,
# whose server (no process known) got the resets: as a linger storm in two namespaces gave them.
LINGER = [
    bucket(RecordType.RESET_SENT, 100, state="CLOSE", reason="TCP_STATE", pid=7, comm="python"),
    bucket(RecordType.ABORT, 100, state="CLOSE", errno="ECONNRESET", pid=7, comm="python"),
    bucket(RecordType.RESET_RECEIVED, 100, state="ESTABLISHED", raddr="10.0.0.1"),
    bucket(RecordType.ABORT, 100, state="CLOSE", errno="ECONNRESET", raddr="10.0.0.1"),
]


def test_a_linger_close_is_one_incident_on_each_side():
    joined = join(LINGER)
    assert verdicts(joined) == {"linger_abort": 100, "peer_abort": 100}
    assert {(b.type, b.errno) for b in joined} == {(RecordType.RESET_SENT, "ECONNRESET"),
                                                   (RecordType.RESET_RECEIVED, "ECONNRESET")}
    # before: the closer's own error reports were 100 incidents more
    assert sum(verdicts(LINGER).values()) == 400


def test_a_timeout_without_a_reset_is_not_folded_into_a_socketless_reset():
    # retransmission timeouts (ETIMEDOUT, no reset) next to resets sent with no socket to the
    # same end: nothing ties them, both stay
    buckets = [bucket(RecordType.RESET_SENT, 50, reason="NO_SOCKET", state="CLOSE", pid=7, comm="python"),
               bucket(RecordType.ABORT, 30, state="ESTABLISHED", errno="ETIMEDOUT", pid=7, comm="python")]
    assert sum(b.count for b in join(buckets)) == 80
