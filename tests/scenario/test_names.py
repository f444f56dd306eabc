"""Explanations that name the right thing, with real servers and clients in lab namespaces.

- redis-server (timeout 2), nginx (keepalive_timeout 2s) and HAProxy (timeout http-keep-alive
  2s) close an idle connection; the client reuses it after 3.5 s. The explanation names that
  server and its setting and no other product, the inferred range contains 2 s, every advice
  number is below the range, and the client's own runtime comes first: Python (a python3
  script), Java (javac-compiled here, Debian's OpenJDK 17) and C (redis-cli, hiredis).
- A real nftables `reject with tcp reset` on the lab router, during traffic and after 1 s idle:
  middlebox_reset; an idle longer than the NAT's conntrack timeout: stale_after_idle.
- A burst of 3,000 per-request connections: the insight's time_wait within 5 % of
  `ss -tan state time-wait` at the same moment.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import textwrap
import time
from typing import Callable

import pytest

from tests.lab import runner
from tests.lab.netns import Topology
from tests.lab.scenarios import BY_NAME, Scenario
from tests.lab.servers import wait_listening
from tests.unit.test_software import assert_advice_below, products_in
from tracer.explain import bounds, insights, knowledge, software
from tracer.model.verdicts import Verdict

pytestmark = pytest.mark.scenario

TIMEOUT_S = 2
IDLE_S = 3.5

PY_CLIENT = textwrap.dedent("""
    import socket, sys, time
    host, port, kind = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    req = b"PING\\r\\n" if kind == "redis" else b"GET / HTTP/1.1\\r\\nHost: lab\\r\\n\\r\\n"
    s = socket.create_connection((host, port), timeout=5)
    s.sendall(req)
    s.recv(4096)
    time.sleep(float(sys.argv[4]))
    s.sendall(req)
    try:
        print("read", len(s.recv(4096)))
    except OSError as e:
        print("read", type(e).__name__)
    time.sleep(0.2)
    try:
        s.sendall(req)
        print("write ok")
    except OSError as e:
        print("write", type(e).__name__)
""")

JAVA_CLIENT = textwrap.dedent("""
    import java.io.*;
    import java.net.*;
    public class Reuse {
        public static void main(String[] a) throws Exception {
            Socket s = new Socket(a[0], Integer.parseInt(a[1]));
            OutputStream o = s.getOutputStream();
            InputStream in = s.getInputStream();
            byte[] req = "GET / HTTP/1.1\\r\\nHost: lab\\r\\n\\r\\n".getBytes();
            byte[] b = new byte[4096];
            o.write(req); o.flush(); in.read(b);
            Thread.sleep((long) (Double.parseDouble(a[2]) * 1000));
            o.write(req); o.flush();
            try { System.out.println("read " + in.read(b)); } catch (IOException e) { System.out.println("read " + e); }
            Thread.sleep(200);
            try { o.write(req); o.flush(); System.out.println("write ok"); }
            catch (IOException e) { System.out.println("write " + e); }
        }
    }
""")

HAPROXY_CONF = """
global
    maxconn 64
defaults
    mode http
    timeout connect 1s
    timeout client 30s
    timeout server 30s
    timeout http-keep-alive {timeout}s
frontend lab
    bind {host}:{port}
    http-request return status 200 content-type text/plain string ok
