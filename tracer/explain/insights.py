"""Aggregate insights: patterns no single event shows.

time_wait_pileup: a process closing connections first (it keeps each in TIME_WAIT for 60 s) at
a rate that piles up thousands of TIME_WAIT sockets towards one endpoint: the "new connection
per request" middleware of story 4. The close rate comes from two snapshots of the kernel's
active_closes counters, so it costs nothing per connection in user space. Three numbers, kept
apart: `time_wait`, the TIME_WAIT sockets towards the endpoint now (counted in the kernel's
socket table of the process's network namespace, /proc/<pid>/net/tcp{,6}: what `ss -tan state
time-wait` counts; None once the process is gone), `per_second`, and `time_wait_projected`,
the steady state if the rate lasts (rate x 60 s). A burst of 2,500 closes in one second is
2,500 TIME_WAIT sockets, not the 150,000 its rate would project.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional

from tracer.explain.rules import endpoint
from tracer.kernel import procfs
from tracer.model.safe import printable

TIME_WAIT_LEN_S = 60          # TCP_TIMEWAIT_LEN, fixed in the kernel
TIME_WAIT_ALERT = 1000        # TIME_WAIT sockets towards one endpoint (now or projected) worth a word
TCP_TIME_WAIT = "06"          # the st column of /proc/net/tcp

Snapshot = Mapping[tuple[int, int, bytes, int], tuple[int, str]]
# (pid, family, remote address bytes, remote port) -> TIME_WAIT sockets towards it now, or None
TimeWaitOf = Callable[[int, int, bytes, int], Optional[int]]


@dataclass(frozen=True)
class Insight:
    kind: str
    pid: int
    comm: str
    remote: str
    closes: int
    per_second: float
    time_wait_projected: int
    text: str
    fix: tuple[str, ...]
    time_wait: Optional[int] = None

    @property
    def time_wait_estimate(self) -> int:
        """The field's old name (before time_wait and time_wait_projected were told apart)."""
        return self.time_wait_projected

    def to_json(self) -> dict[str, Any]:
        return {"insight": self.kind, "pid": self.pid, "comm": self.comm, "remote": self.remote,
                "closes": self.closes, "per_second": round(self.per_second, 1), "time_wait": self.time_wait,
                "time_wait_projected": self.time_wait_projected,
                # kept for consumers of the first contract: the projection, not a count
                "time_wait_estimate": self.time_wait_projected, "text": self.text, "fix": list(self.fix)}


def proc_hex(family: int, raw: bytes) -> str:
    """An address as /proc/net/tcp{,6} prints it: each 32-bit word in host byte order, in hex."""
    n = 4 if family == 2 else 16
    return "".join(raw[i:i + 4][::-1].hex() for i in range(0, n, 4)).upper()


def count_time_wait(text: str, addr_hex: str, port: int) -> int:
    """TIME_WAIT rows of a /proc/net/tcp{,6} text whose remote end is addr_hex:port."""
    want = f"{addr_hex}:{port:04X}"
    n = 0
    for line in text.splitlines()[1:]:
        f = line.split(None, 4)
        if len(f) > 3 and f[3] == TCP_TIME_WAIT and f[2] == want:
            n += 1
    return n


def proc_time_wait(pid: int, family: int, raw: bytes, rport: int) -> Optional[int]:
    """TIME_WAIT sockets towards raw:rport in the network namespace of pid (IPv4 peers also as
    IPv4-mapped rows of tcp6, from dual-stack sockets); None if the process is gone."""
    if family == 2:
        v4 = procfs.net_tcp(pid, False)
        if v4 is None:
            return None
        mapped = b"\0" * 10 + b"\xff\xff" + raw[:4]
        dual = procfs.net_tcp(pid, True) or ""
        return count_time_wait(v4, proc_hex(2, raw), rport) + count_time_wait(dual, proc_hex(10, mapped), rport)
    v6 = procfs.net_tcp(pid, True)
    return None if v6 is None else count_time_wait(v6, proc_hex(10, raw), rport)


def _addr(family: int, raw: bytes) -> str:
    if family == 10:
        a = ipaddress.IPv6Address(raw)
        return str(a.ipv4_mapped or a)
    return str(ipaddress.IPv4Address(raw[:4]))


def time_wait_pileups(before: Snapshot, after: Snapshot, seconds: float, alert: int = TIME_WAIT_ALERT,
                      time_wait_of: Optional[TimeWaitOf] = None) -> list[Insight]:
    if seconds <= 0:
        return []
    out = []
    for key, (count, comm) in after.items():
        closes = count - before.get(key, (0, ""))[0]
        if closes <= 0:
            continue
        rate = closes / seconds
        projected = int(rate * TIME_WAIT_LEN_S)
        pid, family, raw, rport = key
        now = time_wait_of(pid, family, raw, rport) if time_wait_of is not None else None
        if max(projected, now or 0) < alert:
            continue
        remote = endpoint(_addr(family, raw), rport)
        name = printable(comm)
        counted = (f"{now} connections are in TIME_WAIT towards it now" if now is not None
                   else "the TIME_WAIT sockets towards it now could not be counted (the process is gone)")
        text = (f"{name} pid {pid} closed {closes} connections to {remote} first in {seconds:.0f} s "
                f"({rate:.0f}/s); {counted}. Each stays in TIME_WAIT for {TIME_WAIT_LEN_S} s: if this rate "
                f"lasts, about {projected} TIME_WAIT sockets pile up towards that endpoint.")
        fix = ("reuse connections: a keep-alive pool (HTTP/1.1 keep-alive, a client connection pool) "
               "instead of a new connection per request",
               "if a slow upstream makes requests time out and close, bound concurrency and timeouts so "
               "connections are not churned",
               "let the server close first where the protocol allows, so TIME_WAIT lands there",
               "for outgoing connections net.ipv4.tcp_tw_reuse=1 lets new connections reuse TIME_WAIT ports")
        out.append(Insight("time_wait_pileup", pid, comm, remote, closes, rate, projected, text, fix, now))
    return sorted(out, key=lambda i: -i.per_second)
