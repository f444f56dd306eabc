"""Real pre-forked servers in a lab namespace, and `ss -tnp` as the ground truth of who holds
each connection.

- nginx with N workers: the master calls listen(), the workers accept() (SO_REUSEPORT spreads
  connections over the workers); `reset_timedout_connection` makes a worker reset a client
  whose request header does not arrive within a second.
- PostgreSQL: the postmaster accepts and forks a backend per connection, which holds the socket
  until it exits (the postmaster closes its copy).
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import socket
import struct
import subprocess
import tempfile
import time
from typing import Optional

from tests.lab.netns import Host, Topology


def nginx_conf(d: str, http: str, workers: int = 1, connections: int = 64,
               access_log: str = "access_log off;") -> str:
    """A lab nginx's whole configuration: in the foreground, every file under `d`; `http` is the
    rest of its http block (servers, timeouts)."""
    body = "\n".join("    " + line for line in http.strip().splitlines())
    return f"""daemon off;
master_process on;
worker_processes {workers};
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections {connections}; }}
http {{
    {access_log}
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
{body}
}}
"""


def ok_server(listen: str, settings: str = "") -> str:
    """An nginx server block that answers every request with 200 "ok"."""
    return f'server {{ listen {listen}; {settings}location / {{ return 200 "ok\\n"; }} }}'


_USERS = re.compile(r'\("([^"]*)",pid=(\d+),fd=\d+\)')


def pg_bin() -> str:
    """The newest PostgreSQL server Debian installed (bookworm: 15)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"), key=lambda p: int(p.split("/")[4]))
    if not found:
        raise RuntimeError("PostgreSQL is not installed: apt-get install -y postgresql (scripts/setup.sh does)")
    return os.path.dirname(found[-1])


def wait_listening(topo: Topology, host: Host, port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = topo.run(host, ["ss", "-Hltn", f"sport = :{port}"], capture_output=True, text=True).stdout
        if out.strip():
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port} in {host.name}")


def holders(topo: Topology, host: Host, port: int) -> dict[tuple[str, int], set[int]]:
    """(client address, client port) -> pids `ss -tnp` shows holding each connection to `port`."""
    out = topo.run(host, ["ss", "-Htnp", "state", "established", f"sport = :{port}"],
                   capture_output=True, text=True, check=True).stdout
    found: dict[tuple[str, int], set[int]] = {}
    for line in out.splitlines():
        f = line.split()
        addr, _, rport = f[3].rpartition(":")
        found[(addr.strip("[]"), int(rport))] = {int(p) for _, p in _USERS.findall(line)}
    return found


def children_of(pid: int) -> list[int]:
    out = []
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/children", encoding="ascii") as fh:
            out += [int(x) for x in fh.read().split()]
    return sorted(out)


class Nginx:
    """nginx with `workers` worker processes on `port` of `host`."""

    def __init__(self, topo: Topology, host: Host, port: int = 8080, workers: int = 2) -> None:
        self.topo, self.host, self.port, self.n = topo, host, port, workers
        self.dir = tempfile.mkdtemp(prefix="tte-nginx-")
        self.proc: Optional[subprocess.Popen[bytes]] = None
        self.workers: list[int] = []

    def __enter__(self) -> "Nginx":
        conf = os.path.join(self.dir, "nginx.conf")
        with open(conf, "w", encoding="utf-8") as fh:
            fh.write(nginx_conf(self.dir, "client_header_timeout 1s;\nreset_timedout_connection on;\n"
                                + ok_server(f"{self.port} reuseport"), workers=self.n, connections=256))
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        self.proc = self.topo.popen(self.host, [nginx, "-p", self.dir, "-c", conf, "-e",
                                                os.path.join(self.dir, "error.log")],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_listening(self.topo, self.host, self.port)
        deadline = time.monotonic() + 10
        while len(self.workers) < self.n and time.monotonic() < deadline:
            self.workers = children_of(self.proc.pid)
            time.sleep(0.05)
        assert len(self.workers) == self.n, f"nginx started {self.workers}"
        return self

    @property
    def master(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        shutil.rmtree(self.dir, ignore_errors=True)


class Postgres:
    """A throwaway PostgreSQL cluster (trust authentication) listening on `host`:`port`."""

    def __init__(self, topo: Topology, host: Host, port: int = 5432) -> None:
        self.topo, self.host, self.port = topo, host, port
        self.dir = tempfile.mkdtemp(prefix="tte-pg-")
        self.proc: Optional[subprocess.Popen[bytes]] = None

    def _as_postgres(self, argv: list[str]) -> list[str]:
        # initdb and postgres refuse to run as root
        return ["setpriv", "--reuid=postgres", "--regid=postgres", "--clear-groups", *argv]

    def __enter__(self) -> "Postgres":
        shutil.chown(self.dir, "postgres", "postgres")
        data = os.path.join(self.dir, "data")
        bindir = pg_bin()
        subprocess.run(self._as_postgres([f"{bindir}/initdb", "-D", data, "--auth=trust", "-U", "postgres"]),
                       check=True, capture_output=True, cwd=self.dir, timeout=120)
        with open(os.path.join(data, "pg_hba.conf"), "a", encoding="utf-8") as fh:
            fh.write("host all all 10.0.0.0/8 trust\n")
        self.proc = self.topo.popen(self.host, self._as_postgres(
            [f"{bindir}/postgres", "-D", data, "-k", self.dir, "-h", self.host.v4, "-p", str(self.port)]),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=self.dir)
        wait_listening(self.topo, self.host, self.port, timeout=30)
        return self

    @property
    def postmaster(self) -> int:
        # setpriv execs postgres in place: the Popen's pid is the postmaster's
        assert self.proc is not None
        return self.proc.pid

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=30)
        shutil.rmtree(self.dir, ignore_errors=True)


def pg_session(sock: socket.socket) -> None:
    """Log in (protocol 3.0 StartupMessage, trust) and wait for ReadyForQuery."""
    body = struct.pack("!i", 196608) + b"user\0postgres\0database\0postgres\0\0"
    sock.sendall(struct.pack("!i", len(body) + 4) + body)
    buf = b""
    while b"Z\0\0\0\x05" not in buf:
        data = sock.recv(4096)
        if not data:
            raise AssertionError(f"PostgreSQL closed the session: {buf!r}")
        buf += data


def pg_terminate_with_unread_data(sock: socket.socket) -> None:
    """Send Terminate followed by more than the backend reads: it exits with data unread,
    and its exit closes the socket with a reset."""
    sock.setblocking(False)
    try:
        sock.send(b"X\0\0\0\x04" + b"Q" * 200_000)
    except BlockingIOError:
        pass