"""

NGINX_CONF = """
daemon off;
master_process on;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    keepalive_timeout {timeout}s;
    server {{
        listen {host}:{port};
        location / {{ return 200 "ok\\n"; }}
    }}
}}
"""


def start_server(topo: Topology, kind: str, d: str) -> tuple[subprocess.Popen, int]:
    host = topo.server.v4
    if kind == "redis":
        port = 6379
        argv = ["redis-server", "--port", str(port), "--bind", host, "--timeout", str(TIMEOUT_S), "--save", "",
                "--appendonly", "no", "--dir", d, "--protected-mode", "no"]
    elif kind == "nginx":
        port = 8080
        conf = os.path.join(d, "nginx.conf")
        with open(conf, "w", encoding="utf-8") as fh:
            fh.write(NGINX_CONF.format(dir=d, timeout=TIMEOUT_S, host=host, port=port))
        argv = [shutil.which("nginx") or "/usr/sbin/nginx", "-p", d, "-c", conf, "-e", os.path.join(d, "error.log")]
    else:
        port = 8080
        conf = os.path.join(d, "haproxy.cfg")
        with open(conf, "w", encoding="utf-8") as fh:
            fh.write(HAPROXY_CONF.format(timeout=TIMEOUT_S, host=host, port=port))
        argv = [shutil.which("haproxy") or "/usr/sbin/haproxy", "-f", conf, "-db"]
    p = topo.popen(topo.server, argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_listening(topo, topo.server, port)
    return p, port


def client_argv(kind: str, client: str, d: str, host: str, port: int) -> list[str]:
    if client == "python":
        path = os.path.join(d, "client.py")
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(PY_CLIENT)
        return ["/usr/bin/python3", path, host, str(port), kind, str(IDLE_S)]
    if client == "java":
        with open(os.path.join(d, "Reuse.java"), "w", encoding="utf-8") as fh:
            fh.write(JAVA_CLIENT)
        subprocess.run(["javac", "-d", d, os.path.join(d, "Reuse.java")], check=True, timeout=120)
        return ["java", "-Xshare:auto", "-cp", d, "Reuse", host, str(port), str(IDLE_S)]
    # redis-cli: the same connection, one PING, then another after IDLE_S (hiredis, C)
    return ["redis-cli", "-h", host, "-p", str(port), "-r", "2", "-i", str(IDLE_S), "PING"]


def idle_close_act(kind: str, client: str) -> Callable[[Topology, object], dict]:
    def act(topo: Topology, spawn: object) -> dict:
        d = tempfile.mkdtemp(prefix=f"tte-{kind}-")
        os.chmod(d, 0o755)
        try:
            srv, port = start_server(topo, kind, d)
            try:
                out = topo.run(topo.client, client_argv(kind, client, d, topo.server.v4, port),
                               capture_output=True, text=True, timeout=60)
            finally:
                srv.terminate()
                srv.wait(timeout=10)
            return {"stdout": out.stdout, "stderr": out.stderr[-2000:], "rc": out.returncode}
        finally:
            shutil.rmtree(d, ignore_errors=True)
    return act


def client_reset(result: runner.RunResult):
    ino = result.netns["client"]
    found = sorted((x for x in result.explanations if x.netns == ino and x.event == "reset_received"),
                   key=lambda x: x.ts_ns)
    assert found, f"no reset received by the client: {result.truth} {[x.to_json() for x in result.explanations]}"
    return found[0]


# (server kind, its process name, the setting's words, client, runtime, the runtime's first setting)
CASES = [
    ("redis", "redis-server", "timeout", "python", "python", "redis-py"),
    ("redis", "redis-server", "timeout", "redis-cli", "hiredis", "hiredis"),
    ("nginx", "nginx", "keepalive_timeout", "java", "java", "Reactor Netty"),
    ("haproxy", "haproxy", "timeout http-keep-alive", "python", "python", "Python requests/urllib3"),
]


@pytest.mark.parametrize("kind,comm,setting,client,runtime,first", CASES,
                         ids=[f"{c[0]}-{c[3]}" for c in CASES])
def test_idle_close_names_the_server_its_setting_and_the_clients_runtime(capture, kind, comm, setting, client,
                                                                       runtime, first):
    scenario = Scenario(f"{kind}_{client}", f"{kind} idle timeout, {client} client", Topology.pair,
                        idle_close_act(kind, client), expects=())
    result = runner.run(scenario, capture)
    e = client_reset(result)
    j = e.to_json()
    assert e.verdict is Verdict.WRITE_AFTER_PEER_CLOSE, j
    srv = software.server(comm)
    assert srv is not None and e.software is not None
    assert (e.software["name"], e.software["identified"]) == (srv.product, True), j
    said = " ".join((e.explanation, *e.evidence))
    assert setting in said
    assert products_in(said) - {srv.product, comm, "Redis"} == set(), said
    # The fixes: the client runtime's own settings first, then words that name no product.
    own = len(knowledge.pool_fix(bounds.Range(1, 1), runtime, srv.protocol)) - 1
    assert own >= 1
    assert all(products_in(f) == set() for f in e.fix[own:]), e.fix
    lo, hi = e.inferred_range["peer_keepalive_timeout_s"]
    assert lo <= TIMEOUT_S <= hi, j
    assert_advice_below(e.fix, lo)
    assert e.runtime == runtime and e.fix[0].startswith(first), j
    if client == "python":
        # What the application saw is what app_sees says: EOF on read, then EPIPE on write.
        assert result.truth["stdout"].split() == ["read", "0", "write", "BrokenPipeError"], result.truth
        assert [(x["call"], x["result"]) for x in e.app_sees] == [("read", "EOF"), ("write", "EPIPE")]


def reject_act(pause_s: float) -> Callable[[Topology, object], dict]:
    """A router's nftables rule rejects the flow with a reset, `pause_s` after the last data."""
    def act(topo, spawn) -> dict:
        assert topo.router is not None
        sv = spawn(topo, topo.server, "tte-server", "listen port=8080;accept;recv;send n=10;wait")
        sv.next("listen")
        sleep = f"sleep s={pause_s};" if pause_s else ""
        cl = spawn(topo, topo.client, "tte-client", f"connect host={topo.server.v4} port=8080;send n=10;recv;wait;"
                                                    f"{sleep}send n=10;recv timeout=5")
        cl.next("wait")
        topo.nft(topo.router, "table inet tte_fw {\n chain tte_forward {\n type filter hook forward priority -10;\n"
                              f" ip daddr {topo.server.v4} tcp dport 8080 reject with tcp reset\n }}\n}}\n")
        cl.release()
        cl.finish()
        topo.nft(topo.router, "delete table inet tte_fw\n")
        sv.release()
        sv.finish()
        return {"client": [f"{d['op']}:{d['error']}" for d in cl.lines if "error" in d]}
    return act


