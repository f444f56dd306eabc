"""`replay rec.jsonl | head -1`: the reader going away ends replay quietly, in every output mode
(with --json it once said "cannot read rec.jsonl: Broken pipe", blaming the recording)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import REPO
from tests.unit.helpers import RECORDINGS

pytestmark = pytest.mark.unit
BIG = max(RECORDINGS, key=lambda p: sum(1 for _ in open(p, encoding="utf-8")))


@pytest.mark.parametrize("mode", [[], ["--json"], ["--compact"]], ids=["full", "json", "compact"])
def test_replay_into_head_ends_quietly(mode):
    cmd = [sys.executable, "-m", "tracer.cli", "replay", BIG, *mode]
    p = subprocess.run(["bash", "-c", '"$@" | head -c 1 >/dev/null; echo "${PIPESTATUS[0]}" >&2', "sh", *cmd],
                       cwd=REPO, capture_output=True, text=True, timeout=60)
    *said, rc = p.stderr.strip().splitlines()
    assert rc == "0", p.stderr
    assert not any("error" in line or "Traceback" in line for line in said), p.stderr
