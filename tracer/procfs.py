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