@pytest.mark.parametrize("pause_s,words", [(0.0, "active use"), (1.0, "shorter than any real idle timeout")])
def test_a_firewall_reject_is_a_middlebox_reset_not_an_idle_timeout(capture, pause_s, words):
    scenario = Scenario(f"reject_after_{pause_s}", "router reject rule", lambda: Topology.routed(
        nat=True, conntrack_established_timeout=60), reject_act(pause_s), expects=())
    result = runner.run(scenario, capture)
    assert result.truth["client"] == ["recv:ECONNRESET"], result.truth
    e = client_reset(result)
    assert (e.verdict, e.who.value) == (Verdict.MIDDLEBOX_RESET, "middlebox"), e.to_json()
    assert abs((e.idle_s or 0) - pause_s) < 0.3
    assert any(words in x for x in e.evidence), e.evidence
    assert any("reject rules" in f for f in e.fix) and not any("evict" in f for f in e.fix)


def test_an_idle_longer_than_the_nats_conntrack_timeout_is_stale_after_idle(capture):
    result = runner.run(BY_NAME["nat_idle"], capture)
    e = client_reset(result)
    assert e.verdict is Verdict.STALE_AFTER_IDLE, e.to_json()
    lo, hi = e.inferred_range["middlebox_idle_timeout_s"]
    assert lo <= result.truth["nat_timeout_s"] <= hi < result.truth["idle_s"] + 0.5


def test_time_wait_of_a_burst_is_what_ss_counts(capture):
    n = 3000
    with Topology.pair() as topo:
        from tests.lab.driver import spawn_peer
        before = capture.capture.active_closes()
        start = time.monotonic()
        sv = spawn_peer(topo, topo.server, "tte-upstream", f"listen port=8080 backlog=1024;serve n={n}")
        sv.next("listen")
        cl = spawn_peer(topo, topo.client, "tte-burst", f"churn host={topo.server.v4} port=8080 n={n};wait")
        assert cl.next("churn", timeout=120)["n"] == n
        after = capture.capture.active_closes()
        found = insights.time_wait_pileups(before, after, time.monotonic() - start,
                                           time_wait_of=insights.proc_time_wait)
        ss = topo.run(topo.client, ["ss", "-Htan", "state", "time-wait", "dst", f"{topo.server.v4}:8080"],
                      capture_output=True, text=True, check=True).stdout
        cl.release()
        cl.finish()
        sv.finish(timeout=60)
    [ins] = [i for i in found if i.pid == cl.pid]
    counted = len(ss.splitlines())
    assert counted >= n * 0.95
    assert ins.time_wait is not None and abs(ins.time_wait - counted) <= 0.05 * counted, (ins.to_json(), counted)
    assert ins.closes == n and ins.time_wait_projected == int(ins.per_second * 60)
