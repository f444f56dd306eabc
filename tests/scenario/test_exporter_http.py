"""The exporter's HTTP side against the real exporter: hostile process names in /metrics."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from typing import Iterator, Optional

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import REPO

pytestmark = pytest.mark.scenario


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_exporter(*extra: str, listen: str = "127.0.0.1:0") -> Iterator[tuple[subprocess.Popen, int, str]]:
    """A real exporter (the real BPF programs); yields (process, port, temp dir)."""
    d = tempfile.mkdtemp(prefix="tte-http-")
    ready = os.path.join(d, "ready")
    args = [sys.executable, "-m", "tracer.cli", "exporter", "--listen", listen, "--ready-file", ready, *extra]
    p = subprocess.Popen(args, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 90
    try:
        while not os.path.exists(ready) or not open(ready).read().strip():
            if p.poll() is not None or time.monotonic() > deadline:
                p.kill()
                raise AssertionError(f"exporter did not start: {p.communicate()}")
            time.sleep(0.1)
        yield p, int(open(ready).read()), d
    finally:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(d, ignore_errors=True)


def get(port: int, path: str = "/metrics", timeout: float = 10) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


# 15 bytes at most (TASK_COMM_LEN): ESC, an OSC 52 start, BEL, CR, newline, quote, backslash.
HOSTILE_NAMES = [b"a\x1b]52;c;\x07b", b"c\rd\ne", b'q"u\\o\x1b[2J']


def connect_refused_as(name: bytes, port: int, times: int = 3) -> None:
    """A real process renames itself with prctl(PR_SET_NAME) and connects to a closed port."""
    code = ("import ctypes, socket, sys\n"
            "libc = ctypes.CDLL(None, use_errno=True)\n"
            "assert libc.prctl(15, ctypes.c_char_p(bytes.fromhex(sys.argv[1])), 0, 0, 0) == 0\n"
            f"for _ in range({times}):\n"
            "    s = socket.socket()\n"
            "    try:\n"
            f"        s.connect(('127.0.0.1', {port}))\n"
            "    except ConnectionRefusedError:\n"
            "        pass\n"
            "    s.close()\n")
    subprocess.run([sys.executable, "-c", code, name.hex()], check=True, timeout=30)


def wait_for(port: int, pred, timeout: float = 20.0) -> Optional[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, text = get(port)
        if status == 200 and pred(text):
            return text
        time.sleep(0.3)
    return None


def test_hostile_process_names_are_escaped_for_prometheus_client_and_promtool():
    closed = free_port()
    with running_exporter("--port", str(closed)) as (_, port, _d):
        for name in HOSTILE_NAMES:
            connect_refused_as(name, closed)
        want = {n.decode().replace("\x1b", "\\x1b").replace("\x07", "\\x07").replace("\r", "\\x0d")
                .replace("\n", "\\x0a") for n in HOSTILE_NAMES}

        def seen(text: str) -> set[str]:
            return {s.labels["comm"] for f in text_string_to_metric_families(text)
                    if f.name == "tcptrace_events" for s in f.samples if "comm" in s.labels}

        text = wait_for(port, lambda t: want <= seen(t))
        assert text is not None, f"hostile names never served: {get(port)[1][-3000:]}"
    assert not any(c in text for c in "\x1b\x07\r")
    p = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr
