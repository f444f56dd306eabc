"""Network namespaces by the names people use: an `ip netns` name, a namespace file, an inode.

The kernel side knows a namespace only by its inode (net.ns.inum, what `ls -l /proc/PID/ns/net`
shows as net:[N]). `--netns` accepts any of the three spellings and resolves them here to that
inode; events are shown with the `ip netns` name of their namespace when it has one.

A name is a file under /run/netns (where `ip netns add` bind-mounts the namespace); a path is
any namespace file (/proc/PID/ns/net, /run/docker/netns/..., a bind mount); a number is taken
as the inode itself once it is seen to belong to a namespace on this host.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import time
from typing import Callable, Iterable, Optional

from tracer.model.errors import InvalidOption
from tracer.model.netnames import NameHistory

NETNS_DIR = "/run/netns"
# ioctl(NS_GET_NSTYPE) (include/uapi/linux/nsfs.h, Linux 4.11): the CLONE_NEW* type of an nsfs file.
NS_GET_NSTYPE = 0xB703
CLONE_NEWNET = 0x40000000
MAX_TRIED = 4096  # unnamed inodes remembered (bounds NameCache; forgetting one costs a listing)
_LINK_RE = re.compile(r"^net:\[(\d+)\]$")
_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]+$")


def inode_of(path: str) -> int:
    """The inode of the network namespace file at `path`; InvalidOption if it is not one."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise InvalidOption(f"--netns {path}: {exc.strerror}",
                            "give an `ip netns list` name, a namespace file such as /proc/PID/ns/net, or its inode") from None
    try:
        try:
            kind = fcntl.ioctl(fd, NS_GET_NSTYPE)
        except OSError as exc:
            if exc.errno in (errno.ENOTTY, errno.EINVAL):
                raise InvalidOption(f"--netns {path}: not a namespace file",
                                    "give /proc/PID/ns/net, a file under /run/netns, or an inode") from None
            raise
        if kind != CLONE_NEWNET:
            raise InvalidOption(f"--netns {path}: a namespace, but not a network namespace",
                                "give the process's ns/net file, e.g. /proc/PID/ns/net")
        return os.fstat(fd).st_ino
    finally:
        os.close(fd)


def names(netns_dir: str = NETNS_DIR) -> dict[int, str]:
    """inode -> `ip netns` name, for every named namespace (the first name when there are two)."""
    out: dict[int, str] = {}
    try:
        entries = sorted(os.listdir(netns_dir))
    except OSError:
        return out
    for name in entries:
        try:
            ino = os.stat(os.path.join(netns_dir, name)).st_ino
        except OSError:
            continue
        out.setdefault(ino, name)
    return out


def live_inodes(proc: str = "/proc", netns_dir: str = NETNS_DIR) -> set[int]:
    """Inodes of the network namespaces on this host: those of processes and the named ones."""
    found = set(names(netns_dir))
    try:
        pids = [p for p in os.listdir(proc) if p.isdigit()]
    except OSError:
        return found
    for pid in pids:
        try:
            m = _LINK_RE.match(os.readlink(os.path.join(proc, pid, "ns", "net")))
        except OSError:
            continue
        if m:
            found.add(int(m.group(1)))
    return found


def resolve(spec: str, netns_dir: str = NETNS_DIR, proc: str = "/proc",
            known: Optional[dict[str, int]] = None) -> int:
    """One --netns value (NAME, PATH or INODE) -> the namespace's inode.

    `known` (name -> inode) is consulted first for names: a recording's own table, so a replay
    resolves the names the recording host had (every name the run saw, also those of
    namespaces whose inode went to a later one)."""
    spec = spec.strip()
    if not spec:
        raise InvalidOption("--netns needs a value", "give an `ip netns list` name, a path such as /proc/PID/ns/net, or an inode")
    if spec.isdigit():
        ino = int(spec)
        if known is not None or ino in live_inodes(proc, netns_dir):
            return ino
        raise InvalidOption(f"--netns {spec}: no network namespace with inode {spec} on this host",
                            "list them with: lsns -t net (or ls -l /proc/*/ns/net)")
    if known and spec in known:
        return known[spec]
    if "/" in spec:
        return inode_of(spec)
    if not _NAME_RE.match(spec):
        raise InvalidOption(f"--netns {spec!r}: not a namespace name, path or inode",
                            "give an `ip netns list` name, a path such as /proc/PID/ns/net, or an inode")
    path = os.path.join(netns_dir, spec)
    if not os.path.exists(path):
        if known is not None:
            raise InvalidOption(f"--netns {spec}: the recording names no network namespace {spec!r}",
                                "give its inode instead (the 'netns' field of the events)")
        raise InvalidOption(f"--netns {spec}: no such network namespace ({path} does not exist)",
                            "list the names with: ip netns list")
    return inode_of(path)


def resolve_all(specs: Iterable[str], netns_dir: str = NETNS_DIR, proc: str = "/proc",
                known: Optional[dict[str, int]] = None) -> frozenset[int]:
    return frozenset(resolve(s, netns_dir, proc, known) for s in specs)


class NameCache:
    """`ip netns` names of the namespaces events come from, learnt as they arrive.

    A namespace is often younger than the tracer (a container, a lab) and gone before the run
    ends, so a name is looked up when a record from its inode arrives (`learn`) and kept in a
    NameHistory by the record's time; an event is named (`at`) by the name its namespace had
    when its record arrived, however late it is explained. A known name is checked again on
    every record (one stat: the file still names that inode), since a deleted namespace's inode
    goes to the next namespace made. An inode that has no name lists /run/netns again at most
    once per `refresh_s` (an unnamed namespace, e.g. a container's, costs one listing per
    second at most)."""

    def __init__(self, netns_dir: str = NETNS_DIR, refresh_s: float = 1.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.netns_dir = netns_dir
        self.refresh_s = refresh_s
        self._clock = clock
        self._names = names(netns_dir)
        self._tried: dict[int, float] = {}
        self.history = NameHistory()

    def learn(self, ino: int, ts_ns: int = 0) -> Optional[str]:
        """The name `ino` has now, noted as its name from `ts_ns` on."""
        if not ino:
            return None
        found = self._current(ino)
        self.history.note(ino, ts_ns, found)
        return found

    def at(self, ino: int, ts_ns: int) -> Optional[str]:
        return self.history.at(ino, ts_ns) if ino else None

    def _current(self, ino: int) -> Optional[str]:
        found = self._names.get(ino)
        if found is not None:
            try:
                if os.stat(os.path.join(self.netns_dir, found)).st_ino == ino:
                    return found
            except OSError:
                pass
            # Deleted, renamed or its inode reused: what the directory says now.
            self._names = names(self.netns_dir)
            return self._names.get(ino)
        now = self._clock()
        if now - self._tried.get(ino, -self.refresh_s) >= self.refresh_s:
            if len(self._tried) >= MAX_TRIED:
                self._tried.clear()
            self._tried[ino] = now
            self._names = names(self.netns_dir)
            found = self._names.get(ino)
        return found
