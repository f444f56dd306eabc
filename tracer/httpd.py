"""The exporter's HTTP server: /metrics to many scrapers without letting any of them hold it.

http.server's ThreadingHTTPServer gives one thread per connection, a listen backlog of 5, no
timeouts, and a traceback on stderr for every client that goes away early. Here instead:

- one acceptor thread owns every connection until its whole request head has arrived: it
  waits on them with selectors, does the TLS handshake and reads the head without blocking,
  so an idle or slow client (one byte every few seconds) costs a file descriptor, never a
  thread; a connection whose head is not complete HEAD_TIMEOUT_S after it was accepted is
  closed; beyond MAX_CONNECTIONS the oldest waiting one is closed first; a head longer than
  MAX_HEAD_BYTES is refused;
- a complete request goes to a bounded pool of WORKERS threads, which only build and write
  the response: each has WRITE_TIMEOUT_S in total, enforced by the acceptor shutting the
  socket down, so a client that stops reading cannot keep a worker;
- one request per connection (HTTP/1.0, as prometheus_client's own handler): no keep-alive
  state to track;
- the listen backlog is SOMAXCONN (capped by net.core.somaxconn);
- /metrics serves the registry, / a page linking to it, anything else 404; only GET and HEAD;
- client errors (disconnects, timeouts, TLS failures) are counted, never printed.

TLS and basic auth come from --web.config.file (tracer/webconfig.py); the Authorization header
is checked before any route.
"""

from __future__ import annotations

import gzip
import io
import selectors
import socket
import ssl
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any, Optional
from urllib.parse import urlsplit

from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import CollectorRegistry

from tracer import __version__
from tracer.webconfig import WebConfig

WORKERS = 4
MAX_CONNECTIONS = 1024
MAX_HEAD_BYTES = 16384
HEAD_TIMEOUT_S = 10.0      # Prometheus's default scrape_timeout is 10 s
WRITE_TIMEOUT_S = 10.0
INDEX = (b"<html><head><title>tcptrace-explain exporter</title></head><body>"
         b"<h1>tcptrace-explain exporter</h1><p><a href=\"/metrics\">Metrics</a></p></body></html>\n")


@dataclass(frozen=True)
class Limits:
    workers: int = WORKERS
    max_connections: int = MAX_CONNECTIONS
    head_timeout_s: float = HEAD_TIMEOUT_S
    write_timeout_s: float = WRITE_TIMEOUT_S
    backlog: int = socket.SOMAXCONN


class _Handler(BaseHTTPRequestHandler):
    server_version = f"tcptrace-explain/{__version__}"
    sys_version = ""
    protocol_version = "HTTP/1.0"
    server: "MetricsServer"  # type: ignore[assignment]
    request: _Conn

    def setup(self) -> None:
        # The acceptor has read the head already: parse it from memory, write to the socket.
        self.connection = self.request.sock
        self.rfile = io.BytesIO(self.request.head)
        self.wfile = self.connection.makefile("wb")

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self._route(body=True)

    def do_HEAD(self) -> None:  # noqa: N802
        self._route(body=False)

    def _route(self, body: bool) -> None:
        srv = self.server
        web = srv.web
        if web.users and not web.authorized(self.headers.get("Authorization")):
            self._reply(401, b"Unauthorized\n", "text/plain; charset=utf-8", body,
                        {"WWW-Authenticate": 'Basic realm="tcptrace-explain"'})
            return
        path = urlsplit(self.path).path
        if path == "/metrics":
            encoder, ctype = choose_encoder(self.headers.get("Accept", ""))
            data = encoder(srv.registry)
            extra = {}
            if "gzip" in self.headers.get("Accept-Encoding", ""):
                data, extra = gzip.compress(data, compresslevel=1), {"Content-Encoding": "gzip"}
            self._reply(200, data, ctype, body, extra)
        elif path == "/":
            self._reply(200, INDEX, "text/html; charset=utf-8", body)
        else:
            self._reply(404, b"Not Found: the metrics are at /metrics\n", "text/plain; charset=utf-8", body)

    def _reply(self, code: int, data: bytes, ctype: str, body: bool,
               extra: Optional[dict[str, str]] = None) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if body:
            self.wfile.write(data)
        self.server.responses[code] = self.server.responses.get(code, 0) + 1

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's signature
        """No access log and no error lines on stderr: a scrape every few seconds is not news,
        and a client that disconnects is not the operator's problem."""


