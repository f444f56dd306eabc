"""The /proc broker: the few reads the tracer needs after it dropped root.

After the privilege drop (tracer/kernel/privileges.py) the tracer is an ordinary user, and the
kernel's ptrace access check (PTRACE_MODE_READ_FSCREDS, fs/proc/base.c) hides another user's
/proc/<pid>/fd, exe and maps from it; the fd directory itself is mode 0500 of its owner. Yet
the holder of an accepted socket is found by walking /proc/<pid>/fd (tracer/explain/owners.py
via procfs.ProcfsOwners), and the process facts read /proc/<pid>/exe and maps.

Likewise, which addresses are this host's (tracer/kernel/localaddrs.py, refreshed every few
seconds) needs /proc/<pid>/ns/net of every process and setns() into named namespaces.

So before the drop a child is forked that keeps exactly CAP_SYS_PTRACE (passes the ptrace
access check), CAP_DAC_READ_SEARCH (lists the 0500 fd directories) and CAP_SYS_ADMIN (only for
setns() into a /run/netns namespace for local_addrs), as the tracer's user (nobody), with
PR_SET_NO_NEW_PRIVS, no other capability in any set or in the bounding set, and no file
descriptor but its end of a socketpair (the BPF maps and the ring buffer are closed in it).
It answers a fixed set of queries and nothing else:

    holders   {"pids": [pid, ...], "inodes": [ino, ...]} -> {"found": {ino: [pid, comm]}, "walks": n}:
              who holds these socket inodes among these processes, in order (at most MAX_PIDS
              and MAX_INODES), and how many fd tables were read
    inodes    {"pid": pid} -> [ino, ...]: the socket inodes a process holds
    exe       {"pid": pid} -> the /proc/<pid>/exe link target, or null
    go_version {"pid": pid} -> the Go version in the executable's .go.buildinfo, or null
    read      {"pid": pid, "file": "maps" | "status" | "cgroup"} -> at most MAX_TEXT bytes of it
    local_addrs {} -> this host's addresses in every network namespace (tracer/kernel/localaddrs.py:
              a /proc/<pid>/ns/net walk, and setns() into the /run/netns ones no process is in)

Requests are single JSON messages on a SOCK_SEQPACKET socket, at most MAX_REQUEST bytes;
every field is checked (exact key sets, pids 1..PID_MAX as integers, no paths from the caller:
the broker builds every path itself from the validated pid and the fixed file name). Anything
else gets {"error": ...}. The broker exits when the tracer closes its end (or dies).
"""

from __future__ import annotations

import errno
import json
import os
import socket
import threading
from typing import Any, Optional

MAX_REQUEST = 1 << 20
MAX_PIDS = 4096
MAX_INODES = 65536
MAX_TEXT = 512 << 10
SO_SNDBUFFORCE, SO_RCVBUFFORCE = 32, 33     # asm-generic/socket.h; not in Python's socket module
BUFFER = 8 << 20             # socket buffers: one message must fit whole (SOCK_SEQPACKET)
PID_MAX = 1 << 22            # PID_MAX_LIMIT on 64-bit
FILES = ("maps", "status", "cgroup")
KEEP = (2, 19, 21)           # CAP_DAC_READ_SEARCH, CAP_SYS_PTRACE, CAP_SYS_ADMIN (setns)
PROC = "/proc"


class BrokerError(OSError):
    """A refused query (in the broker) or a broker that is gone (in the tracer)."""


def _pid(v: Any) -> int:
    if type(v) is not int or not 1 <= v <= PID_MAX:
        raise BrokerError("a pid is an integer from 1 to 4194304")
    return v


def _ino(v: Any) -> int:
    if type(v) is not int or not 1 <= v < 1 << 64:
        raise BrokerError("an inode is a positive integer")
    return v


def _keys(req: dict[str, Any], want: set[str]) -> None:
    if set(req) != want:
        raise BrokerError(f"expected exactly the keys {sorted(want)}")


def answer(req: Any) -> Any:
    """One validated query, answered from /proc (runs in the broker)."""
    from tracer.kernel import procfs

    if not isinstance(req, dict) or not isinstance(req.get("op"), str):
        raise BrokerError("a request is an object with an op")
    op = req["op"]
    if op == "holders":
        _keys(req, {"op", "pids", "inodes"})
        if not isinstance(req["pids"], list) or not isinstance(req["inodes"], list) \
                or len(req["pids"]) > MAX_PIDS or len(req["inodes"]) > MAX_INODES:
            raise BrokerError(f"pids (at most {MAX_PIDS}) and inodes (at most {MAX_INODES}) are lists")
        pids = [_pid(p) for p in req["pids"]]
        inodes = {_ino(i) for i in req["inodes"]}
        walker = procfs.ProcfsOwners(PROC, direct=True)
        found = walker.holders(pids, inodes)
        return {"found": {str(k): list(v) for k, v in found.items()}, "walks": walker.walks}
    if op == "inodes":
        _keys(req, {"op", "pid"})
        return sorted(procfs.direct_socket_inodes(_pid(req["pid"]), PROC))
    if op == "exe":
        _keys(req, {"op", "pid"})
        pid = _pid(req["pid"])
        try:
            return os.readlink(os.path.join(PROC, str(pid), "exe"))
        except OSError:
            return None
    if op == "go_version":
        _keys(req, {"op", "pid"})
        return procfs.go_build_version(_pid(req["pid"]), PROC + "/")   # not "/proc": read it here
    if op == "read":
        _keys(req, {"op", "pid", "file"})
        pid = _pid(req["pid"])
        if req["file"] not in FILES:
            raise BrokerError(f"file is one of {', '.join(FILES)}")
        try:
            with open(os.path.join(PROC, str(pid), req["file"]), "rb") as fh:
                return fh.read(MAX_TEXT).decode("utf-8", "replace")
        except OSError:
            return None
    if op == "local_addrs":
        _keys(req, {"op"})
        from tracer.kernel import localaddrs

        return sorted(localaddrs.scan(direct=True))
    raise BrokerError(f"unknown op {op!r}")


