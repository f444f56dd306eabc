"""The kernel's own TCP counters of this network namespace, from /proc/net/snmp.

On kernels before 6.10, tcp:tcp_send_reset does not fire for resets sent with no socket or by
TIME_WAIT sockets; `Tcp: OutRsts` counts every reset sent. Its delta over a session, shown
beside the tool's own count, turns the resets the tool could not see into a number.
"""

from __future__ import annotations

import os
from typing import Optional

SNMP_PATH = "/proc/net/snmp"


def parse_tcp(text: str) -> dict[str, int]:
    """The `Tcp:` header line and value line, as name -> value."""
    rows = [line.split()[1:] for line in text.splitlines() if line.startswith("Tcp:")]
    if len(rows) < 2 or len(rows[0]) != len(rows[1]):
        return {}
    try:
        return {k: int(v) for k, v in zip(rows[0], rows[1])}
    except ValueError:
        return {}


def out_rsts(path: str = SNMP_PATH) -> Optional[int]:
    """Tcp OutRsts of the caller's network namespace; None if unreadable."""
    try:
        with open(path, encoding="ascii") as fh:
            return parse_tcp(fh.read()).get("OutRsts")
    except OSError:
        return None


def own_netns() -> int:
    """The inode of the caller's network namespace (records carry the same number); 0 if unknown."""
    try:
        return os.stat("/proc/self/ns/net").st_ino
    except OSError:
        return 0


class OutRstsWitness:
    """The kernel's OutRsts delta over a session beside the resets the tool explained in the
    same (its own) network namespace. Used on kernels that do not trace every reset."""

    def __init__(self, path: str = SNMP_PATH) -> None:
        self._path = path
        self._start = out_rsts(path)
        self.netns = own_netns()
        self.explained = 0

    def saw(self, event: str, netns: int) -> None:
        if event == "reset_sent" and netns == self.netns:
            self.explained += 1

    def delta(self) -> Optional[int]:
        end = out_rsts(self._path)
        return None if end is None or self._start is None else end - self._start
