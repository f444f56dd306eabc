"""A scripted TCP peer for the lab and the scenario tests.

Run as ``python3 -m tests.lab.peer --name NAME 'STEP;STEP;...'`` (usually inside a network
namespace with ``ip netns exec``). The process renames itself to NAME (the kernel's comm), so
tests can tell which process owned a socket. Each step is ``op arg=value ...``; after each step
the peer prints one JSON line with the step's outcome, including the errno name an operation
raised, which is the ground truth of "what the application saw".

Steps (one current socket, plus a listener):
  listen port=P [host=H] [v6=1]     bind+listen; prints the port
  accept [timeout=S]                 accept one connection; it becomes current
  connect host=H port=P [timeout=S] [syncnt=N]  connect; the socket becomes current
  http_get                           send "GET / HTTP/1.1" with keep-alive
  http_response [timeout=S]          read one small HTTP response (one recv)
  send n=N | send_once n=N           write N bytes (sendall / one send call)
  recv [n=N] [timeout=S]             one recv; prints byte count or errno
  drain [timeout=S]                  recv until EOF, error or timeout
  sleep s=S
  linger0                            SO_LINGER {1, 0}: the next close sends a reset
  keepalive idle=S intvl=S cnt=N     SO_KEEPALIVE with per-socket timings
  user_timeout ms=MS                 TCP_USER_TIMEOUT
  shutdown how=rd|wr|rdwr
  close | close_listener
  serve n=N                          accept N connections: read a request, answer 10 bytes, wait for
                                     the client's close, close (the client closes first)
  churn host=H port=P n=N            N times: connect, send, read the answer, close first
  wait                               block until a line arrives on stdin (test synchronisation)
  info                               print the socket's local/remote address and inode
"""

from __future__ import annotations

import ctypes
import json
import os
import socket
import struct
import sys
import time
from typing import Optional

PR_SET_NAME = 15
TCP_USER_TIMEOUT = 18


def set_comm(name: str) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_NAME, name.encode()[:15], 0, 0, 0)


def _errno_name(exc: OSError) -> str:
    import errno

    # A kernel errno (even ETIMEDOUT from a dead connection) wins; a socket.timeout from our
    # own settimeout() has no errno.
    if exc.errno is None:
        return "TIMEOUT"
    return errno.errorcode.get(exc.errno, str(exc.errno))


