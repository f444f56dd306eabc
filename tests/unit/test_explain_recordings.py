"""Correlator and explainer on record streams recorded from real lab runs (no root).

The recordings (tests/data/recordings) and golden explanations (tests/data/golden) are made by
`sudo .venv/bin/python scripts/lab.py --record-dir tests/data/recordings --golden-dir tests/data/golden`.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections import Counter

import pytest

from tests.unit.helpers import DATA, RECORDINGS, name_of
from tracer.sinks import recording
from tracer.explain.pipeline import explain_stream
from tests.lab import runner
from tests.lab.scenarios import BY_NAME
from tracer.model.record import decode

pytestmark = pytest.mark.unit
INFERENCE_TARGET = 0.95


def explained(path: str, strip_reasons: bool = False):
    rec = recording.load(path)
    ctx = rec.context
    if strip_reasons:
        # The kernel's reason ignored, as on kernels before 6.10 (active resets before 6.12).
        ctx = dataclasses.replace(ctx, reset_reasons={})
    records = [decode(b, ctx) for b in rec.raw]
    if strip_reasons:
        records = [dataclasses.replace(r, reason=None) for r in records]
    return rec, explain_stream(records, recording.peer_check(rec))


def test_there_are_recordings_for_every_scenario():
    assert {name_of(p) for p in RECORDINGS} == set(BY_NAME)


@pytest.mark.parametrize("path", RECORDINGS, ids=name_of)
def test_replay_matches_golden(path):
    _, out = explained(path)
    with open(os.path.join(DATA, "golden", name_of(path) + ".json"), encoding="utf-8") as fh:
        golden = json.load(fh)
    assert [x.to_json() for x in out] == golden


@pytest.mark.parametrize("path", RECORDINGS, ids=name_of)
def test_replay_meets_the_scenarios_expectations(path):
    rec, out = explained(path)
    result = runner.RunResult(BY_NAME[name_of(path)], rec.meta["truth"], [], rec.raw,
                              {k: int(v) for k, v in rec.meta["netns"].items()}, [], {})
    result.explanations = out
    assert runner.check(result) == []


def test_inference_without_kernel_reasons_agrees_with_the_kernel():
    """Verdicts reached with the kernel's reason ignored vs with it, over every lab reset."""
    same = total = 0
    differ = Counter()
    for path in RECORDINGS:
        _, with_reason = explained(path)
        _, inferred = explained(path, strip_reasons=True)
        assert len(with_reason) == len(inferred)
        for a, b in zip(with_reason, inferred):
            if a.event == "abort":
                continue
            total += 1
            if a.verdict is b.verdict:
                same += 1
            else:
                differ[(name_of(path), a.verdict.value, b.verdict.value)] += 1
    rate = same / total
    print(f"\ninference agreement: {same}/{total} = {rate:.1%} of lab resets; differences: {dict(differ)}")
    assert total >= 20
    assert rate >= INFERENCE_TARGET, dict(differ)


def test_inference_on_a_simulated_pre_6_10_kernel():
    """Before 6.10 the kernel has no reason field and does not trace resets sent with no socket
    or by timewait sockets at all: drop those records too, and compare verdict and who for the
    resets such a kernel still shows."""
    same = total = 0
    for path in RECORDINGS:
        rec = recording.load(path)
        full = [decode(b, rec.context) for b in rec.raw]
        old = [dataclasses.replace(r, reason=None) for r in full
               if not (r.type.value == "reset_sent" and (r.flag("no_socket") or r.flag("timewait")))]
        local = recording.peer_check(rec)

        def run(records, local=local):
            return {(x.netns, x.event, x.ts_ns): x for x in explain_stream(records, local)}

        new_x, old_x = run(full), run(old)
        for key, x in old_x.items():
            if x.event == "abort" or key not in new_x:
                continue
            total += 1
            same += (x.verdict, x.who) == (new_x[key].verdict, new_x[key].who)
    print(f"\npre-6.10 simulation: {same}/{total} = {same / total:.1%} of the resets such a kernel shows")
    assert total >= 10 and same / total >= 0.8


def test_inferred_reasons_are_marked():
    _, out = explained(os.path.join(DATA, "recordings", "unread_close.jsonl"), strip_reasons=True)
    sent = [x for x in out if x.event == "reset_sent"]
    assert sent and all(x.reason.startswith("inferred:") for x in sent)
    assert "inferred:TCP_ABORT_ON_CLOSE" in {x.reason for x in sent}


def test_abort_on_data_is_one_local_incident():
    """The kernel fires tcp_receive_reset on its own socket before answering: one story."""
    _, out = explained(os.path.join(DATA, "recordings", "abort_on_data.jsonl"))
    rec, _ = explained(os.path.join(DATA, "recordings", "abort_on_data.jsonl"))
    client = int(rec.meta["netns"]["client"])
    mine = [x for x in out if x.netns == client]
    assert [x.event for x in mine] == ["reset_sent"]
    assert mine[0].reason == "TCP_ABORT_ON_DATA" and mine[0].errno == "ECONNRESET"


def test_both_ends_on_this_host_are_linked():
    _, out = explained(os.path.join(DATA, "recordings", "unread_close.jsonl"))
    recv = [x for x in out if x.event == "reset_received"][0]
    assert recv.peer is not None and recv.peer["reason"] == "TCP_ABORT_ON_CLOSE"
    assert recv.peer["comm"] == "tte-server"
    assert "closed its socket with unread data" in recv.explanation
