"""Explainer rules that recordings alone do not cover: every kernel reason, the verdict
contract, inference from state, and idle-time arithmetic."""

from __future__ import annotations

import dataclasses
import os

import pytest

from tests.unit.helpers import DATA, record
from tracer.explain.correlate import Incident
from tracer.explain.rules import explain, infer_reason
from tracer.kernel.features import Features, parse_format
from tracer.model.record import RecordType
from tracer.model.verdicts import Verdict

pytestmark = pytest.mark.unit

# The contract's codes (shared/DESIGN.md). Released codes are never renamed.
CONTRACT = {
    "connection_refused", "port_closed", "stale_after_idle", "write_after_peer_close", "middlebox_reset",
    "peer_abort", "reset_during_close", "closed_with_unread_data", "data_after_close", "linger_abort",
    "unknown_connection", "out_of_window", "memory_pressure", "keepalive_timeout", "retransmit_timeout",
    "syn_timeout", "listen_overflow", "unknown",
}


def kernel_reasons() -> list[str]:
    with open(os.path.join(DATA, "formats", "6.18", "tcp_send_reset.format"), encoding="utf-8") as fh:
        f = Features(tracefs="-", formats={"tcp/tcp_send_reset": parse_format(fh.read())})
    return list(f.reset_reasons.values())


def test_the_contract_codes_all_exist():
    assert CONTRACT <= {v.value for v in Verdict}


@pytest.mark.parametrize("reason", kernel_reasons())
def test_every_reason_this_kernel_can_emit_has_an_explanation(reason):
    r = record(reason=reason, state="ESTABLISHED", flags_raw=1 << 7)
    e = explain(Incident(primary=r))
    if reason in ("NOT_SPECIFIED", "MAX"):
        # No meaning of its own: the explainer falls back to inference from state and context.
        assert e.reason.startswith("inferred:")
        return
    assert e.verdict is not Verdict.UNKNOWN, reason
    assert e.reason == reason and e.explanation and e.fix
    if reason.startswith("MPTCP_RST") or reason == "ERROR":
        assert e.verdict is Verdict.MPTCP_RESET


@pytest.mark.parametrize("kw, expected", [
    (dict(state="CLOSE", flags_raw=1 << 7, unread_bytes=10), "TCP_ABORT_ON_CLOSE"),
    (dict(state="CLOSE", flags_raw=(1 << 7) | (1 << 6)), "TCP_STATE"),
    (dict(state="TIME_WAIT", flags_raw=1 << 8), "TCP_TIMEWAIT_SOCKET"),
    (dict(state=None, flags_raw=1 << 9), "NO_SOCKET"),
    (dict(state="LISTEN", seg_flags=0x10), "TCP_FLAGS"),
    (dict(state="LISTEN", seg_flags=0x02), "INVALID_SYN"),
    (dict(state="CLOSE", flags_raw=0), "TCP_ABORT_ON_DATA"),
    (dict(state="ESTABLISHED", flags_raw=(1 << 7) | (1 << 5), cur_pid=0), "TCP_KEEPALIVE_TIMEOUT"),
    (dict(state="ESTABLISHED", flags_raw=1 << 7, cur_pid=999, cur_comm="ss"), "TCP_STATE"),
    (dict(state="FIN_WAIT1", flags_raw=(1 << 7) | (1 << 3), cur_pid=0), "TCP_ABORT_ON_MEMORY"),
])
def test_inference_decision_table(kw, expected):
    assert infer_reason(Incident(primary=record(**kw))) == expected


def test_idle_excludes_the_send_that_met_the_reset():
    r = record(type=RecordType.RESET_RECEIVED, ts_ns=100_000_000_000, last_recv_ns=50_000_000_000,
               last_send_ns=99_999_000_000, state="ESTABLISHED")
    assert r.idle_s == pytest.approx(50.0)
    # A send long before the reset is activity and ends the idle period.
    r2 = record(type=RecordType.RESET_RECEIVED, ts_ns=100_000_000_000, last_recv_ns=50_000_000_000,
                last_send_ns=90_000_000_000, state="ESTABLISHED")
    assert r2.idle_s == pytest.approx(10.0)


def test_stale_after_idle_names_the_nat_gateway_and_the_pool_setting():
    r = record(type=RecordType.RESET_RECEIVED, ts_ns=400_000_000_000, last_recv_ns=49_000_000_000,
               last_send_ns=399_999_000_000, state="ESTABLISHED", flags_raw=1 << 10)
    e = explain(Incident(primary=r, peer_local=False))
    assert e.verdict is Verdict.STALE_AFTER_IDLE and e.who.value == "middlebox"
    assert any("AWS NAT Gateway" in ev for ev in e.evidence)
    assert e.software is not None and e.software["identified"] is False
    # An unknown runtime ("srv") gets the generic advice, not every runtime's settings.
    assert not any("maxIdleTime" in f or "IdleConnTimeout" in f for f in e.fix)
    assert any("if it is AWS NAT Gateway" in f and "evict at about 280 s" in f for f in e.fix)
    java = explain(Incident(primary=dataclasses.replace(r, comm="java"), peer_local=False))
    assert "maxIdleTime(Duration.ofMillis(N))" in java.fix[0]


def test_keepalive_inference_from_a_pool_reuse_names_nginx():
    r = record(type=RecordType.RESET_RECEIVED, ts_ns=200_000_000_000, state="CLOSE_WAIT", flags_raw=1 << 10,
               fin_ns=175_000_000_000, fin_last_recv_ns=100_000_000_000, fin_last_send_ns=99_900_000_000,
               last_recv_ns=100_000_000_000, last_send_ns=199_999_000_000)
    e = explain(Incident(primary=r))
    assert e.verdict is Verdict.WRITE_AFTER_PEER_CLOSE
    assert e.inferred["peer_keepalive_timeout_s"] == pytest.approx(75.0)
    assert any("nginx keepalive_timeout" in ev for ev in e.evidence)


@pytest.mark.parametrize("idle,verdict,confidence,words", [
    (0.01, Verdict.MIDDLEBOX_RESET, "high", "active use"),
    (1.0, Verdict.MIDDLEBOX_RESET, "high", "shorter than any real idle timeout"),
    (4.0, Verdict.STALE_AFTER_IDLE, "medium", "at most 4.1 s"),
    (352.0, Verdict.STALE_AFTER_IDLE, "high", "AWS NAT Gateway"),
])
def test_a_reset_the_local_peer_never_sent_is_an_idle_timeout_only_after_a_plausible_idle(idle, verdict, confidence,
                                                                                          words):
    from tracer.explain.case import Case
    from tracer.explain.rules import explain_case
    c = Case(RecordType.RESET_RECEIVED, state="ESTABLISHED", idle_s=idle, trigger=True, peer_local=True, pid=5,
             comm="app", flags=frozenset({"connected"}), raddr="10.0.0.2", rport=8080)
    e = explain_case(c)
    assert (e.verdict, e.confidence.value) == (verdict, confidence)
    assert any(words in x for x in e.evidence), e.evidence
    if verdict is Verdict.MIDDLEBOX_RESET:
        assert any("reject rules" in f for f in e.fix) and any("failover" in f for f in e.fix)
        assert not any("evict" in f or "keepalive" in f.lower() for f in e.fix)
