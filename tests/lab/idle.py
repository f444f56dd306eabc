"""Real servers that close idle connections (redis-server `timeout`, nginx `keepalive_timeout`,
HAProxy `timeout http-keep-alive`, all 2 s) and real clients that reuse the connection after
3.5 s: a python3 script, a Java program compiled here with Debian's OpenJDK, redis-cli (C,
hiredis). Used by tests/lab/scenarios.py and tests/scenario/test_names.py.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import textwrap
from typing import Callable

from tests.lab.netns import Topology
from tests.lab.servers import nginx_conf, ok_server, wait_listening

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
            fh.write(nginx_conf(d, f"keepalive_timeout {TIMEOUT_S}s;\n" + ok_server(f"{host}:{port}")))
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
        # IPv4 sockets, as the other lab clients use (a default JVM opens IPv6 sockets, v4-mapped)
        return ["java", "-Djava.net.preferIPv4Stack=true", "-cp", d, "Reuse", host, str(port), str(IDLE_S)]
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
