"""A reset storm, live and replayed: 3,000 connects refused on loopback with --storm-limit 10,
so nearly all of them are counted by the kernel instead of sent. One incident per connection
(one connection_refused and one port_closed per connect, as outside a storm), and the replay of
the recording shows the same counts: storm summaries are part of the recording."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import REPO
from tests.lab.driver import Tracer
from tests.lab.loopback import closed_port, refused

pytestmark = pytest.mark.scenario
CONNECTS = 3000


def summary_of(err: str) -> dict:
    return json.loads(err[err.rindex('{"summary"'):].splitlines()[0])


def test_a_storm_counts_one_incident_per_connection_live_and_in_replay(tmp_path):
    rec = tmp_path / "storm.jsonl"
    port = closed_port()
    t = Tracer(tmp_path, "--json", "--port", str(port), "--storm-limit", "10", "--record", str(rec))
    t.wait_ready(time.monotonic() + 120)
    for _ in range(CONNECTS):
        refused(port)
    time.sleep(2.5)                       # storm buckets are drained once a second
    t.p.send_signal(signal.SIGTERM)
    out, err = t.p.communicate(timeout=60)
    assert t.p.returncode == 0, err[-2000:]
    live = summary_of(err)
    assert live["summarized"] > CONNECTS          # it was a storm: most were counted in the kernel
    assert live["summary"]["by_verdict"] == {"connection_refused": CONNECTS, "port_closed": CONNECTS}
    assert live["summary"]["total"] == 2 * CONNECTS

    r = subprocess.run([sys.executable, "-m", "tracer.cli", "replay", "--json", str(rec)], cwd=REPO,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    replayed = summary_of(r.stderr)["summary"]
    assert replayed["by_verdict"] == live["summary"]["by_verdict"]
    assert replayed["summarized"] == live["summary"]["summarized"] > 0