class Peer:
    def __init__(self) -> None:
        self.sock: Optional[socket.socket] = None
        self.listener: Optional[socket.socket] = None

    def out(self, **kw) -> None:
        kw["t"] = time.monotonic()
        print(json.dumps(kw), flush=True)

    def step(self, op: str, a: dict) -> None:
        try:
            getattr(self, "op_" + op)(a)
        except OSError as exc:
            self.out(op=op, error=_errno_name(exc))

    def op_listen(self, a: dict) -> None:
        v6 = a.get("v6") == "1"
        s = socket.socket(socket.AF_INET6 if v6 else socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((a.get("host", "::" if v6 else "0.0.0.0"), int(a.get("port", 0))))
        s.listen(int(a.get("backlog", 128)))
        self.listener = s
        self.out(op="listen", port=s.getsockname()[1])

    def op_accept(self, a: dict) -> None:
        assert self.listener is not None
        self.listener.settimeout(float(a.get("timeout", 10)))
        c, addr = self.listener.accept()
        c.settimeout(None)
        self.sock = c
        self.out(op="accept", peer=list(addr[:2]))

    def op_connect(self, a: dict) -> None:
        host = a["host"]
        fam = socket.AF_INET6 if ":" in host else socket.AF_INET
        s = socket.socket(fam, socket.SOCK_STREAM)
        self.sock = s
        if "syncnt" in a:
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_SYNCNT, int(a["syncnt"]))
        s.settimeout(float(a.get("timeout", 5)))
        s.connect((host, int(a["port"])))
        s.settimeout(None)
        self.out(op="connect", local=list(s.getsockname()[:2]))

    def op_send(self, a: dict) -> None:
        assert self.sock is not None
        self.sock.sendall(b"x" * int(a.get("n", 1)))
        self.out(op="send", n=int(a.get("n", 1)))

    def op_http_get(self, a: dict) -> None:
        assert self.sock is not None
        self.sock.sendall(b"GET / HTTP/1.1\r\nHost: lab\r\nConnection: keep-alive\r\n\r\n")
        self.out(op="http_get")

    def op_http_response(self, a: dict) -> None:
        assert self.sock is not None
        self.sock.settimeout(float(a.get("timeout", 5)))
        data = self.sock.recv(65536)
        status = data.split(b"\r\n", 1)[0].decode(errors="replace") if data else ""
        self.out(op="http_response", n=len(data), status=status)

    def op_send_once(self, a: dict) -> None:
        assert self.sock is not None
        n = self.sock.send(b"x" * int(a.get("n", 1)))
        self.out(op="send_once", n=n)

    def op_recv(self, a: dict) -> None:
        assert self.sock is not None
        self.sock.settimeout(float(a.get("timeout", 5)))
        data = self.sock.recv(int(a.get("n", 65536)))
        self.out(op="recv", n=len(data))

    def op_drain(self, a: dict) -> None:
        assert self.sock is not None
        self.sock.settimeout(float(a.get("timeout", 5)))
        total = 0
        while True:
            data = self.sock.recv(65536)
            if not data:
                break
            total += len(data)
        self.out(op="drain", n=total)

    def op_sleep(self, a: dict) -> None:
        time.sleep(float(a["s"]))
        self.out(op="sleep")

    def op_linger0(self, a: dict) -> None:
        assert self.sock is not None
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.out(op="linger0")

    def op_keepalive(self, a: dict) -> None:
        assert self.sock is not None
        s = self.sock
        s.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, int(a.get("idle", 1)))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, int(a.get("intvl", 1)))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, int(a.get("cnt", 2)))
        self.out(op="keepalive")

    def op_user_timeout(self, a: dict) -> None:
        assert self.sock is not None
        self.sock.setsockopt(socket.IPPROTO_TCP, TCP_USER_TIMEOUT, int(a["ms"]))
        self.out(op="user_timeout")

    def op_shutdown(self, a: dict) -> None:
        assert self.sock is not None
        how = {"rd": socket.SHUT_RD, "wr": socket.SHUT_WR, "rdwr": socket.SHUT_RDWR}[a.get("how", "wr")]
        self.sock.shutdown(how)
        self.out(op="shutdown")

    def op_close(self, a: dict) -> None:
        if self.sock is not None:
            self.sock.close()
        self.out(op="close")

    def op_close_listener(self, a: dict) -> None:
        if self.listener is not None:
            self.listener.close()
        self.out(op="close_listener")

    def op_serve(self, a: dict) -> None:
        assert self.listener is not None
        self.listener.settimeout(30)
        done = 0
        for _ in range(int(a["n"])):
            c, _ = self.listener.accept()
            c.settimeout(10)
            try:
                c.recv(64)
                c.sendall(b"x" * 10)
                c.recv(64)  # EOF: the client closed first
            finally:
                c.close()
            done += 1
        self.out(op="serve", n=done)

    def op_churn(self, a: dict) -> None:
        host, port, n = a["host"], int(a["port"]), int(a["n"])
        fam = socket.AF_INET6 if ":" in host else socket.AF_INET
        deadline = time.monotonic() + float(a.get("max_s", 60))
        done = 0
        while done < n and time.monotonic() < deadline:
            s = socket.socket(fam, socket.SOCK_STREAM)
            s.settimeout(10)
            try:
                s.connect((host, port))
                s.sendall(b"q")
                s.recv(64)
            finally:
                s.close()
            done += 1
        self.out(op="churn", n=done)

    def op_wait(self, a: dict) -> None:
        self.out(op="wait")
        sys.stdin.readline()

    def op_info(self, a: dict) -> None:
        assert self.sock is not None
        s = self.sock
        self.out(op="info", local=list(s.getsockname()[:2]), remote=list(s.getpeername()[:2]),
                 ino=os.fstat(s.fileno()).st_ino)


def parse_script(script: str) -> list[tuple[str, dict]]:
    steps = []
    for part in script.split(";"):
        words = part.split()
        if not words:
            continue
        args = dict(w.split("=", 1) for w in words[1:])
        steps.append((words[0], args))
    return steps


def main(argv: list[str]) -> int:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--name", default="tte-peer", help="process name (comm) to take")
    ap.add_argument("script")
    ns = ap.parse_args(argv)
    set_comm(ns.name)
    peer = Peer()
    peer.out(op="start", pid=os.getpid())
    for op, a in parse_script(ns.script):
        if not hasattr(peer, "op_" + op):
            peer.out(op=op, error="UNKNOWN_OP")
            return 2
        peer.step(op, a)
    peer.out(op="end")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
