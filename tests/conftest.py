"""Shared test fixtures.

Tiers (markers in pyproject.toml): unit tests run anywhere; load and scenario tests need root
and compile the real BPF program ONCE per session (the `capture` fixture), then tell their
records apart by the network namespace each test creates for itself.
"""

from __future__ import annotations

import os
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from tests.lab.driver import PeerProc, spawn_peer  # noqa: E402,F401
from tests.lab.runner import Collector  # noqa: E402


def is_root() -> bool:
    return os.geteuid() == 0


def pytest_collection_modifyitems(config, items):
    if is_root():
        return
    skip = pytest.mark.skip(reason="needs root: loads BPF programs / creates network namespaces")
    for item in items:
        if "load" in item.keywords or "scenario" in item.keywords:
            item.add_marker(skip)


def start_capture(options):
    from tracer.kernel.capture import Capture

    cap = Capture(options)
    col = None

    def sink(data: bytes) -> None:
        col.raw_sink(data)

    cap.start(raw_sink=sink)
    col = Collector(cap)
    return cap, col


@pytest.fixture(scope="session")
def capture():
    """The real program, compiled and attached once, tracing everything."""
    if not is_root():
        pytest.skip("needs root")
    from tracer.model.options import Options

    cap, col = start_capture(Options())
    yield col
    col.stop()
    cap.close()


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

