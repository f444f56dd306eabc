"""Correlator batching: the records of one reset are never split across releases."""

from __future__ import annotations

import pytest

from tests.unit.helpers import record
from tracer.explain.correlate import PEER_HOLD_NS, SETTLE_NS, Correlator
from tracer.model.record import RecordType

pytestmark = pytest.mark.unit


def test_records_of_one_socket_are_released_together():
    c = Correlator()
    t = 10_000_000_000
    sent = record(ts_ns=t, type=RecordType.RESET_SENT, reason="TCP_ABORT_ON_CLOSE")
    err = record(ts_ns=t + 5_000, type=RecordType.ABORT, errno="ECONNRESET", errno_raw=104)
    c.feed([sent, err])
    # The cut falls between the two records of one socket: hold both.
    assert c.release(t + SETTLE_NS + 1_000) == []
    out = c.release(t + SETTLE_NS + 10_000)
    assert len(out) == 1 and out[0].error is err


def test_steady_traffic_does_not_delay_releases():
    """One reset per millisecond on different sockets: each is released once settled."""
    c = Correlator()
    t = 10_000_000_000
    c.feed([record(ts_ns=t + i * 1_000_000, skaddr=0x1000 + i, type=RecordType.RESET_SENT,
                   reason="TCP_ABORT_ON_CLOSE") for i in range(100)])
    out = c.release(t + 50 * 1_000_000 + SETTLE_NS)
    assert len(out) == 51


def test_state_records_are_not_incidents():
    c = Correlator()
    c.feed([record(type=RecordType.STATE)])
    assert c.release(None) == [] and c.dropped_states == 1


# Both ends on this host (the lab's namespaces): the client's received reset and the server's
# sent reset, traced microseconds apart, may reach the reader in two drains (a full batch, a
# preempted sender). The received one must not be explained before the sender's record had a
# chance to arrive: without it, a reset this host's own peer sent reads as a middlebox's.
CLIENT = dict(laddr="10.0.0.2", lport=40000, raddr="10.0.0.1", rport=8080, skaddr=0x2000, netns=2)


def local(addr: str):
    return addr in ("10.0.0.1", "10.0.0.2")


def test_a_received_reset_from_a_local_peer_waits_for_the_senders_record():
    c = Correlator(peer_is_local=local)
    t = 10_000_000_000
    received = record(ts_ns=t, type=RecordType.RESET_RECEIVED, state="ESTABLISHED", **CLIENT)
    c.feed([received])
    c.feed([])                                         # a read later: not the last read's any more
    assert c.release(t + 3 * SETTLE_NS) == []          # settled, but its sender may still come
    sent = record(ts_ns=t + 20_000, type=RecordType.RESET_SENT, reason="TCP_ABORT_ON_CLOSE")
    c.feed([sent])
    assert c.release(t + 5 * SETTLE_NS) == []          # the sender's record is the last read
    c.feed([])
    out = c.release(t + 6 * SETTLE_NS)
    mine = next(i for i in out if i.primary.type is RecordType.RESET_RECEIVED)
    assert len(out) == 2 and mine.peer is sent and mine.peer_local


def test_without_a_senders_record_it_is_released_after_the_hold():
    c = Correlator(peer_is_local=local)
    t = 10_000_000_000
    c.feed([record(ts_ns=t, type=RecordType.RESET_RECEIVED, state="ESTABLISHED", **CLIENT)])
    c.feed([])
    assert c.release(t + PEER_HOLD_NS - 1) == []
    out = c.release(t + PEER_HOLD_NS + 1)
    assert len(out) == 1 and out[0].peer is None and out[0].peer_local   # a middlebox's, then


def test_a_received_reset_from_a_remote_peer_does_not_wait():
    c = Correlator(peer_is_local=lambda addr: False)
    t = 10_000_000_000
    c.feed([record(ts_ns=t, type=RecordType.RESET_RECEIVED, state="ESTABLISHED", **CLIENT)])
    c.feed([])
    assert len(c.release(t + SETTLE_NS + 1)) == 1


def test_a_sender_already_released_links_at_once():
    c = Correlator(peer_is_local=local)
    t = 10_000_000_000
    sent = record(ts_ns=t, type=RecordType.RESET_SENT, reason="TCP_ABORT_ON_CLOSE")
    c.feed([sent])
    c.feed([])
    assert len(c.release(t + SETTLE_NS + 1)) == 1
    c.feed([record(ts_ns=t + 2 * SETTLE_NS, type=RecordType.RESET_RECEIVED, state="ESTABLISHED", **CLIENT)])
    c.feed([])
    out = c.release(t + 3 * SETTLE_NS + 1)
    assert len(out) == 1 and out[0].peer is sent


def test_a_held_reset_keeps_its_errno_with_it():
    c = Correlator(peer_is_local=local)
    t = 10_000_000_000
    received = record(ts_ns=t, type=RecordType.RESET_RECEIVED, state="ESTABLISHED", **CLIENT)
    err = record(ts_ns=t + 3_000, type=RecordType.ABORT, errno="ECONNRESET", errno_raw=104, **CLIENT)
    c.feed([received, err])
    c.feed([])
    assert c.release(t + 3 * SETTLE_NS) == []          # the errno is not an incident of its own
    out = c.release(t + PEER_HOLD_NS + 1)
    assert len(out) == 1 and out[0].error is err and out[0].primary is received


