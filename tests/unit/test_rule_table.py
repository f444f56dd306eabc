"""The explainer's rule table (tracer/explain/rules.py): every rule is reached by a case of its
own, every verdict code is produced by a rule test or a recording, every kernel reset reason
maps to a verdict, every rule's words exist and fill in, and storm buckets take the same path.
"""

from __future__ import annotations

import glob
import json
import os
import re
import string

import pytest

from tests.unit.helpers import DATA, record
from tracer.explain import reasons, texts
from tracer.explain.case import Case
from tracer.explain.rules import RULES, explain_case, judge
from tracer.explain.storm import StormCount
from tracer.kernel.features import Features, parse_format
from tracer.model.record import RecordType
from tracer.model.verdicts import Verdict

pytestmark = pytest.mark.unit

SENT, RECV, ABORT = RecordType.RESET_SENT, RecordType.RESET_RECEIVED, RecordType.ABORT
S = 1_000_000_000
PEER = dict(laddr="10.0.0.2", lport=40000, raddr="10.0.0.1", rport=8080, netns=2, comm="other", pid=7)


def peer(reason: str, **kw) -> object:
    return record(type=SENT, reason=reason, **{**PEER, **kw})


def case(event: RecordType, **kw) -> Case:
    base = dict(pid=100, comm="app", laddr="10.0.0.1", lport=8080, raddr="10.0.0.2", rport=40000, ts_ns=500 * S)
    return Case(event=event, **{**base, **kw})