class _Conn:
    """An accepted connection while the acceptor reads its request head."""

    __slots__ = ("sock", "accepted", "head", "handshaken")

    def __init__(self, sock: socket.socket, tls: bool) -> None:
        self.sock = sock
        self.accepted = time.monotonic()
        self.head = b""
        self.handshaken = not tls


class MetricsServer:
    """Listens at construction (so the port is known and errors surface early); serves after
    start() until shutdown()."""

    def __init__(self, host: str, port: int, registry: CollectorRegistry, web: Optional[WebConfig] = None,
                 limits: Limits = Limits()) -> None:
        self.registry = registry
        self.web = web or WebConfig()
        self.limits = limits
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.listener = socket.create_server((host, port), family=family, backlog=limits.backlog)
        self.listener.setblocking(False)
        self.server_address = self.listener.getsockname()
        self.responses: dict[int, int] = {}
        self.client_errors = 0      # disconnects, timeouts, TLS failures: counted, not printed
        self.timed_out = 0          # heads not complete in time, and waiting connections evicted
        self._wake_r, self._wake_w = socket.socketpair()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._busy: dict[int, tuple[socket.socket, float]] = {}   # id -> (socket, deadline)
        self._pool = ThreadPoolExecutor(max_workers=limits.workers, thread_name_prefix="metrics-http")
        self._thread: Optional[threading.Thread] = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._accept_loop, name="metrics-accept", daemon=True)
        self._thread.start()

    def shutdown(self) -> None:
        self._stop.set()
        self._wake_w.send(b"x")
        if self._thread is not None:
            self._thread.join(timeout=5)
        with self._lock:
            for s, _ in self._busy.values():
                _abort(s)
        self._pool.shutdown(wait=True, cancel_futures=True)
        for s in (self.listener, self._wake_r, self._wake_w):
            s.close()

    # -- the acceptor -------------------------------------------------------------------
    def _accept_loop(self) -> None:
        sel = selectors.DefaultSelector()
        sel.register(self.listener, selectors.EVENT_READ, None)
        sel.register(self._wake_r, selectors.EVENT_READ, None)
        waiting: dict[socket.socket, _Conn] = {}
        try:
            while not self._stop.is_set():
                for key, _ in sel.select(timeout=0.5):
                    if key.fileobj is self.listener:
                        self._accept(sel, waiting)
                    elif isinstance(key.data, _Conn):
                        self._readable(sel, waiting, key.data)
                now = time.monotonic()
                for c in [c for c in waiting.values() if now - c.accepted > self.limits.head_timeout_s]:
                    self._drop(sel, waiting, c)
                    self.timed_out += 1
                with self._lock:
                    late = [s for s, deadline in self._busy.values() if now > deadline]
                for s in late:
                    _abort(s)
        finally:
            for c in waiting.values():
                c.sock.close()
            sel.close()

    def _accept(self, sel: selectors.BaseSelector, waiting: dict[socket.socket, _Conn]) -> None:
        while True:
            try:
                sock, _ = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:        # e.g. EMFILE: leave the rest in the backlog for now
                return
            with self._lock:
                total = len(waiting) + len(self._busy)
            if total >= self.limits.max_connections:
                if not waiting:
                    sock.close()
                    self.client_errors += 1
                    continue
                self._drop(sel, waiting, min(waiting.values(), key=lambda c: c.accepted))
                self.timed_out += 1
            sock.setblocking(False)
            if self.web.tls is not None:
                try:
                    sock = self.web.tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
                except (OSError, ValueError):
                    sock.close()
                    self.client_errors += 1
                    continue
            c = _Conn(sock, self.web.tls is not None)
            waiting[sock] = c
            sel.register(sock, selectors.EVENT_READ, c)

    def _readable(self, sel: selectors.BaseSelector, waiting: dict[socket.socket, _Conn], c: _Conn) -> None:
        try:
            if not c.handshaken:
                assert isinstance(c.sock, ssl.SSLSocket)
                c.sock.do_handshake()
                c.handshaken = True
            while True:
                data = c.sock.recv(MAX_HEAD_BYTES)
                if not data:
                    raise ConnectionResetError
                c.head += data
                if b"\r\n\r\n" in c.head or b"\n\n" in c.head:
                    sel.unregister(c.sock)
                    del waiting[c.sock]
                    self._dispatch(c)
                    return
                if len(c.head) > MAX_HEAD_BYTES:
                    raise ValueError("request head too long")
        except (ssl.SSLWantReadError, BlockingIOError):
            return                 # more to come
        except (OSError, ValueError):
            # includes ssl.SSLError (a failed handshake) and SSLWantWriteError: a fresh socket's
            # send buffer always takes a ServerHello, so a client that makes us wait is dropped
            self._drop(sel, waiting, c)
            self.client_errors += 1

    def _drop(self, sel: selectors.BaseSelector, waiting: dict[socket.socket, _Conn], c: _Conn) -> None:
        sel.unregister(c.sock)
        del waiting[c.sock]
        c.sock.close()

    def _dispatch(self, c: _Conn) -> None:
        with self._lock:
            self._busy[id(c.sock)] = (c.sock, time.monotonic() + self.limits.write_timeout_s)
        try:
            self._pool.submit(self._serve, c)
        except RuntimeError:       # shutting down
            self._done(c.sock)

    # -- a worker -----------------------------------------------------------------------
    def _serve(self, c: _Conn) -> None:
        try:
            c.sock.setblocking(True)
            c.sock.settimeout(self.limits.write_timeout_s)
            _Handler(c, c.sock.getpeername(), self)  # type: ignore[arg-type]
        except (OSError, ValueError):
            self.client_errors += 1
        finally:
            self._done(c.sock)

    def _done(self, sock: socket.socket) -> None:
        with self._lock:
            self._busy.pop(id(sock), None)
        try:
            sock.close()
        except OSError:
            pass