def test_a_read_that_ends_between_two_records_of_one_reset_does_not_split_them():
    """The reader is 20 ms late and its read ends after the received reset: the errno record,
    traced 8 us later, comes in the next read. Released at once, the reset and its errno were
    two incidents (a refused connect counted twice: connection_refused from each)."""
    c = Correlator()
    t = 10_000_000_000
    received = record(ts_ns=t, type=RecordType.RESET_RECEIVED, state="SYN_SENT", **CLIENT)
    err = record(ts_ns=t + 8_000, type=RecordType.ABORT, errno="ECONNREFUSED", errno_raw=111, **CLIENT)
    c.feed([received])
    assert c.release(t + 2 * SETTLE_NS) == []          # the last record read waits for the next read
    c.feed([err])
    assert c.release(t + 3 * SETTLE_NS) == []          # the errno is the last read's: one more release
    out = c.release(t + 4 * SETTLE_NS)
    assert len(out) == 1 and out[0].primary is received and out[0].error is err


def test_the_last_read_waits_for_one_release_only():
    c = Correlator()
    t = 10_000_000_000
    c.feed([record(ts_ns=t, type=RecordType.RESET_SENT, reason="TCP_ABORT_ON_CLOSE")])
    assert c.release(t + 2 * SETTLE_NS) == []
    c.feed([])                                         # the ring was empty: nothing more is coming
    assert len(c.release(t + 3 * SETTLE_NS)) == 1
    c.feed([record(ts_ns=t + 5 * SETTLE_NS, type=RecordType.RESET_SENT, reason="TCP_ABORT_ON_CLOSE")])
    assert c.release(t + 7 * SETTLE_NS) == []
    assert len(c.release(t + 7 * SETTLE_NS)) == 1      # a second release without a read


def test_this_hosts_own_reset_on_the_socket_needs_no_wait():
    """TCP_ABORT_ON_DATA: the socket's own sent reset and receive are the incident."""
    c = Correlator(peer_is_local=local)
    t = 10_000_000_000
    received = record(ts_ns=t, type=RecordType.RESET_RECEIVED, state="FIN_WAIT1", **CLIENT)
    sent = record(ts_ns=t + 2_000, type=RecordType.RESET_SENT, reason="TCP_ABORT_ON_DATA", **CLIENT)
    c.feed([received, sent])
    c.feed([])
    out = c.release(t + 3 * SETTLE_NS)
    assert len(out) == 1 and out[0].primary is sent and out[0].self_received is received


def test_the_end_of_the_stream_releases_what_waits_for_a_sender():
    c = Correlator(peer_is_local=local)
    t = 10_000_000_000
    c.feed([record(ts_ns=t, type=RecordType.RESET_RECEIVED, state="ESTABLISHED", **CLIENT)])
    c.feed([])
    assert c.release(t + 2 * SETTLE_NS) == []
    out = c.release(None)
    assert len(out) == 1 and out[0].peer is None


def test_an_errno_read_after_its_reset_was_released_is_not_an_incident_of_its_own():
    """However late the reader: a refused connect is one connection_refused, not two."""
    c = Correlator()
    t = 10_000_000_000
    received = record(ts_ns=t, type=RecordType.RESET_RECEIVED, state="SYN_SENT", **CLIENT)
    c.feed([received])
    c.feed([])
    (inc,) = c.release(t + 2 * SETTLE_NS)
    assert inc.primary is received and inc.error is None
    late = record(ts_ns=t + 1_000_000, type=RecordType.ABORT, errno="ECONNREFUSED", errno_raw=111, **CLIENT)
    other = record(ts_ns=t + 9_000_000, type=RecordType.ABORT, errno="ETIMEDOUT", errno_raw=110,
                   **{**CLIENT, "skaddr": 0x3000})
    c.feed([late, other])
    c.feed([])
    out = c.release(t + 4 * SETTLE_NS)
    assert [i.primary for i in out] == [other] and c.late_errors == 1
    # a second errno on that socket, or one past the join window, is its own again
    c.feed([record(ts_ns=t + 2_000_000, type=RecordType.ABORT, errno="ECONNRESET", errno_raw=104, **CLIENT)])
    c.feed([])
    assert len(c.release(t + 5 * SETTLE_NS)) == 1


def test_a_late_error_that_no_reset_gives_is_an_incident_of_its_own():
    """A close with unread data sent a reset (no errno ever follows); the socket's address is
    reused at once by a connect to the same peer, which fails with EHOSTUNREACH: not the
    reset's error, a second incident."""
    c = Correlator()
    t = 10_000_000_000
    sent = record(ts_ns=t, type=RecordType.RESET_SENT, reason="TCP_ABORT_ON_CLOSE", **CLIENT)
    c.feed([sent])
    c.feed([])
    (inc,) = c.release(t + 2 * SETTLE_NS)
    assert inc.primary is sent and inc.error is None
    unreachable = record(ts_ns=t + 1_000_000, type=RecordType.ABORT, errno="EHOSTUNREACH", errno_raw=113, **CLIENT)
    c.feed([unreachable])
    c.feed([])
    out = c.release(t + 4 * SETTLE_NS)
    assert [i.primary for i in out] == [unreachable] and c.late_errors == 0
