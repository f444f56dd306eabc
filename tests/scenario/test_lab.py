"""The lab: each user story and each kind of kernel reset, explained as expected.

Runs every scenario of tests/lab/scenarios.py against the session's capture and checks the
explanations (verdict, who, process, errno, idle time within 0.5 s, inferred timeouts within
10 %) and the ground truth the applications saw.
"""

from __future__ import annotations

import pytest

from tests.lab import runner
from tests.lab.scenarios import BY_NAME, SCENARIOS

pytestmark = pytest.mark.scenario

GROUND_TRUTH = {
    "pool_keepalive": lambda t: t["first_status"].startswith("HTTP/1.1 200") and t["reuse_read_bytes"] == 0
    and "send_once:EPIPE" in t["errors"],
    "nat_idle": lambda t: t["after_idle"] == "ECONNRESET" and t["retry_bytes"] == 10,
    "client_timeout": lambda t: t["client"] == ["recv:TIMEOUT"] and "send_once:EPIPE" in t["server"],
    "read_timeout_broken_pipe": lambda t: t["client"] == ["recv:TIMEOUT"] and t["server"] == ["send_once:EPIPE"],
    "redis_idle": lambda t: t["stdout"].split() == ["read", "0", "write", "BrokenPipeError"],
    "haproxy_idle": lambda t: "read -1" in t["stdout"] and "Broken pipe" in t["stdout"],
    "time_wait_pileup": lambda t: t["time_wait_sockets"] >= t["connections"] * 0.9,
    "closed_port": lambda t: t["client"] == ["connect:ECONNREFUSED"],
    "unread_close": lambda t: t["client"] == ["recv:ECONNRESET"],
    "linger0": lambda t: t["server"] == ["recv:ECONNRESET"],
    "keepalive": lambda t: t["client"] == ["recv:ETIMEDOUT"],
    "user_timeout": lambda t: t["client"] == ["recv:ETIMEDOUT"],
    "syn_timeout": lambda t: t["client"] == ["connect:ETIMEDOUT"],
    "nft_reject": lambda t: t["client"] == ["recv:ECONNRESET"],
    "abort_on_data": lambda t: "send_once:EPIPE" in t["server"],
    "listener_close": lambda t: t["client"] == ["recv:ECONNRESET"],
    "connect_abandoned": lambda t: t["client"] == ["connect:TIMEOUT"] and t["wire_answer_s"] > t["connect_timeout_s"],
    "socket_destroy": lambda t: t["ss_rc"] == 0 and t["client"] == ["recv:ECONNABORTED"]
    and t["server"] == ["recv:ECONNRESET"],
}


def test_every_scenario_has_a_ground_truth_check():
    assert {s.name for s in SCENARIOS} == set(GROUND_TRUTH)


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_scenario(capture, scenario):
    result = runner.run(scenario, capture, wire=True)
    assert GROUND_TRUTH[scenario.name](result.truth), f"the lab did not do what it says: {result.truth}"
    problems = runner.check(result)
    assert problems == [], "\n".join(problems)
    counts = runner.count_agreement(result)
    assert counts == [], "\n".join(counts)
    if scenario.name == "time_wait_pileup":
        pile = [i for i in result.insights if i.comm == "tte-middleware"]
        assert len(pile) == 1, result.insights
        assert pile[0].remote == f"{result.truth['server']}:8080" and pile[0].closes == result.truth["connections"]
        assert pile[0].time_wait_estimate >= 1000


def test_verdicts_hold_live_with_the_kernels_reason_ignored():
    """The switch compiles the program without the reason field (as on kernels before 6.10);
    the inferred reasons must still lead to the expected verdicts, live."""
    from tests.conftest import start_capture
    from tracer.model.options import Options

    cap, col = start_capture(Options(ignore_kernel_reason=True))
    try:
        names = ["unread_close", "linger0", "keepalive", "abort_on_data", "listener_close", "socket_destroy",
                 "closed_port", "client_timeout"]
        for name in names:
            result = runner.run(BY_NAME[name], col)
            sent = [x for x in result.explanations if x.event == "reset_sent"]
            assert sent and all(x.reason.startswith("inferred:") for x in sent), name
            assert runner.check(result) == [], name
    finally:
        col.stop()
        cap.close()
