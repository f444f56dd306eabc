"""Drive tests.lab.peer processes: start one in a namespace, read its step results, release
its waits. Used by the lab scenarios and the tests."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from typing import Any, Optional

from tests.lab.timing import wait

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def ready(path: str) -> bool:
    """The tracer's --ready-file: created once attached, its pid written once privileges are
    dropped; ready means both."""
    try:
        with open(path, encoding="ascii") as fh:
            return fh.read().endswith("\n")
    except FileNotFoundError:
        return False


class PeerProc:
    """A running tests.lab.peer process; read its JSON step results, release its waits."""

    def __init__(self, popen: subprocess.Popen) -> None:
        self.p = popen
        self.lines: list[dict] = []
        self.pid: Optional[int] = None

    def next(self, op: Optional[str] = None, timeout: float = 15.0) -> dict:
        deadline = time.monotonic() + wait(timeout)
        while True:
            line = self.p.stdout.readline()
            if not line:
                err = self.p.stderr.read() if self.p.stderr else ""
                raise AssertionError(f"peer exited early; so far {self.lines}; stderr: {err}")
            d = json.loads(line)
            self.lines.append(d)
            if d["op"] == "start":
                self.pid = d["pid"]
            if op is None or d["op"] == op:
                return d
            if time.monotonic() > deadline:
                raise AssertionError(f"peer did not reach {op}: {self.lines}")

    def until(self, op: str) -> dict:
        return self.next(op)

    def release(self) -> None:
        self.p.stdin.write("go\n")
        self.p.stdin.flush()

    def finish(self, timeout: float = 20.0) -> list[dict]:
        # Read through the same buffered stream next() used: communicate() reads the raw pipe
        # and would skip whatever readline() had already buffered.
        self.p.stdin.close()
        self.p.wait(timeout=wait(timeout))
        out, err = self.p.stdout.read(), self.p.stderr.read()
        for line in out.splitlines():
            try:
                d = json.loads(line)
            except ValueError:
                raise AssertionError(f"peer printed a non-JSON line {line!r}; stdout={out!r} stderr={err!r}") from None
            self.lines.append(d)
        assert self.p.returncode == 0, f"peer failed rc={self.p.returncode}: {err}"
        return self.lines

    def result(self, op: str) -> list[dict]:
        return [d for d in self.lines if d["op"] == op]


def spawn_peer(topo, host, name: str, script: str) -> PeerProc:
    argv = [sys.executable, "-m", "tests.lab.peer", "--name", name, script]
    p = topo.popen(host, argv, cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                   stderr=subprocess.PIPE, text=True, bufsize=1)
    peer = PeerProc(p)
    peer.next("start")
    return peer





class Tracer:
    """tcptrace-explain (the CLI, as a user runs it) in the background; stopped with SIGTERM."""

    def __init__(self, tmp_path: Any, *args: str, env: Optional[dict[str, str]] = None) -> None:
        self.ready = str(tmp_path / f"ready-{time.monotonic_ns()}")
        self.p = subprocess.Popen([sys.executable, "-m", "tracer.cli", "--ready-file", self.ready, *args],
                                  cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                  env=env)

    def wait_ready(self, deadline: float) -> None:
        while not ready(self.ready):
            if self.p.poll() is not None or time.monotonic() > deadline:
                self.p.kill()
                raise AssertionError(f"tracer did not get ready: {self.p.communicate()}")
            time.sleep(0.1)

    def stop_text(self) -> tuple[str, str]:
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
        out, err = self.p.communicate(timeout=wait(60))
        assert self.p.returncode == 0, err
        return out, err

    def stop(self) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """--json: (events, the summary line) once it has drained and exited."""
        out, err = self.stop_text()
        summary = [json.loads(line) for line in err.splitlines() if line.startswith('{"summary"')]
        return [json.loads(line) for line in out.splitlines()], summary[-1]


def start_all(tracers: list[Tracer], timeout: float = 180.0) -> list[Tracer]:
    """Wait until every tracer is attached (their compiles run side by side)."""
    deadline = time.monotonic() + wait(timeout)
    for t in tracers:
        t.wait_ready(deadline)
    return tracers