def serve(sock: socket.socket) -> None:
    """The broker's loop: one request, one answer, until the other end closes."""
    while True:
        try:
            data = sock.recv(MAX_REQUEST + 1)
        except OSError:
            return
        if not data:
            return
        try:
            if len(data) > MAX_REQUEST:
                raise BrokerError("request too long")
            reply = {"ok": answer(json.loads(data))}
        except (BrokerError, ValueError, RecursionError) as exc:
            reply = {"error": str(exc)[:200]}
        try:
            sock.send(json.dumps(reply).encode())
        except OSError as exc:
            if exc.errno != errno.EMSGSIZE:
                return
            try:
                sock.send(b'{"error": "answer too long"}')
            except OSError:
                return


class Client:
    """The tracer's end. Thread-safe (one request at a time)."""

    def __init__(self, sock: socket.socket, pid: int) -> None:
        self.sock = sock
        self.pid = pid
        self.requests = 0
        self.failures = 0        # queries that got no answer (the broker gone): shown by doctor/tests
        self._lock = threading.Lock()

    def ask(self, req: dict[str, Any]) -> Any:
        with self._lock:
            self.requests += 1
            try:
                self.sock.send(json.dumps(req).encode())
                data = self.sock.recv(64 << 20)
            except OSError as exc:
                raise BrokerError(f"the /proc broker is gone: {exc}") from None
        if not data:
            raise BrokerError("the /proc broker is gone")
        reply = json.loads(data)
        if "error" in reply:
            raise BrokerError(reply["error"])
        return reply["ok"]

    def _ask_or(self, req: dict[str, Any], default: Any) -> Any:
        """As /proc reads do for a process that is gone: no answer is an empty one (counted)."""
        try:
            return self.ask(req)
        except BrokerError:
            self.failures += 1
            return default

    def holders(self, pids: list[int], inodes: set[int]) -> tuple[dict[int, tuple[int, str]], int]:
        got = self._ask_or({"op": "holders", "pids": pids[:MAX_PIDS], "inodes": sorted(inodes)[:MAX_INODES]},
                           {"found": {}, "walks": 0})
        return {int(k): (int(v[0]), str(v[1])) for k, v in got["found"].items()}, int(got["walks"])

    def socket_inodes(self, pid: int) -> set[int]:
        return set(self._ask_or({"op": "inodes", "pid": pid}, []))

    def exe(self, pid: int) -> Optional[str]:
        v = self._ask_or({"op": "exe", "pid": pid}, None)
        return v if isinstance(v, str) else None

    def go_version(self, pid: int) -> Optional[str]:
        v = self._ask_or({"op": "go_version", "pid": pid}, None)
        return v if isinstance(v, str) else None

    def read(self, pid: int, name: str) -> Optional[str]:
        v = self._ask_or({"op": "read", "pid": pid, "file": name}, None)
        return v if isinstance(v, str) else None

    def local_addrs(self) -> set[str]:
        return set(self.ask({"op": "local_addrs"}))   # an OSError: LocalAddresses says "don't know"

    def close(self) -> None:
        self.sock.close()
        try:
            os.waitpid(self.pid, 0)
        except ChildProcessError:
            pass


def pair() -> tuple[socket.socket, socket.socket]:
    """A socketpair whose messages can be as long as a request or an answer may be (the FORCE
    options, as root, pass net.core.wmem_max; otherwise the system's maximum applies)."""
    ends = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    for s in ends:
        for force, plain in ((SO_SNDBUFFORCE, socket.SO_SNDBUF), (SO_RCVBUFFORCE, socket.SO_RCVBUF)):
            try:
                s.setsockopt(socket.SOL_SOCKET, force, BUFFER)
            except OSError:
                s.setsockopt(socket.SOL_SOCKET, plain, BUFFER)
    return ends


def start(uid: int, gid: int) -> Client:
    """Fork the broker (call as root, before the drop and before any thread is started)."""
    from tracer.kernel import privileges

    parent_end, child_end = pair()
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            parent_end.close()
            keep_fd = child_end.fileno()
            os.closerange(3, keep_fd)
            os.closerange(keep_fd + 1, os.sysconf("SC_OPEN_MAX") if os.sysconf("SC_OPEN_MAX") < 1 << 20 else 1 << 16)
            devnull = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(devnull, fd)
            if devnull > 2:
                os.close(devnull)
            privileges.become(uid, gid, KEEP)
            serve(child_end)
        except BaseException:  # noqa: BLE001 - the broker never prints a traceback into the tracer's terminal
            code = 1
        finally:
            os._exit(code)
    child_end.close()
    return Client(parent_end, pid)
