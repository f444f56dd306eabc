"""Owners of sockets, read from /proc: at start-up for connections opened before the tracer,
and at run time for accepted sockets whose holder the kernel side has not seen yet.

The kernel side learns a socket's owner when the owner connects, listens or closes. A pooled
connection opened an hour before `tcptrace-explain` started has no such moment in view, so at
start-up we map socket inodes (/proc/<pid>/fd/N -> socket:[ino]) to their process and preload
that into the kernel (inode_owners), where the --pid filter and the records can use it.

Pre-forked servers listen in one process and accept in others: an accepted socket's holder is
looked up lazily (ProcfsOwners), only in the listener owner's process tree and only for the
inodes of records that need it. Reading another user's /proc/<pid>/fd needs root,
CAP_DAC_READ_SEARCH or CAP_SYS_PTRACE.

After the privilege drop (tracer/kernel/privileges.py) the tracer has none of those: the reads
that pass the kernel's ptrace access check (fd, exe, maps) then go through the /proc broker
(tracer/kernel/broker.py) once route_through() was called. Use socket_inodes(), exe(),
go_build_version(), mapped_files() and process_text() for them, never open those files
directly, so they keep working after the drop. comm, stat, status, cmdline, cgroup, net/tcp and
children are readable by anyone and stay direct.
"""

from __future__ import annotations

import os
import re
import struct
from typing import TYPE_CHECKING, BinaryIO, Iterable, Optional

if TYPE_CHECKING:
    from tracer.kernel.broker import Client

_SOCKET_RE = re.compile(r"^socket:\[(\d+)\]$")
# The broker of this process, set once when privileges are dropped (privileges are per process
# too); only queries about the real /proc go through it.
_broker: "Optional[Client]" = None


def route_through(client: "Optional[Client]") -> None:
    global _broker
    _broker = client


def broker() -> "Optional[Client]":
    return _broker


def _brokered(proc: str) -> "Optional[Client]":
    return _broker if proc == "/proc" else None


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


def process_cgroup(pid: int, proc: str = "/proc") -> Optional[str]:
    """The text of /proc/<pid>/cgroup (readable by anyone); None once the process is gone."""
    try:
        with open(os.path.join(proc, str(pid), "cgroup"), encoding="utf-8", errors="replace") as fh:
            return fh.read()
    except OSError:
        return None


