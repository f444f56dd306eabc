"""Which IP addresses belong to this host, across all its network namespaces.

When a connection's far end is on this host too (a sidecar, another container, the lab's
namespaces) and its kernel logged no reset, the reset came from something in between: a
firewall rule or a middlebox. This module answers "is this address local?" from the addresses
of every network namespace reachable through /proc/<pid>/ns/net and /run/netns, refreshed at
most every TTL seconds and only when asked.
"""

from __future__ import annotations

import os
import threading
import time
from typing import TYPE_CHECKING, Callable, Iterable, Optional

from tracer.kernel.nsenter import entered

if TYPE_CHECKING:
    from tracer.kernel.features import Features
    from tracer.model.options import Options

TTL_S = 5.0


def parse_fib_trie(text: str) -> set[str]:
    """IPv4 addresses marked '/32 host LOCAL' in /proc/net/fib_trie."""
    out: set[str] = set()
    last = None
    for line in text.splitlines():
        s = line.strip()
        if s.startswith("|--"):
            last = s[3:].strip()
        elif s.startswith("/32 host LOCAL") and last:
            out.add(last)
    return out


def parse_if_inet6(text: str) -> set[str]:
    import ipaddress

    out: set[str] = set()
    for line in text.splitlines():
        parts = line.split()
        if parts and len(parts[0]) == 32:
            out.add(str(ipaddress.IPv6Address(int(parts[0], 16))))
    return out


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read()
    except OSError:
        return ""


def _addresses_of(netdir: str) -> set[str]:
    return parse_fib_trie(_read(f"{netdir}/fib_trie")) | parse_if_inet6(_read(f"{netdir}/if_inet6"))


def _namespaces(proc: str) -> dict[str, str]:
    """netns identity -> one /proc/<pid> directory living in it."""
    seen: dict[str, str] = {}
    for name in os.listdir(proc):
        if not name.isdigit():
            continue
        try:
            ident = os.readlink(f"{proc}/{name}/ns/net")
        except OSError:
            continue
        seen.setdefault(ident, f"{proc}/{name}")
    return seen


def _named_namespaces(netns_dir: str) -> Iterable[str]:
    try:
        return [os.path.join(netns_dir, n) for n in os.listdir(netns_dir)]
    except OSError:
        return []


def scan(proc: str = "/proc", netns_dir: str = "/run/netns", direct: bool = False) -> set[str]:
    """Every namespace's local addresses. After the privilege drop an unprivileged process
    cannot see other users' namespaces nor enter any: the /proc broker scans (direct: this
    process is the broker, or privileged)."""
    from tracer.kernel import procfs

    client = None if direct or proc != "/proc" else procfs.broker()
    if client is not None:
        return client.local_addrs()
    addrs: set[str] = set()
    for piddir in _namespaces(proc).values():
        addrs |= _addresses_of(f"{piddir}/net")
    # Named namespaces may have no process in them: read them from a helper thread inside.
    named = list(_named_namespaces(netns_dir))
    if named:
        found: list[set[str]] = []

        def inside() -> None:
            for path in named:
                try:
                    with entered(path):
                        found.append(_addresses_of("/proc/thread-self/net"))
                except OSError:
                    continue

        t = threading.Thread(target=inside, name="netns-scan", daemon=True)
        t.start()
        t.join(timeout=5)
        for s in found:
            addrs |= s
    return addrs


class LocalAddresses:
    def __init__(self, ttl_s: float = TTL_S) -> None:
        self.ttl_s = ttl_s
        self._addrs: set[str] = set()
        self._at = 0.0
        self.seen: set[str] = set()  # every address ever found local, for recordings

    def contains(self, addr: str) -> Optional[bool]:
        if time.monotonic() - self._at > self.ttl_s:
            try:
                self._addrs = scan()
            except OSError:
                return None
            self._at = time.monotonic()
            self.seen |= self._addrs
        if not self._addrs:
            return None
        return addr in self._addrs


def from_list(addrs: Iterable[str]) -> Callable[[str], Optional[bool]]:
    """A peer_is_local function for replay, from the addresses a recording saved."""
    known = set(addrs)
    return lambda addr: (addr in known) if known else None


def peer_check(options: "Options", features: "Features") -> Optional["LocalAddresses"]:
    """The "is the peer on this host?" checker, or None where its answer would mislead.

    "The peer is local and its kernel sent no reset" proves a middlebox only if the tracer would
    have seen that reset: no filter may hide the peer (--pid, --comm, --port, netns), and the
    kernel must trace every reset it sends, including those with no socket or from a timewait
    socket (tcp_send_reset's 6.10+ layout)."""
    if options.pids or options.comms or options.ports or options.netns or not features.rst_layout_sockaddr:
        return None
    return LocalAddresses()
