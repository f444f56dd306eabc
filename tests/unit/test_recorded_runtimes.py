"""Replay advises for the runtime the live run read from /proc: recordings keep a pid -> [name,
runtime] table in their end line (tracer/live.py), and replay reads it back (procinfo.RecordedFacts)."""

from __future__ import annotations

import json

import pytest

from tests.unit.helpers import RECORDINGS
from tracer.cli import main
from tracer.explain.procinfo import ProcessFacts, RecordedFacts

pytestmark = pytest.mark.unit
NAT_IDLE = next(p for p in RECORDINGS if p.endswith("/nat_idle.jsonl"))


def test_the_table_round_trips_and_names_must_agree():
    facts = RecordedFacts.from_end({"41": ["tte-client", "java"], "42": ["x"], "x": ["a", "b"], "43": [1, "go"]})
    assert facts.runtime(41, "tte-client") == "java"
    assert facts.runtime(41, "other") is None          # a pid reused by another program: its own name decides
    assert facts.runtime(42, "python3") == "python"     # malformed rows are ignored, the name decides
    assert RecordedFacts.from_end(None).runtime(7, "curl") == "curl"


def test_a_live_table_holds_only_known_runtimes(tmp_path):
    proc = tmp_path / "proc"
    (proc / "5").mkdir(parents=True)
    facts = ProcessFacts(proc=str(proc))
    facts.note(5, "python3")
    facts.note(6, "tte-mystery")
    assert facts.table() == {"5": ["python3", "python"]}


def replayed(capsys, path) -> list[dict]:
    assert main(["replay", str(path), "--json"]) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_replay_uses_the_recorded_runtime(capsys, tmp_path):
    before = replayed(capsys, NAT_IDLE)
    client = next(e for e in before if e["verdict"] == "stale_after_idle")
    assert "runtime" not in client                    # its name says nothing of its runtime
    with open(NAT_IDLE, encoding="utf-8") as fh:
        lines = fh.read().splitlines()
    end = json.loads(lines[-1])
    end["end"]["runtimes"] = {str(client["pid"]): [client["comm"], "java"]}
    rec = tmp_path / "rec.jsonl"
    rec.write_text("\n".join(lines[:-1] + [json.dumps(end)]) + "\n", encoding="utf-8")
    after = replayed(capsys, rec)
    again = next(e for e in after if e["verdict"] == "stale_after_idle")
    assert again["runtime"] == "java"
    assert again["fix"] != client["fix"]              # the runtime's own settings come first
