"""The exporter's HTTP side against the real exporter (the real BPF programs loaded): hostile
process names in /metrics, concurrency, idle and slow clients, early disconnects, routes."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import struct
import tempfile
import threading
import time
import urllib.error
import urllib.request
from typing import Iterator, Optional

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import REPO

pytestmark = pytest.mark.scenario


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Exporter:
    def __init__(self, p: subprocess.Popen, port: int, d: str) -> None:
        self.p, self.port, self.dir = p, port, d

    def stderr(self) -> str:
        with open(os.path.join(self.dir, "stderr"), encoding="utf-8", errors="replace") as fh:
            return fh.read()

    def threads(self) -> int:
        return len(os.listdir(f"/proc/{self.p.pid}/task"))


@contextlib.contextmanager
def running_exporter(*extra: str, listen: str = "127.0.0.1:0") -> Iterator[Exporter]:
    """A real exporter (the real BPF programs), stderr in a file (a pipe nobody reads would
    block it)."""
    d = tempfile.mkdtemp(prefix="tte-http-")
    ready = os.path.join(d, "ready")
    args = [sys.executable, "-m", "tracer.cli", "exporter", "--listen", listen, "--ready-file", ready, *extra]
    err = open(os.path.join(d, "stderr"), "w")
    p = subprocess.Popen(args, cwd=REPO, stdout=subprocess.DEVNULL, stderr=err, text=True)
    err.close()
    deadline = time.monotonic() + 90
    try:
        while not os.path.exists(ready) or not open(ready).read().strip():
            if p.poll() is not None or time.monotonic() > deadline:
                p.kill()
                p.wait()
                raise AssertionError(f"exporter did not start: {open(os.path.join(d, 'stderr')).read()}")
            time.sleep(0.1)
        yield Exporter(p, int(open(ready).read()), d)
    finally:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(d, ignore_errors=True)


def get(port: int, path: str = "/metrics", timeout: float = 10) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


# 15 bytes at most (TASK_COMM_LEN): ESC, an OSC 52 start, BEL, CR, newline, quote, backslash.
HOSTILE_NAMES = [b"a\x1b]52;c;\x07b", b"c\rd\ne", b'q"u\\o\x1b[2J']


def connect_refused_as(name: bytes, port: int, times: int = 3) -> None:
    """A real process renames itself with prctl(PR_SET_NAME) and connects to a closed port."""
    code = ("import ctypes, socket, sys\n"
            "libc = ctypes.CDLL(None, use_errno=True)\n"
            "assert libc.prctl(15, ctypes.c_char_p(bytes.fromhex(sys.argv[1])), 0, 0, 0) == 0\n"
            f"for _ in range({times}):\n"
            "    s = socket.socket()\n"
            "    try:\n"
            f"        s.connect(('127.0.0.1', {port}))\n"
            "    except ConnectionRefusedError:\n"
            "        pass\n"
            "    s.close()\n")
    subprocess.run([sys.executable, "-c", code, name.hex()], check=True, timeout=30)


def wait_for(port: int, pred, timeout: float = 20.0) -> Optional[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, text = get(port)
        if status == 200 and pred(text):
            return text
        time.sleep(0.3)
    return None


def test_hostile_process_names_are_escaped_for_prometheus_client_and_promtool():
    closed = free_port()
    with running_exporter("--port", str(closed)) as exp:
        port = exp.port
        for name in HOSTILE_NAMES:
            connect_refused_as(name, closed)
        want = {n.decode().replace("\x1b", "\\x1b").replace("\x07", "\\x07").replace("\r", "\\x0d")
                .replace("\n", "\\x0a") for n in HOSTILE_NAMES}

        def seen(text: str) -> set[str]:
            return {s.labels["comm"] for f in text_string_to_metric_families(text)
                    if f.name == "tcptrace_events" for s in f.samples if "comm" in s.labels}

        text = wait_for(port, lambda t: want <= seen(t))
        assert text is not None, f"hostile names never served: {get(port)[1][-3000:]}"
    assert not any(c in text for c in "\x1b\x07\r")
    p = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr


@pytest.fixture(scope="module")
def exp():
    with running_exporter("--port", str(free_port())) as e:
        yield e
        e.p.send_signal(signal.SIGTERM)
        e.p.wait(timeout=30)
        assert e.p.returncode == 0, e.stderr()


def test_routes_metrics_index_404_and_methods(exp):
    status, text = get(exp.port, "/metrics")
    assert status == 200 and "tcptrace_build_info{" in text
    status, text = get(exp.port, "/")
    assert status == 200 and 'href="/metrics"' in text
    for path in ("/nope", "/metrics/x", "/favicon.ico", "/metricsx"):
        assert get(exp.port, path)[0] == 404, path
    req = urllib.request.Request(f"http://127.0.0.1:{exp.port}/metrics", method="POST", data=b"x")
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=10)
    assert err.value.code == 501


def test_listen_backlog_is_not_5(exp):
    # ss shows a listener's backlog in Send-Q
    out = subprocess.run(["ss", "-Hltn", f"sport = :{exp.port}"], capture_output=True, text=True).stdout
    backlog = int(out.split()[2])
    assert backlog >= 128, out


def test_200_concurrent_scrapes_all_answer(exp):
    n = 200
    barrier = threading.Barrier(n)
    times: list[float] = []
    codes: list[int] = []
    lock = threading.Lock()

    def one() -> None:
        barrier.wait()
        t = time.monotonic()
        code, _ = get(exp.port, timeout=30)
        with lock:
            times.append(time.monotonic() - t)
            codes.append(code)

    threads = [threading.Thread(target=one) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    times.sort()
    print(f"\n200 concurrent scrapes: p50 {times[n // 2] * 1000:.0f} ms, max {times[-1] * 1000:.0f} ms")
    assert codes == [200] * n


def test_1000_idle_connections_cost_no_threads_and_are_closed(exp):
    before = exp.threads()
    idle = []
    try:
        for _ in range(1000):
            s = socket.create_connection(("127.0.0.1", exp.port), timeout=10)
            idle.append(s)
        # and slow clients: a request head trickling in
        for s in idle[:20]:
            s.sendall(b"GET /metrics HTTP/1.1\r\n")
        time.sleep(1.0)
        during = exp.threads()
        t = time.monotonic()
        code, _ = get(exp.port)
        print(f"\nthreads: {before} before, {during} with 1000 idle connections; "
              f"a scrape among them took {(time.monotonic() - t) * 1000:.0f} ms")
        assert code == 200
        assert during <= before + 4, (before, during)   # at most the worker pool starting up
        # every one of them is closed by the server after the head timeout (10 s)
        deadline = time.monotonic() + 20
        for s in idle:
            s.settimeout(max(0.1, deadline - time.monotonic()))
            assert s.recv(1) == b""
    finally:
        for s in idle:
            s.close()


def test_early_disconnects_print_no_traceback(exp):
    for i in range(300):
        s = socket.create_connection(("127.0.0.1", exp.port), timeout=10)
        if i % 3 == 0:
            s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x")           # half a head
        elif i % 3 == 1:
            s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")  # then gone before the answer
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        else:
            s.sendall(b"\x16\x03\x01garbage\r\n\r\n")               # not HTTP at all
        s.close()
    time.sleep(1.0)
    assert get(exp.port)[0] == 200
    err = exp.stderr()
    assert "Traceback" not in err and "Exception" not in err, err[-3000:]


def test_a_non_loopback_listen_address_is_warned_about(exp):
    assert "warning" not in exp.stderr()
    with running_exporter("--port", str(free_port()), listen="0.0.0.0:0") as wide:
        assert get(wide.port)[0] == 200
        err = wide.stderr()
    assert "warning: serving metrics on 0.0.0.0" in err and "without TLS or basic auth" in err, err


def test_real_prometheus_scrapes_over_tls_with_basic_auth(tmp_path):
    import base64
    import json
    import ssl
    import urllib.parse

    import bcrypt

    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    password = "correct horse"
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=10)).decode().replace("$2b$", "$2y$")
    web = tmp_path / "web.yml"
    web.write_text(f"tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\n"
                   f"basic_auth_users:\n  prometheus: '{hashed}'\n")
    (tmp_path / "password").write_text(password)
    os.chmod(tmp_path, 0o755)
    with running_exporter("--port", str(free_port()), "--web.config.file", str(web)) as exp:
        url = f"https://127.0.0.1:{exp.port}/metrics"
        ctx = ssl.create_default_context(cafile=str(cert))
        # no credentials: 401; wrong ones: 401; plain HTTP: no answer
        for auth in (None, "prometheus:wrong", "nobody:" + password):
            req = urllib.request.Request(url)
            if auth:
                req.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
            with pytest.raises(urllib.error.HTTPError) as err:
                urllib.request.urlopen(req, context=ctx, timeout=10)
            assert err.value.code == 401 and "Basic" in err.value.headers["WWW-Authenticate"]
        with pytest.raises((urllib.error.URLError, ConnectionError, OSError)):
            urllib.request.urlopen(f"http://127.0.0.1:{exp.port}/metrics", timeout=10).read()

        binary = shutil.which("prometheus") or "/usr/bin/prometheus"
        cfg = tmp_path / "prometheus.yml"
        cfg.write_text("global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
                       "scrape_configs:\n  - job_name: tte\n    scheme: https\n"
                       f"    tls_config: {{ca_file: '{cert}'}}\n"
                       f"    basic_auth: {{username: prometheus, password_file: '{tmp_path / 'password'}'}}\n"
                       f"    static_configs: [{{targets: ['127.0.0.1:{exp.port}']}}]\n")
        port = free_port()
        prom = subprocess.Popen([binary, f"--config.file={cfg}", f"--storage.tsdb.path={tmp_path}/data",
                                 f"--web.listen-address=127.0.0.1:{port}"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 60
            target: dict = {}
            while time.monotonic() < deadline:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/targets", timeout=5) as r:
                        active = json.loads(r.read())["data"]["activeTargets"]
                    target = active[0] if active else {}
                    if target.get("health") == "up":
                        break
                except OSError:
                    pass
                time.sleep(0.5)
            assert target.get("health") == "up", target
            q = urllib.parse.urlencode({"query": "tcptrace_build_info"})
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/query?{q}", timeout=10) as r:
                result = json.loads(r.read())["data"]["result"]
            assert result and result[0]["metric"]["job"] == "tte"
        finally:
            prom.terminate()
            prom.wait(timeout=30)
        assert "Traceback" not in exp.stderr()


def test_sighup_reads_the_web_config_again_and_keeps_the_old_one_on_an_error():
    import base64

    import bcrypt

    def hashed(password: str) -> str:
        return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()

    def status(port: int, auth: str) -> int:
        req = urllib.request.Request(f"http://127.0.0.1:{port}/metrics")
        req.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status
        except urllib.error.HTTPError as err:
            return err.code

    import pathlib

    # where the user it drops to can read it (pytest's tmp_path is under a 0700 directory)
    d = pathlib.Path(tempfile.mkdtemp(prefix="tte-web-"))
    os.chmod(d, 0o755)
    web = d / "web.yml"
    web.write_text(f"basic_auth_users:\n  alice: '{hashed('one')}'\n")
    os.chmod(web, 0o644)
    with contextlib.ExitStack() as cleanup:
        cleanup.callback(shutil.rmtree, d, ignore_errors=True)
        exp = cleanup.enter_context(running_exporter("--web.config.file", str(web)))
        assert status(exp.port, "alice:one") == 200 and status(exp.port, "bob:two") == 401
        web.write_text(f"basic_auth_users:\n  bob: '{hashed('two')}'\n")
        exp.p.send_signal(signal.SIGHUP)
        assert wait_for_text(exp, "read again"), exp.stderr()
        assert status(exp.port, "bob:two") == 200 and status(exp.port, "alice:one") == 401
        web.write_text("basic_auth_users: [not, a, mapping]\n")
        exp.p.send_signal(signal.SIGHUP)
        assert wait_for_text(exp, "still serving with the previous web configuration"), exp.stderr()
        assert status(exp.port, "bob:two") == 200 and exp.p.poll() is None
        assert "Traceback" not in exp.stderr()


def test_sighup_without_a_web_config_changes_nothing_and_does_not_stop_it(exp):
    exp.p.send_signal(signal.SIGHUP)
    assert wait_for_text(exp, "no --web.config.file to re-read"), exp.stderr()
    assert exp.p.poll() is None and get(exp.port)[0] == 200


def wait_for_text(exp: Exporter, text: str, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in exp.stderr():
            return True
        time.sleep(0.1)
    return False
