"""Owners of existing sockets, read from /proc, for connections opened before the tracer.

The kernel side learns a socket's owner when the owner connects, listens or closes. A pooled
connection opened an hour before `tcptrace-explain` started has no such moment in view, so at
start-up we map socket inodes (/proc/<pid>/fd/N -> socket:[ino]) to their process and preload
that into the kernel (inode_owners), where the --pid filter and the records can use it.
"""

from __future__ import annotations

import os
import re
from typing import Iterable, Optional

_SOCKET_RE = re.compile(r"^socket:\[(\d+)\]$")


def process_exists(pid: int, proc: str = "/proc") -> bool:
    return os.path.isdir(os.path.join(proc, str(pid)))


def thread_group(pid: int, proc: str = "/proc") -> Optional[int]:
    """The process (thread-group) id of a pid, which may name a thread."""
    try:
        with open(os.path.join(proc, str(pid), "status"), encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("Tgid:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def process_comm(pid: int, proc: str = "/proc") -> Optional[str]:
    try:
        with open(os.path.join(proc, str(pid), "comm"), encoding="utf-8", errors="replace") as fh:
            return fh.read().rstrip("\n")
    except OSError:
        return None


def _pids(proc: str) -> Iterable[int]:
    for name in os.listdir(proc):
        if name.isdigit():
            yield int(name)


def socket_owners(pids: Optional[Iterable[int]] = None, proc: str = "/proc",
                  limit: int = 65536) -> dict[int, tuple[int, str]]:
    """socket inode -> (tgid, process name). A socket shared by several processes (fork,
    fd passing) keeps the first owner found; processes that vanish mid-scan are skipped."""
    owners: dict[int, tuple[int, str]] = {}
    for pid in (pids if pids is not None else _pids(proc)):
        fd_dir = os.path.join(proc, str(pid), "fd")
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue
        comm = process_comm(pid, proc) or ""
        for fd in fds:
            try:
                target = os.readlink(os.path.join(fd_dir, fd))
            except OSError:
                continue
            m = _SOCKET_RE.match(target)
            if m:
                owners.setdefault(int(m.group(1)), (pid, comm))
                if len(owners) >= limit:
                    return owners
    return owners


_NETNS_RE = re.compile(r"^net:\[(\d+)\]$")


def _netns_of(pid: int, proc: str) -> Optional[int]:
    try:
        m = _NETNS_RE.match(os.readlink(os.path.join(proc, str(pid), "ns", "net")))
    except OSError:
        return None
    return int(m.group(1)) if m else None


def parse_listening(text: str) -> list[tuple[int, int]]:
    """(local port, inode) of the LISTEN rows (state 0A) of /proc/net/tcp or tcp6."""
    out = []
    for line in text.splitlines()[1:]:
        f = line.split()
        if len(f) > 9 and f[3] == "0A":
            out.append((int(f[1].rsplit(":", 1)[1], 16), int(f[9])))
    return out


def listening_owners(owners: dict[int, tuple[int, str]], proc: str = "/proc") -> dict[tuple[int, int], tuple[int, str]]:
    """(netns inode, port) -> owner of each listening socket among `owners` (inode -> owner).

    A server that listened before the tracer started never shows its listen(); its accepted
    connections inherit this owner in the kernel instead."""
    out: dict[tuple[int, int], tuple[int, str]] = {}
    seen_ns: set[int] = set()
    for pid in sorted({p for p, _ in owners.values()}):
        ns = _netns_of(pid, proc)
        if ns is None or ns in seen_ns:
            continue
        seen_ns.add(ns)
        for name in ("tcp", "tcp6"):
            try:
                with open(os.path.join(proc, str(pid), "net", name), encoding="ascii") as fh:
                    rows = parse_listening(fh.read())
            except OSError:
                continue
            for port, ino in rows:
                if ino in owners:
                    out.setdefault((ns, port), owners[ino])
    return out
