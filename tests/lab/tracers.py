"""Tracer processes for multi-host lab scenarios: one real tracer per "host" namespace.

Each runs in its own process (its own BPF programs, maps and ring buffer), limited to one
network namespace, and records to a file, exactly as one tracer per host would in production.
Through the CLI's --netns when the CLI has it, else through tests.lab.trace_netns.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import Optional

from tests.lab.driver import REPO, ready as _ready
from tests.lab.netns import NETNS_DIR, Host, Topology

READY_TIMEOUT_S = 180.0   # two compiles on a loaded 2-core machine


def cli_has_netns() -> bool:
    from tracer.cli import cli

    return any("--netns" in getattr(p, "opts", ()) for p in cli.params)


class TracerProc:
    """A tracer recording one namespace of a topology until stop()."""

    def __init__(self, topo: Topology, host: Host, record: str, ready: str, states: bool = False) -> None:
        self.record = record
        self.ready = ready
        if cli_has_netns():
            argv = [sys.executable, "-m", "tracer.cli", "--netns", os.path.join(NETNS_DIR, host.name),
                    "--record", record, "--ready-file", ready, "--json"] + (["--states"] if states else [])
        else:
            argv = [sys.executable, "-m", "tests.lab.trace_netns", "--netns-inode", str(topo.netns_inode(host)),
                    "--record", record, "--ready-file", ready] + (["--states"] if states else [])
        self.p = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        while not _ready(self.ready):
            if self.p.poll() is not None:
                raise RuntimeError(f"tracer exited with {self.p.returncode}: {self.p.stderr.read() if self.p.stderr else ''}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"tracer not ready after {timeout:.0f} s")
            time.sleep(0.1)

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM: the tracer drains its ring buffer and ends its recording."""
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
        try:
            self.p.wait(timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            self.p.kill()
            self.p.wait(timeout=5)
            raise RuntimeError("tracer did not stop on SIGTERM") from exc
        err = self.p.stderr.read() if self.p.stderr else ""
        if self.p.returncode != 0:
            raise RuntimeError(f"tracer exited with {self.p.returncode}: {err}")

    def kill(self) -> Optional[int]:
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait(timeout=5)
        return self.p.returncode
