"""Correlator batching: the records of one reset are never split across releases."""

from __future__ import annotations

import pytest

from tests.unit.helpers import record
from tracer.correlate import JOIN_WINDOW_NS, SETTLE_NS, Correlator
from tracer.record import RecordType

pytestmark = pytest.mark.unit


def test_release_waits_for_a_quiet_gap():
    c = Correlator()
    t = 10_000_000_000
    sent = record(ts_ns=t, type=RecordType.RESET_SENT, reason="TCP_ABORT_ON_CLOSE")
    err = record(ts_ns=t + 5_000, type=RecordType.ABORT, errno="ECONNRESET", errno_raw=104)
    c.feed([sent, err])
    # The cut falls between the two records: nothing may be released yet.
    assert c.release(t + SETTLE_NS + 1_000) == []
    out = c.release(t + SETTLE_NS + JOIN_WINDOW_NS + 10_000)
    assert len(out) == 1 and out[0].error is err


def test_state_records_are_not_incidents():
    c = Correlator()
    c.feed([record(type=RecordType.STATE)])
    assert c.release(None) == [] and c.dropped_states == 1
