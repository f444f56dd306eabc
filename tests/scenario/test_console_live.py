"""The live console's status line as a real run prints it with stdout piped: never on stdout,
on stderr only when a count changed (a quiet run prints none, an unchanged one no repeat)."""

from __future__ import annotations

import os
import time

import pytest

from tests.scenario.test_cli import start, stop
from tests.scenario.test_filters import refuse
from tests.lab.netns import Topology
from tracer.live import STATUS_EVERY_S

pytestmark = [pytest.mark.scenario, pytest.mark.skipif(os.geteuid() != 0, reason="tracing needs root")]


def test_status_line_goes_to_stderr_and_only_when_something_changed(tmp_path):
    with Topology.pair() as topo:
        ns = f"{topo.netns_inode(topo.client)},{topo.netns_inode(topo.server)}"
        p, _ = start(tmp_path, "--netns", ns)
        t0 = time.monotonic()
        # quiet through the first status tick: nothing to say
        time.sleep(STATUS_EVERY_S * 1.2)
        refuse(topo)
        # the second tick reports the change, the third has nothing new
        time.sleep(max(0.0, t0 + STATUS_EVERY_S * 3.2 - time.monotonic()))
        out, err = stop(p)
    status = [line for line in err.splitlines() if line.startswith("[tracing since")]
    assert "[tracing since" not in out
    assert len(status) == 1, err
    assert "no events yet" not in status[0] and "reset_sent 1" in status[0], status
    assert "Summary:" in out and out.count("connection_refused") >= 1
