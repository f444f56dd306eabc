"""Every program variant compiles with BCC and passes the kernel's verifier on this machine.

Older kernels' tcp_send_reset layouts are produced by bind-mounting their format files over
the live ones in a private mount namespace (BCC builds the tracepoint struct from the format
file), so the pre-6.10 code paths are compiled and verified here, not just written.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.lab import kernel
from tests.lab.timing import wait

pytestmark = pytest.mark.load

HERE = os.path.dirname(os.path.abspath(__file__))
FORMATS = os.path.join(os.path.dirname(HERE), "data", "formats")
LIVE = ("/sys/kernel/tracing", "/sys/kernel/debug/tracing")


def run_variant(options: dict, send_reset_format: str | None = None) -> dict:
    cmd = [sys.executable, os.path.join(HERE, "compile_variant.py"), json.dumps(options)]
    if send_reset_format:
        binds = " && ".join(
            f"mount --bind {send_reset_format} {d}/events/tcp/tcp_send_reset/format"
            for d in LIVE if os.path.exists(f"{d}/events/tcp/tcp_send_reset/format"))
        cmd = ["unshare", "-m", "--propagation", "private", "sh", "-c",
               binds + " && exec " + " ".join(f"'{c}'" for c in cmd)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=wait(120))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_this_kernels_own_layout():
    out = run_variant({})
    assert out["loaded"]
    if kernel.traces_every_reset():
        assert out["sockaddr"] and out["reason"]
        assert "-DTTE_RST_HAS_REASON=1" in out["cflags"] and "-DTTE_RST_SOCKADDR=1" in out["cflags"]
    else:
        # Before 6.10 (tcp_send_reset has ports and addresses, no reason): that layout's code.
        assert not out["sockaddr"] and not out["reason"] and out["state"] and out["family"]
        assert not [c for c in out["cflags"] if c.startswith(("-DTTE_RST_SOCKADDR", "-DTTE_RST_HAS_REASON"))]


def test_this_kernel_layout_ignoring_the_reason_field():
    out = run_variant({"ignore_kernel_reason": True})
    assert out["loaded"] and "-DTTE_RST_HAS_REASON=1" not in out["cflags"]


def test_pre_6_10_layout_ports_state_family_no_reason():
    out = run_variant({}, os.path.join(FORMATS, "5.15", "tcp_send_reset.format"))
    assert out["loaded"] and not out["sockaddr"] and not out["reason"] and out["state"] and out["family"]
    assert not [c for c in out["cflags"] if c.startswith("-DTTE_RST_SOCKADDR")]


def test_4_19_layout_without_state_or_family():
    out = run_variant({}, os.path.join(FORMATS, "4.19", "tcp_send_reset.format"))
    assert out["loaded"] and not (out["state"] or out["family"] or out["reason"] or out["sockaddr"])


def test_every_filter_and_state_records_and_io_hooks():
    io = kernel.features().has_hook("sock/sock_send_length")
    out = run_variant({"pids": [1], "ports": [80], "comms": ["nginx"], "states": True, "io_hooks": io})
    assert out["loaded"] and out["io_hooks"] == io
    for c in ("-DTTE_FILTER_PID=1", "-DTTE_FILTER_PORT=1", "-DTTE_FILTER_COMM=1") + (("-DTTE_IO_HOOKS=1",) if io else ()):
        assert c in out["cflags"]
    if not io:
        # Before 6.3 the per-I/O hooks do not exist: asking for them is a clear error, not a load failure.
        cmd = [sys.executable, os.path.join(HERE, "compile_variant.py"), json.dumps({"io_hooks": True})]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=wait(120))
        assert proc.returncode != 0 and "sock:sock_send_length/sock_recv_length are missing" in proc.stderr