def process_uid(pid: int, proc: str = "/proc") -> Optional[int]:
    """The effective uid of a process (the second field of Uid: in /proc/<pid>/status, what
    `ps -u` selects by), or None once it is gone."""
    try:
        with open(os.path.join(proc, str(pid), "status"), encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.startswith("Uid:"):
                    return int(line.split()[2])
    except (OSError, IndexError, ValueError):
        return None
    return None


def cgroup2_mount(mounts: str = "/proc/mounts") -> Optional[str]:
    """Where the cgroup v2 hierarchy is mounted (/sys/fs/cgroup, or /sys/fs/cgroup/unified on a
    hybrid host), from the mount table: never assumed."""
    try:
        with open(mounts, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                f = line.split()
                if len(f) > 2 and f[2] == "cgroup2":
                    return f[1].replace("\\040", " ")
    except OSError:
        return None
    return None


def parent(pid: int, proc: str = "/proc") -> Optional[int]:
    """The parent process id (field 4 of /proc/<pid>/stat; the name before it may hold spaces)."""
    try:
        with open(os.path.join(proc, str(pid), "stat"), encoding="utf-8", errors="replace") as fh:
            rest = fh.read().rsplit(")", 1)[1].split()
        return int(rest[1])
    except (OSError, IndexError, ValueError):
        return None


def children(pid: int, proc: str = "/proc") -> list[int]:
    """Direct child processes, from /proc/<pid>/task/<tid>/children (CONFIG_PROC_CHILDREN), or
    by scanning every process's parent where that file is missing."""
    out: list[int] = []
    task_dir = os.path.join(proc, str(pid), "task")
    try:
        tids = os.listdir(task_dir)
    except OSError:
        return out
    found = False
    for tid in tids:
        try:
            with open(os.path.join(task_dir, tid, "children"), encoding="ascii") as fh:
                out.extend(int(x) for x in fh.read().split())
            found = True
        except (OSError, ValueError):
            continue
    if not found:
        out = [p for p in _pids(proc) if parent(p, proc) == pid]
    return out


def process_tree(root: int, proc: str = "/proc", limit: int = 4096) -> list[int]:
    """root and its descendants, root first, breadth first; at most `limit` processes."""
    out: list[int] = []
    queue, seen = [root], {root}
    while queue and len(out) < limit:
        pid = queue.pop(0)
        out.append(pid)
        for c in children(pid, proc):
            if c not in seen:
                seen.add(c)
                queue.append(c)
    return out


def ancestors(pid: int, proc: str = "/proc", limit: int = 16) -> list[int]:
    """The parent chain of pid, nearest first, stopping before pid 1 (init)."""
    out: list[int] = []
    p = parent(pid, proc)
    while p and p > 1 and len(out) < limit:
        out.append(p)
        p = parent(p, proc)
    return out


def socket_inodes(pid: int, proc: str = "/proc") -> set[int]:
    """Inodes of the sockets a process holds (empty if it is gone or unreadable)."""
    broker = _brokered(proc)
    return broker.socket_inodes(pid) if broker is not None else direct_socket_inodes(pid, proc)


def process_text(pid: int, name: str, proc: str = "/proc", limit: int = 1 << 20) -> Optional[str]:
    """The text of /proc/<pid>/<name> for name in maps, status, cgroup (at most `limit` bytes)."""
    broker = _brokered(proc)
    if broker is not None:
        return broker.read(pid, name)
    try:
        with open(os.path.join(proc, str(pid), name), "rb") as fh:
            return fh.read(limit).decode("utf-8", "replace")
    except OSError:
        return None


def direct_socket_inodes(pid: int, proc: str = "/proc") -> set[int]:
    """socket_inodes() read by this process itself (the broker's own reads)."""
    fd_dir = os.path.join(proc, str(pid), "fd")
    out: set[int] = set()
    try:
        fds = os.listdir(fd_dir)
    except OSError:
        return out
    for fd in fds:
        try:
            m = _SOCKET_RE.match(os.readlink(os.path.join(fd_dir, fd)))
        except OSError:
            continue
        if m:
            out.add(int(m.group(1)))
    return out


class ProcfsOwners:
    """The lazy holder lookup the owner resolver (tracer/explain/owners.py) uses at run time."""

    def __init__(self, proc: str = "/proc", direct: bool = False) -> None:
        self.proc = proc
        self.direct = direct      # read /proc here even when a broker is set (the broker itself)
        self.walks = 0            # process fd tables read, for doctor and benchmarks

    def tree(self, root: int) -> list[int]:
        return process_tree(root, self.proc)

    def holders(self, pids: Iterable[int], inodes: set[int]) -> dict[int, tuple[int, str]]:
        """inode -> (pid, name) of the first process in `pids` holding it; stops once all are found."""
        broker = None if self.direct else _brokered(self.proc)
        if broker is not None:
            found, walks = broker.holders(list(pids), inodes)
            self.walks += walks
            return found
        found = {}
        for pid in pids:
            if len(found) == len(inodes):
                break
            self.walks += 1
            held = direct_socket_inodes(pid, self.proc) & inodes
            if held:
                name = process_comm(pid, self.proc) or ""
                for ino in held:
                    found.setdefault(ino, (pid, name))
        return found

    def parent(self, pid: int) -> Optional[int]:
        return parent(pid, self.proc)


def _pids(proc: str) -> Iterable[int]:
    for name in os.listdir(proc):
        if name.isdigit():
            yield int(name)


def socket_holders(pids: Optional[Iterable[int]] = None, proc: str = "/proc",
                   limit: int = 65536) -> dict[int, list[tuple[int, str]]]:
    """socket inode -> every (tgid, process name) holding it, in scan order. A listener of a
    pre-forked server is held by the master and each worker; processes that vanish mid-scan are
    skipped; at most `limit` inodes."""
    holders: dict[int, list[tuple[int, str]]] = {}
    for pid in (pids if pids is not None else _pids(proc)):
        inodes = socket_inodes(pid, proc)
        if not inodes:
            continue
        comm = process_comm(pid, proc) or ""
        for ino in inodes:
            if ino in holders:
                holders[ino].append((pid, comm))
            elif len(holders) < limit:
                holders[ino] = [(pid, comm)]
    return holders


def socket_owners(pids: Optional[Iterable[int]] = None, proc: str = "/proc",
                  limit: int = 65536) -> dict[int, tuple[int, str]]:
    """socket inode -> (tgid, process name). A socket shared by several processes (fork,
    fd passing) keeps the first owner found; processes that vanish mid-scan are skipped."""
    return {ino: hs[0] for ino, hs in socket_holders(pids, proc, limit).items()}


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


def root_holder(holders: list[tuple[int, str]], proc: str = "/proc") -> tuple[int, str]:
    """Of the processes sharing a socket, the one whose parent does not share it: the master of
    a pre-forked server (its workers inherited the listener). Lowest pid on a tie."""
    pids = {p for p, _ in holders}
    tops = [h for h in holders if parent(h[0], proc) not in pids]
    return min(tops or holders)


def listening_owners(holders: dict[int, list[tuple[int, str]]], proc: str = "/proc"
                     ) -> dict[tuple[int, int], tuple[tuple[int, str], frozenset[int]]]:
    """(netns inode, port) -> (owner, every pid holding it) of each listening socket among
    `holders` (inode -> holders, from socket_holders).

    A server that listened before the tracer started never shows its listen(); its accepted
    connections inherit this owner in the kernel instead. The owner is the root of the
    processes sharing the listener (the master, not a worker): which process holds an accepted
    socket is resolved later (tracer/explain/owners.py), never guessed from the listener."""
    out: dict[tuple[int, int], tuple[tuple[int, str], frozenset[int]]] = {}
    seen_ns: set[int] = set()
    for pid in sorted({p for hs in holders.values() for p, _ in hs}):
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
                if ino in holders and (ns, port) not in out:
                    out[(ns, port)] = (root_holder(holders[ino], proc), frozenset(p for p, _ in holders[ino]))
    return out


def startup_owners(pids: frozenset[int] = frozenset(), children: bool = False, limit: int = 65536,
                   proc: str = "/proc") -> tuple[dict[int, tuple[int, str]],
                                                dict[tuple[int, int], tuple[int, str, bool]]]:
    """What the kernel side is preloaded with at start-up: socket inode -> owner, for
    connections opened before the tracer, and (netns, port) -> (owner, name, traced) for
    listeners, whose accepted connections inherit that owner until their holder is seen.

    With --pid, only those processes are read, plus their ancestors (the master that shares a
    worker's listener: it, not the worker, is the listener's owner) and, with --children, their
    descendants. `traced`: a --pid process holds the listener, so the kernel keeps its accepted
    connections and lets their holder decide (tracer/explain/owners.py)."""
    scan: Optional[list[int]] = None
    wanted: set[int] = set(pids)
    if pids:
        family: set[int] = set(pids)
        for pid in pids:
            family.update(ancestors(pid, proc))
            if children:
                tree = process_tree(pid, proc)
                family.update(tree)
                wanted.update(tree)
        scan = sorted(family)
    holders = socket_holders(scan, proc, limit)
    owners = {ino: hs[0] for ino, hs in holders.items()}
    listeners = {key: (root[0], root[1], not pids or bool(held & wanted))
                 for key, (root, held) in listening_owners(holders, proc).items()}
    return owners, listeners


# ------------------------------------------------------------------ facts about a process -----
# What the explainer's runtime detection (tracer/explain/procinfo.py) reads. Every /proc read
# about a process goes through one of these small functions, so a privileged broker can serve
# them once the tracer has dropped its privileges.

def exe(pid: int, proc: str = "/proc") -> Optional[str]:
    """The path of the process's executable (/proc/<pid>/exe), or None if unreadable."""
    broker = _brokered(proc)
    if broker is not None:
        return broker.exe(pid)
    try:
        return os.readlink(os.path.join(proc, str(pid), "exe"))
    except OSError:
        return None


def cmdline(pid: int, proc: str = "/proc", limit: int = 4096) -> Optional[list[str]]:
    try:
        with open(os.path.join(proc, str(pid), "cmdline"), "rb") as fh:
            raw = fh.read(limit)
    except OSError:
        return None
    return [a.decode("utf-8", "replace") for a in raw.split(b"\0") if a]


def mapped_files(pid: int, proc: str = "/proc", limit: int = 4096) -> Optional[list[str]]:
    """The files mapped into the process (/proc/<pid>/maps), each once, in map order; at most
    `limit` distinct paths."""
    out: list[str] = []
    seen: set[str] = set()
    text = process_text(pid, "maps", proc)
    if text is None:
        return None
    for line in text.splitlines():
        f = line.split(None, 5)
        if len(f) == 6 and f[5].startswith("/"):
            path = f[5]
            if path not in seen:
                seen.add(path)
                out.append(path)
                if len(out) >= limit:
                    break
    return out


_GO_MAGIC = b"\xff Go buildinf:"


def go_build_version(pid: int, proc: str = "/proc") -> Optional[str]:
    """The Go version a binary was built with, from its ELF .go.buildinfo section (Go 1.13+),
    read through /proc/<pid>/exe: "go1.22.1", "go" when the section holds no inline version
    (before Go 1.18), None for a non-Go (or unreadable) executable."""
    broker = _brokered(proc)
    if broker is not None:
        return broker.go_version(pid)
    try:
        with open(os.path.join(proc, str(pid), "exe"), "rb") as fh:
            return elf_go_version(fh)
    except OSError:
        return None


def elf_go_version(fh: BinaryIO) -> Optional[str]:
    head = fh.read(64)
    if len(head) < 64 or head[:4] != b"\x7fELF" or head[4] != 2:   # ELF64 only
        return None
    end = "<" if head[5] == 1 else ">"
    shoff, = struct.unpack_from(end + "Q", head, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from(end + "HHH", head, 0x3A)
    if not shoff or shentsize < 64 or not 0 < shnum <= 4096 or shstrndx >= shnum:
        return None
    fh.seek(shoff)
    table = fh.read(shentsize * shnum)
    if len(table) < shentsize * shnum:
        return None
    sections = [struct.unpack_from(end + "IIQQQQ", table, i * shentsize) for i in range(shnum)]
    _, _, _, _, str_off, str_size = sections[shstrndx]
    fh.seek(str_off)
    names = fh.read(min(str_size, 1 << 20))
    for name_off, _, _, _, off, size in sections:
        if names[name_off:].split(b"\0", 1)[0] == b".go.buildinfo":
            fh.seek(off)
            data = fh.read(min(size, 64 + 256))
            if not data.startswith(_GO_MAGIC):
                return None
            if len(data) > 32 and data[15] & 2:     # Go 1.18+: version string inline at 32
                n, pos = data[32], 33               # a uvarint; versions are shorter than 128
                if n < 128 and len(data) >= pos + n:
                    return data[pos:pos + n].decode("ascii", "replace")
            return "go"
    return None


def net_tcp(pid: int, v6: bool, proc: str = "/proc") -> Optional[str]:
    """/proc/<pid>/net/tcp or tcp6: the TCP sockets of the process's network namespace (what
    `ss -tan` lists there), or None if the process is gone."""
    try:
        with open(os.path.join(proc, str(pid), "net", "tcp6" if v6 else "tcp"), encoding="ascii") as fh:
            return fh.read()
    except OSError:
        return None
