"""Aggregate insights: patterns no single event shows.

time_wait_pileup: a process closing connections first (it keeps each in TIME_WAIT for 60 s) at
a rate that piles up thousands of TIME_WAIT sockets towards one endpoint: the "new connection
per request" middleware of story 4. Computed from two snapshots of the kernel's active_closes
counters, so it costs nothing per connection in user space.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any, Mapping

from tracer.explain.rules import endpoint
from tracer.model.safe import printable

TIME_WAIT_LEN_S = 60          # TCP_TIMEWAIT_LEN, fixed in the kernel
TIME_WAIT_ALERT = 1000        # estimated TIME_WAIT sockets towards one endpoint worth a word

Snapshot = Mapping[tuple[int, int, bytes, int], tuple[int, str]]


@dataclass(frozen=True)
class Insight:
    kind: str
    pid: int
    comm: str
    remote: str
    closes: int
    per_second: float
    time_wait_estimate: int
    text: str
    fix: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"insight": self.kind, "pid": self.pid, "comm": self.comm, "remote": self.remote,
                "closes": self.closes, "per_second": round(self.per_second, 1),
                "time_wait_estimate": self.time_wait_estimate, "text": self.text, "fix": list(self.fix)}


def _addr(family: int, raw: bytes) -> str:
    if family == 10:
        a = ipaddress.IPv6Address(raw)
        return str(a.ipv4_mapped or a)
    return str(ipaddress.IPv4Address(raw[:4]))


def time_wait_pileups(before: Snapshot, after: Snapshot, seconds: float,
                      alert: int = TIME_WAIT_ALERT) -> list[Insight]:
    if seconds <= 0:
        return []
    out = []
    for key, (count, comm) in after.items():
        closes = count - before.get(key, (0, ""))[0]
        if closes <= 0:
            continue
        rate = closes / seconds
        if rate * TIME_WAIT_LEN_S < alert:
            continue
        pid, family, raw, rport = key
        remote = endpoint(_addr(family, raw), rport)
        name = printable(comm)
        text = (f"{name} pid {pid} closed {closes} connections to {remote} first in {seconds:.0f} s "
                f"({rate:.0f}/s); each stays in TIME_WAIT for {TIME_WAIT_LEN_S} s, so about "
                f"{int(rate * TIME_WAIT_LEN_S)} TIME_WAIT sockets pile up towards that endpoint.")
        fix = ("reuse connections: a keep-alive pool (HTTP/1.1 keep-alive, a client connection pool) "
               "instead of a new connection per request",
               "if a slow upstream makes requests time out and close, bound concurrency and timeouts so "
               "connections are not churned",
               "let the server close first where the protocol allows, so TIME_WAIT lands there",
               "for outgoing connections net.ipv4.tcp_tw_reuse=1 lets new connections reuse TIME_WAIT ports")
        out.append(Insight("time_wait_pileup", pid, comm, remote, closes, rate, int(rate * TIME_WAIT_LEN_S),
                           text, fix))
    return sorted(out, key=lambda i: -i.per_second)
