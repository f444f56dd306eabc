"""Two hosts, two tracers, one NAT gateway between them: the lab for merged recordings.

    client namespace --veth-- router (nftables masquerade, ports translated, conntrack
                              forgets idle flows after 2 s, answers unknown flows with a reset)
                      --veth-- server namespace (a real nginx)

One tracer process records the client's namespace, another the server's (tests/lab/tracers.py),
each to its own file, as one tracer per host would. Three connections, one server port each:

  nat_idle (8080)      the client reuses its keep-alive connection after 4 s idle; the router
                       has forgotten the flow and answers with a reset; nginx's own close of
                       the connection (keepalive_timeout 6 s) meets the same fate.
  server_reset (8081)  nginx closes the idle connection after its 1 s keepalive_timeout; the
                       client reuses it 1.5 s after it was last used and nginx's TIME_WAIT
                       socket answers with a reset: the server really reset it.
  reject (8082)        a `reject with tcp reset` rule for port 8082 appears on the router; the
                       client's next request is answered by the router.

The ground truth it returns: what each client call raised, the client's own port and the port
nginx saw (its access log), and the server namespace's reset counter (nstat TcpOutRsts).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from typing import Optional

from tests.lab.driver import PeerProc, spawn_peer
from tests.lab.netns import Topology
from tests.lab.servers import nginx_conf, ok_server
from tests.lab.tracers import TracerProc

NAT_TIMEOUT_S = 2
NAT_PORTS = (20000, 29999)
PORTS = {"nat_idle": 8080, "server_reset": 8081, "reject": 8082}


REJECT_RULE = ("table inet tte_reject {\n chain forward {\n  type filter hook forward priority -10;\n"
               "  tcp dport 8082 reject with tcp reset\n }\n}\n")


@dataclass
class Run:
    client_recording: str
    server_recording: str
    client_port: dict[str, int] = field(default_factory=dict)     # the client's own ports
    nginx_saw: dict[str, tuple[str, int]] = field(default_factory=dict)  # (address, port) nginx logged
    errors: dict[str, list[str]] = field(default_factory=dict)    # what the client's calls raised
    server_out_rsts: int = 0                                       # nstat TcpOutRsts, server namespace
    server_addr: str = ""
    router_addr: str = ""


def _wait_port(topo: Topology, port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = topo.run(topo.server, ["ss", "-Hltn", f"sport = :{port}"], capture_output=True, text=True).stdout
        if out.strip():
            return
        time.sleep(0.05)
    raise RuntimeError(f"nginx does not listen on port {port}")


def _errors(pp: PeerProc) -> list[str]:
    return [f"{d['op']}:{d['error']}" for d in pp.lines if "error" in d]


def _client(topo: Topology, name: str, script: str) -> PeerProc:
    return spawn_peer(topo, topo.client, name, script)


def run(outdir: str, keep_nginx_log: Optional[str] = None) -> Run:
    """Build the lab, record both hosts through the three connections, return the truth."""
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    d = tempfile.mkdtemp(prefix="tte-nginx-")
    os.chmod(d, 0o755)   # nginx's workers run as nobody
    try:
        with Topology.routed(nat=True, conntrack_established_timeout=NAT_TIMEOUT_S, nat_ports=NAT_PORTS) as topo:
            res = Run(os.path.join(outdir, "client.jsonl"), os.path.join(outdir, "server.jsonl"),
                      server_addr=topo.server.v4, router_addr=topo.router_server_side.v4)  # type: ignore[union-attr]
            conf = os.path.join(d, "nginx.conf")
            with open(conf, "w", encoding="utf-8") as fh:
                fh.write(nginx_conf(d, "\n".join(ok_server(str(port), f"keepalive_timeout {ka}s; ")
                                             for port, ka in ((8080, 6), (8081, 1), (8082, 60))),
                            access_log=f"log_format ports '$server_port $remote_addr $remote_port';\n"
                                       f"    access_log {d}/access.log ports;"))
            tracers = [TracerProc(topo, topo.client, res.client_recording, os.path.join(outdir, "client.ready")),
                       TracerProc(topo, topo.server, res.server_recording, os.path.join(outdir, "server.ready"),
                                  states=True)]
            srv = None
            try:
                for t in tracers:
                    t.wait_ready()
                srv = topo.popen(topo.server, [nginx, "-p", d, "-c", conf, "-e", os.path.join(d, "error.log")],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                for port in PORTS.values():
                    _wait_port(topo, port)
                rsts_before = topo.nstat(topo.server).get("TcpOutRsts", 0)
                _acts(topo, res)
                time.sleep(0.5)
                res.server_out_rsts = topo.nstat(topo.server).get("TcpOutRsts", 0) - rsts_before
            finally:
                for t in tracers:
                    t.stop()
                if srv is not None:
                    srv.terminate()
                    srv.wait(timeout=10)
            _read_access_log(os.path.join(d, "access.log"), res)
            if keep_nginx_log:
                shutil.copy(os.path.join(d, "access.log"), keep_nginx_log)
        return res
    finally:
        shutil.rmtree(d, ignore_errors=True)


def _acts(topo: Topology, res: Run) -> None:
    host = topo.server.v4
    # nat_idle: 4 s idle > the router's 2 s; nginx closes at 6 s, after the client's reset.
    cl = _client(topo, "tte-scheduler", f"connect host={host} port=8080;http_get;http_response;sleep s=4;"
                                        "http_get;http_response timeout=5")
    cl.finish(timeout=30)
    res.client_port["nat_idle"] = cl.result("connect")[0]["local"][1]
    res.errors["nat_idle"] = _errors(cl)
    time.sleep(2.5)   # nginx's keepalive_timeout fires; its FIN meets the forgotten flow
    # server_reset: nginx closes after 1 s idle; the reuse at 1.5 s meets its TIME_WAIT socket.
    cl = _client(topo, "tte-pool", f"connect host={host} port=8081;http_get;http_response;sleep s=1.5;"
                                   "http_get;http_response timeout=2")
    cl.finish(timeout=30)
    res.client_port["server_reset"] = cl.result("connect")[0]["local"][1]
    res.errors["server_reset"] = _errors(cl)
    # reject: the rule appears while the connection is idle for a moment.
    cl = _client(topo, "tte-client", f"connect host={host} port=8082;http_get;http_response;wait;"
                                     "http_get;http_response timeout=5")
    cl.next("wait")
    assert topo.router is not None
    topo.nft(topo.router, REJECT_RULE)
    try:
        cl.release()
        cl.finish(timeout=30)
    finally:
        topo.nft(topo.router, "delete table inet tte_reject\n")
    res.client_port["reject"] = cl.result("connect")[0]["local"][1]
    res.errors["reject"] = _errors(cl)


def _read_access_log(path: str, res: Run) -> None:
    by_port = {v: k for k, v in PORTS.items()}
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            server_port, addr, port = line.split()
            name = by_port.get(int(server_port))
            if name is not None and name not in res.nginx_saw:
                res.nginx_saw[name] = (addr, int(port))
