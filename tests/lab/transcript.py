"""Drive the live console in a real terminal (tmux) during a lab scenario and capture the screen.

Used by the test that checks what an on-call engineer would see, and by
scripts/example_transcript.py, which keeps docs/examples/live-console.txt up to date.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

from tests.lab.driver import REPO, spawn_peer
from tests.lab.scenarios import BY_NAME


@dataclass
class Transcript:
    screen: str          # the pane while tracing, after the scenario's resets
    final: str           # the pane after Ctrl-C: events and summary
    truth: dict


def _tmux(*args: str) -> str:
    return subprocess.run(["tmux", *args], capture_output=True, text=True, check=True).stdout


def _capture(session: str) -> str:
    return _tmux("capture-pane", "-p", "-J", "-S", "-2000", "-t", session)


def live_console(scenario: str = "nat_idle", width: int = 110, extra_args: str = "",
                 own_netns: bool = False) -> Transcript:
    """`own_netns`: trace only the scenario's namespaces (--netns), so that other work on the
    machine stays out of the transcript; the topology is then built before the tracer starts."""
    sc = BY_NAME[scenario]
    with sc.topology() as topo:
        if own_netns:
            extra_args += " --netns " + ",".join(topo.namespaces)
        return _run(sc, topo, width, extra_args)


def _run(sc, topo, width: int, extra_args: str) -> Transcript:
    session = f"tte-{os.getpid()}"
    ready = tempfile.mktemp(prefix="tte-ready-")
    cmd = (f"cd {shlex.quote(REPO)} && COLUMNS={width} LINES=60 {shlex.quote(sys.executable)} -m tracer.cli "
           f"--ready-file {ready} --color {extra_args}")
    _tmux("new-session", "-d", "-s", session, "-x", str(width), "-y", "60", cmd)
    try:
        _tmux("set-option", "-t", session, "remain-on-exit", "on")
        deadline = time.monotonic() + 60
        while not os.path.exists(ready):
            if time.monotonic() > deadline:
                raise RuntimeError("the tracer did not get ready:\n" + _capture(session))
            time.sleep(0.1)
        truth = sc.act(topo, spawn_peer)
        time.sleep(1.0)
        screen = _capture(session)
        _tmux("send-keys", "-t", session, "C-c")
        # The pane stays after the tracer exits (remain-on-exit): wait for the exit, so the whole
        # summary is on screen, not just its first line.
        deadline = time.monotonic() + 30
        while _tmux("display-message", "-p", "-t", session, "#{pane_dead}").strip() != "1":
            if time.monotonic() > deadline:
                raise RuntimeError("the tracer did not exit after Ctrl-C:\n" + _capture(session))
            time.sleep(0.2)
        return Transcript(screen=screen, final=_capture(session), truth=truth)
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)
        if os.path.exists(ready):
            os.unlink(ready)