def _abort(s: socket.socket) -> None:
    """Wake a worker blocked on this socket: its read or write fails at once. The base class's
    shutdown, so an SSL socket is not torn down under the worker's feet."""
    try:
        socket.socket.shutdown(s, socket.SHUT_RDWR)
    except OSError:
        pass


def is_loopback(host: str) -> bool:
    """Every address `host` resolves to is a loopback address."""
    import ipaddress

    try:
        infos = socket.getaddrinfo(host or None, None, proto=socket.IPPROTO_TCP, flags=socket.AI_PASSIVE)
    except OSError:
        return False
    addrs = {str(info[4][0]) for info in infos}
    return bool(addrs) and all(ipaddress.ip_address(a.split("%", 1)[0]).is_loopback for a in addrs)


def listen_warning(host: str, port: int, web: WebConfig) -> Optional[str]:
    if is_loopback(host):
        return None
    missing = [w for w, on in (("TLS", web.tls is not None), ("basic auth", bool(web.users))) if not on]
    what = f"without {' or '.join(missing)}" if missing else "with TLS and basic auth"
    return (f"warning: serving metrics on {host}:{port}, reachable beyond this host, {what}; process names "
            "and endpoints are visible to whoever can connect" +
            ("" if not missing else " (set up --web.config.file, or listen on 127.0.0.1 behind a proxy)"))