# One case per rule, named by the rule's text key: the case that rule, and no earlier one, decides.
RULE_CASES: dict[str, Case] = {
    "port_closed": case(SENT, kernel_reason="NO_SOCKET", syn=True),
    "connect_abandoned": case(SENT, kernel_reason="NO_SOCKET", flags=frozenset({"from_closed", "connected"}),
                              synack=True, never_established=True, since_birth_ns=S, since_close_ns=S * 7 // 10),
    "data_after_destroy": case(SENT, kernel_reason="NO_SOCKET", flags=frozenset({"from_closed"}),
                               since_destroy_ns=3 * S),
    "unknown_connection": case(SENT, kernel_reason="NO_SOCKET", flags=frozenset({"from_closed"}),
                               since_destroy_ns=300 * S),
    "data_after_timewait": case(SENT, state="TIME_WAIT", kernel_reason="TCP_TIMEWAIT_SOCKET",
                                since_close_ns=S, gap_before_close_ns=S // 5, flags=frozenset({"connected"})),
    "abort_on_data": case(SENT, state="CLOSE", kernel_reason="TCP_ABORT_ON_DATA"),
    "unread_close": case(SENT, state="CLOSE", kernel_reason="TCP_ABORT_ON_CLOSE", unread_bytes=100),
    "linger2": case(SENT, state="CLOSE", kernel_reason="TCP_ABORT_ON_LINGER"),
    "listener_closed": case(SENT, state="CLOSE", kernel_reason="TCP_STATE", flags=frozenset({"accepted"})),
    "linger0": case(SENT, state="CLOSE", kernel_reason="TCP_STATE", flags=frozenset({"linger"})),
    "linger0_likely": case(SENT, state="CLOSE", kernel_reason="TCP_STATE", ino=5),
    "fin_wait2_timeout": case(SENT, state="FIN_WAIT2", kernel_reason="TCP_STATE", flags=frozenset({"orphan"})),
    "destroyed_by_task": case(SENT, state="ESTABLISHED", kernel_reason="TCP_STATE", cur_pid=999, cur_comm="ss"),
    "keepalive_timeout": case(SENT, state="ESTABLISHED", kernel_reason="TCP_KEEPALIVE_TIMEOUT"),
    "memory_pressure": case(SENT, state="FIN_WAIT1", kernel_reason="TCP_ABORT_ON_MEMORY"),
    "listener_no_connection": case(SENT, state="LISTEN", kernel_reason="TCP_FLAGS"),
    "listen_overflow": case(SENT, state="LISTEN", kernel_reason="INVALID_SYN"),
    "out_of_window": case(SENT, state="SYN_SENT", kernel_reason="TCP_INVALID_ACK_SEQUENCE"),
    "disconnect_with_data": case(SENT, state="CLOSE", kernel_reason="TCP_DISCONNECT_WITH_DATA"),
    "mptcp_reset": case(SENT, state="ESTABLISHED", kernel_reason="MPTCP_RST_EMIDDLEBOX"),
    "sent_unknown": case(SENT, state="ESTABLISHED", kernel_reason="NOT_SPECIFIED", flags=frozenset({"active"})),
    "refused_by_firewall": case(RECV, state="SYN_SENT", peer_local=True),
    "refused": case(RECV, state="SYN_SENT", peer=peer("NO_SOCKET", pid=0), peer_local=True),
    "server_idle_close": case(RECV, state="CLOSE_WAIT", flags=frozenset({"connected"}), idle_s=3.0,
                              since_fin_ns=S, gap_before_fin_ns=2 * S),
    "server_done": case(RECV, state="CLOSE_WAIT", flags=frozenset({"connected"}), since_fin_ns=S,
                        gap_before_fin_ns=S // 1000),
    "client_gave_up": case(RECV, state="CLOSE_WAIT", flags=frozenset({"accepted"}), since_fin_ns=S // 2,
                           gap_before_fin_ns=S // 5),
    "client_done": case(RECV, state="CLOSE_WAIT", flags=frozenset({"accepted"}), since_fin_ns=S // 2),
    "peer_closed_side_unknown": case(RECV, state="CLOSE_WAIT", since_fin_ns=S // 2),
    "reset_while_closing_seen": case(RECV, state="FIN_WAIT2", peer=peer("TCP_ABORT_ON_CLOSE"), peer_local=True),
    "reset_while_closing": case(RECV, state="FIN_WAIT1"),
    "close_crossed_request": case(RECV, state="ESTABLISHED", idle_s=2.5, trigger=True,
                                  peer=peer("TCP_TIMEWAIT_SOCKET"), peer_local=True),
    "close_crossed_request_no_idle": case(RECV, state="ESTABLISHED", peer=peer("TCP_ABORT_ON_DATA"),
                                          peer_local=True),
    "peer_abort_seen": case(RECV, state="ESTABLISHED", peer=peer("TCP_ABORT_ON_CLOSE"), peer_local=True),
    "stale_local_peer_known": case(RECV, state="ESTABLISHED", idle_s=352.0, trigger=True, peer_local=True),
    "stale_local_peer": case(RECV, state="ESTABLISHED", idle_s=4.0, trigger=True, peer_local=True),
    "middlebox_reset_local_peer": case(RECV, state="ESTABLISHED", idle_s=0.01, peer_local=True),
    "stale_remote_peer": case(RECV, state="ESTABLISHED", idle_s=351.0, trigger=True, peer_local=False),
    "peer_abort": case(RECV, state="ESTABLISHED", idle_s=0.2, peer_local=False),
    "syn_timeout": case(ABORT, state="SYN_SENT", errno="ETIMEDOUT", retrans=2, never_established=True),
    "retransmit_timeout": case(ABORT, state="ESTABLISHED", errno="ETIMEDOUT", retrans=5, never_established=False),
    "refused_abort": case(ABORT, errno="ECONNREFUSED"),
    "host_unreachable": case(ABORT, errno="EHOSTUNREACH"),
    "destroyed_abort": case(ABORT, errno="ECONNABORTED"),
    "abort_unknown": case(ABORT, errno="EIO"),
}


def test_rule_names_are_unique_and_name_their_words():
    names = [r.text for r in RULES]
    assert len(names) == len(set(names))
    assert set(names) <= set(texts.TEXTS)
    assert set(texts.TEXTS) <= set(names), "words no rule uses"


@pytest.mark.parametrize("name", list(RULE_CASES))
def test_each_rule_decides_its_own_case(name):
    rule = next(r for r in RULES if r.text == name)
    j = judge(reasons.resolve(RULE_CASES[name]))
    assert j.rule == name
    assert (j.verdict, j.who, j.confidence) == (rule.verdict, rule.who, rule.confidence)
    assert j.text and j.fix
    assert not [s for s in (j.text, *j.fix) if re.search(r"\{[a-z_]+\}", s)], "a field left unfilled"


def test_every_rule_has_a_case():
    assert set(RULE_CASES) == {r.text for r in RULES}


def test_each_kind_ends_with_a_rule_that_always_holds():
    for kind in (SENT, RECV, ABORT):
        last = [r for r in RULES if r.event is kind][-1]
        assert not last.reasons and last.when(case(kind)), kind
        assert last.verdict is Verdict.UNKNOWN or last.confidence.value != "high"


def golden_verdicts() -> set[str]:
    out = set()
    for path in glob.glob(os.path.join(DATA, "golden", "*.json")):
        with open(path, encoding="utf-8") as fh:
            out |= {e["verdict"] for e in json.load(fh)}
    return out


def test_every_verdict_code_is_produced_by_a_rule_test_or_a_recording():
    by_rules = {judge(reasons.resolve(c)).verdict.value for c in RULE_CASES.values()}
    missing = {v.value for v in Verdict} - by_rules - golden_verdicts()
    assert missing == set()


def test_the_recordings_alone_produce_the_lab_verdicts():
    # The lab's kinds of reset, explained from real records (not only from synthetic cases).
    assert {"stale_after_idle", "write_after_peer_close", "middlebox_reset", "data_after_close", "port_closed",
            "connection_refused", "linger_abort", "keepalive_timeout", "syn_timeout", "retransmit_timeout",
            "listener_closed", "socket_destroyed", "closed_with_unread_data", "peer_abort"} <= golden_verdicts()


def format_reasons(version: str) -> list[str]:
    with open(os.path.join(DATA, "formats", version, "tcp_send_reset.format"), encoding="utf-8") as fh:
        f = Features(tracefs="-", formats={"tcp/tcp_send_reset": parse_format(fh.read())})
    return list(f.reset_reasons.values())


def claims(rule_reasons: tuple[str, ...], name: str) -> bool:
    return any(name == r or (r.endswith("*") and name.startswith(r[:-1])) for r in rule_reasons)


@pytest.mark.parametrize("version", ["6.18", "6.10"])
def test_every_kernel_reset_reason_maps_to_a_verdict(version):
    names = format_reasons(version)
    assert len(names) >= 19
    for name in names:
        if name in reasons.MEANINGLESS:
            continue
        claimed = [r for r in RULES if r.event is SENT and claims(r.reasons, name)]
        assert claimed, f"{name}: no rule is about this reason"
        e = explain_case(case(SENT, state="ESTABLISHED", kernel_reason=name, flags=frozenset({"active"})))
        assert e.verdict is not Verdict.UNKNOWN and e.reason == name, name
        assert e.verdict in {r.verdict for r in claimed}, name


def test_reasons_without_meaning_are_inferred():
    e = explain_case(case(SENT, state="CLOSE", kernel_reason="NOT_SPECIFIED", unread_bytes=5,
                          flags=frozenset({"active"})))
    assert e.reason == "inferred:TCP_ABORT_ON_CLOSE" and e.verdict is Verdict.CLOSED_WITH_UNREAD_DATA
    e = explain_case(case(SENT, state="CLOSE", kernel_reason="UNKNOWN(77)", flags=frozenset({"active", "linger"})))
    assert e.reason == "inferred:TCP_STATE" and e.verdict is Verdict.LINGER_ABORT


def test_every_template_field_is_one_the_rules_fill():
    fields = {"me", "there", "here", "raddr", "lport", "rport", "reason", "retrans", "unread", "errno", "idle",
              "since_fin", "since_close", "since_destroy", "waited", "answered", "gap_fin", "killer", "peer", "peer_sentence",
              "linger_how"}
    for key, t in texts.TEXTS.items():
        for s in (t.why, *t.fix):
            used = {f for _, f, _, _ in string.Formatter().parse(s) if f}
            assert used <= fields, (key, used - fields)


@pytest.mark.parametrize("kw, verdict, rule", [
    (dict(type=SENT, state=None, reason=None), Verdict.UNKNOWN_CONNECTION, "unknown_connection"),
    (dict(type=SENT, state="CLOSE", reason="TCP_ABORT_ON_CLOSE"), Verdict.CLOSED_WITH_UNREAD_DATA, "unread_close"),
    (dict(type=SENT, state="TIME_WAIT", reason=None), Verdict.DATA_AFTER_CLOSE, "data_after_timewait"),
    (dict(type=RECV, state="SYN_SENT", reason=None, errno="ECONNREFUSED"), Verdict.CONNECTION_REFUSED, "refused"),
    (dict(type=RECV, state="CLOSE_WAIT", reason=None, errno="EPIPE"), Verdict.WRITE_AFTER_PEER_CLOSE,
     "peer_closed_side_unknown"),
    (dict(type=RECV, state="ESTABLISHED", reason=None, errno="ECONNRESET"), Verdict.PEER_ABORT, "peer_abort"),
    (dict(type=ABORT, state="CLOSE", reason=None, errno="ETIMEDOUT"), Verdict.SYN_TIMEOUT, "syn_timeout"),
])
def test_storm_buckets_take_the_rules_with_what_they_keep(kw, verdict, rule):
    b = StormCount(pid=42, comm="churn", raddr="10.0.0.9", port=8080, family=2, count=1000, **{"errno": None, **kw})
    e = b.explained()
    assert e.verdict is verdict and e.pid == 42 and e.raddr == "10.0.0.9" and e.rport == 8080
    # No timing survives in a bucket: nothing is inferred from it.
    assert e.idle_s is None and not e.inferred
    assert explain_case(b.case()).explanation == e.explanation
    assert judge(reasons.resolve(b.case())).rule == rule
