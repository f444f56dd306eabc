"""Shared test fixtures.

Tiers (markers in pyproject.toml): unit tests run anywhere; load and scenario tests need root
and compile the real BPF program ONCE per session (the `capture` fixture), then tell their
records apart by the network namespace each test creates for itself.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from typing import Callable, Iterable, Optional

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from tracer.record import Record, RecordType  # noqa: E402


def is_root() -> bool:
    return os.geteuid() == 0


def pytest_collection_modifyitems(config, items):
    if is_root():
        return
    skip = pytest.mark.skip(reason="needs root: loads BPF programs / creates network namespaces")
    for item in items:
        if "load" in item.keywords or "scenario" in item.keywords:
            item.add_marker(skip)


class Collector:
    """Polls a started Capture on a thread and keeps every record for the tests to search."""

    def __init__(self, capture) -> None:
        self.capture = capture
        self.records: list[Record] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="collector", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            got = self.capture.poll(10)
            if got:
                with self._lock:
                    self.records.extend(got)

    def snapshot(self) -> list[Record]:
        with self._lock:
            return list(self.records)

    def wait_for(self, pred: Callable[[Record], bool], timeout: float = 5.0, count: int = 1) -> list[Record]:
        deadline = time.monotonic() + timeout
        while True:
            found = [r for r in self.snapshot() if pred(r)]
            if len(found) >= count or time.monotonic() > deadline:
                return found
            time.sleep(0.02)

    def settle(self, seconds: float = 0.3) -> None:
        """Give records already in flight time to arrive (poll timeout plus margin)."""
        time.sleep(seconds)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def start_capture(options):
    from tracer.capture import Capture

    cap = Capture(options)
    cap.start()
    return cap, Collector(cap)


@pytest.fixture(scope="session")
def capture():
    """The real program, compiled and attached once, tracing everything."""
    if not is_root():
        pytest.skip("needs root")
    from tracer.options import Options

    cap, col = start_capture(Options())
    yield col
    col.stop()
    cap.close()


class PeerProc:
    """A running tracer.lab.peer process; read its JSON step results, release its waits."""

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
                raise AssertionError(f"peer printed a non-JSON line {line!r}; stdout={out!r} stderr={err!r}")
            self.lines.append(d)
        assert self.p.returncode == 0, f"peer failed rc={self.p.returncode}: {err}"
        return self.lines

    def result(self, op: str) -> list[dict]:
        return [d for d in self.lines if d["op"] == op]


def spawn_peer(topo, host, name: str, script: str) -> PeerProc:
    argv = [sys.executable, "-m", "tracer.lab.peer", "--name", name, script]
    p = topo.popen(host, argv, cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                   stderr=subprocess.PIPE, text=True, bufsize=1)
    peer = PeerProc(p)
    peer.next("start")
    return peer


@pytest.fixture
def peers():
    started: list[PeerProc] = []

    def _spawn(topo, host, name, script) -> PeerProc:
        pp = spawn_peer(topo, host, name, script)
        started.append(pp)
        return pp

    yield _spawn
    for pp in started:
        if pp.p.poll() is None:
            pp.p.kill()
            pp.p.wait(timeout=5)


def in_ns(netns: int) -> Callable[[Record], bool]:
    return lambda r: r.netns == netns
