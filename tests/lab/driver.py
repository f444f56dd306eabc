"""Drive tests.lab.peer processes: start one in a namespace, read its step results, release
its waits. Used by the lab scenarios and the tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Optional

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class PeerProc:
    """A running tests.lab.peer process; read its JSON step results, release its waits."""

    def __init__(self, popen: subprocess.Popen) -> None:
        self.p = popen
        self.lines: list[dict] = []
        self.pid: Optional[int] = None

    def next(self, op: Optional[str] = None, timeout: float = 15.0) -> dict:
        deadline = time.monotonic() + timeout
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
        self.p.wait(timeout=timeout)
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



