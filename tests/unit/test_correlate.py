"""Correlator batching: the records of one reset are never split across releases."""

from __future__ import annotations

import pytest

from tests.unit.helpers import record
from tracer.explain.correlate import SETTLE_NS, Correlator
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
