"""What the application sees, by the kernel's rules (tcp_reset, tcp_recvmsg): EOF before EPIPE
once the peer's FIN arrived, ECONNRESET on a live connection, nothing after its own close."""

from __future__ import annotations

import pytest

from tracer.explain.appview import app_sees
from tracer.explain.case import Case
from tracer.explain.rules import explain_case
from tracer.model.record import RecordType

pytestmark = pytest.mark.unit
SENT, RECV, ABORT = RecordType.RESET_SENT, RecordType.RESET_RECEIVED, RecordType.ABORT


def calls(c: Case) -> list[tuple[str, str]]:
    return [(x.call, x.result) for x in app_sees(c)]


@pytest.mark.parametrize("case,want", [
    (Case(RECV, state="SYN_SENT"), [("connect", "ECONNREFUSED")]),
    # A pooled connection the server had closed: the read returns EOF first (Python
    # RemoteDisconnected), not EPIPE; only a write fails with EPIPE.
    (Case(RECV, state="CLOSE_WAIT", errno="EPIPE"), [("read", "EOF"), ("write", "EPIPE")]),
    (Case(RECV, state="ESTABLISHED", errno="ECONNRESET"), [("read", "ECONNRESET"), ("write", "ECONNRESET")]),
    (Case(RECV, state="FIN_WAIT1", flags=frozenset({"orphan"})), [("close", "nothing")]),
    (Case(RECV, state="FIN_WAIT2"), [("read", "ECONNRESET")]),
    (Case(ABORT, state="SYN_SENT", errno="ETIMEDOUT"), [("connect", "ETIMEDOUT")]),
    (Case(ABORT, state="ESTABLISHED", errno="ETIMEDOUT", never_established=False),
     [("read", "ETIMEDOUT"), ("write", "ETIMEDOUT")]),
    (Case(SENT, reason="TCP_TIMEWAIT_SOCKET", state="TIME_WAIT", pid=5), [("close", "nothing")]),
    (Case(SENT, reason="TCP_ABORT_ON_DATA", state="CLOSE", pid=5), [("read", "ECONNRESET")]),
    (Case(SENT, reason="TCP_ABORT_ON_DATA", state="CLOSE", pid=5, flags=frozenset({"orphan"})),
     [("close", "nothing")]),
    (Case(SENT, reason="TCP_KEEPALIVE_TIMEOUT", state="ESTABLISHED"), [("read", "ETIMEDOUT"), ("write", "ETIMEDOUT")]),
    (Case(SENT, reason="NO_SOCKET", syn=True), []),
    (Case(ABORT, errno="EIO"), []),
])
def test_the_call_that_fails_and_how(case, want):
    assert calls(case) == want


def test_the_evidence_says_eof_on_read_before_epipe_on_write():
    e = explain_case(Case(RECV, state="CLOSE_WAIT", errno="EPIPE", flags=frozenset({"connected"}), pid=9, comm="py",
                          since_fin_ns=10**9))
    assert e.app_sees == ({"call": "read", "result": "EOF"}, {"call": "write", "result": "EPIPE"})
    [line] = [x for x in e.evidence if x.startswith("the application sees")]
    assert line.index("read returns EOF") < line.index("write fails with EPIPE")
    assert not any(x.startswith("the application sees EPIPE") for x in e.evidence)
