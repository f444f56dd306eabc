"""Scenario tests of tests.lab.netns: real namespaces, real veths, real nftables, real TCP.

Every address used belongs to a namespace the lab creates; every wait is bounded (the longest
is the 4 s idle that lets the NAT router's conntrack forget a flow).
"""

from __future__ import annotations

import errno
import os
import select
import shutil
import socket
import subprocess
import sys
import textwrap
import threading
import time
from typing import Iterator

import pytest

from tests.lab import netns as lab
from tests.lab.netns import Host, LabError, Topology, cleanup_leftovers, in_netns

pytestmark = [
    pytest.mark.scenario,
    pytest.mark.skipif(
        os.geteuid() != 0, reason="network-namespace scenarios need root (run pytest as root)"
    ),
]

needs_nft = pytest.mark.skipif(
    shutil.which("nft", path="/usr/sbin:/sbin:/usr/bin:/bin") is None,
    reason="nftables not installed (apt-get install -y nftables, or scripts/setup.sh)",
)

FAMILIES = [pytest.param(socket.AF_INET, id="v4"), pytest.param(socket.AF_INET6, id="v6")]


def addr(host: Host, family: int) -> str:
    return host.v4 if family == socket.AF_INET else host.v6


def listen(host: Host, family: int) -> socket.socket:
    # The socket keeps the server's namespace after the block ends.
    with in_netns(host):
        s = socket.socket(family, socket.SOCK_STREAM)
        s.bind((addr(host, family), 0))
        s.listen(8)
    s.settimeout(5)
    return s


def connect(host: Host, family: int, dst: str, port: int, timeout: float = 5) -> socket.socket:
    with in_netns(host):
        c = socket.socket(family, socket.SOCK_STREAM)
    c.settimeout(timeout)
    try:
        c.connect((dst, port))
    except BaseException:
        c.close()
        raise
    return c


def established(
    client: Host, server: Host, family: int, dst: str | None = None
) -> tuple[socket.socket, socket.socket, tuple]:
    """A connected (client socket, server socket, peer address as the server sees it)."""
    with listen(server, family) as lsock:
        port = lsock.getsockname()[1]
        # The kernel completes the handshake from the backlog, so no accept thread is needed.
        c = connect(client, family, dst or addr(server, family), port)
        a, peer = lsock.accept()
    a.settimeout(5)
    return c, a, peer


def exchange(c: socket.socket, a: socket.socket) -> None:
    c.sendall(b"ping")
    assert a.recv(16) == b"ping"
    a.sendall(b"pong")
    assert c.recv(16) == b"pong"


def netns_list() -> str:
    return subprocess.run(["ip", "netns", "list"], capture_output=True, text=True,
                          check=True).stdout


def own_netns_inode() -> int:
    return os.stat(f"/proc/self/task/{threading.get_native_id()}/ns/net").st_ino


@pytest.fixture
def pair() -> Iterator[Topology]:
    with Topology.pair() as topo:
        yield topo


# ---------------------------------------------------------------------------------------------
# 1. pair


@pytest.mark.parametrize("family", FAMILIES)
def test_pair_tcp_connection(pair: Topology, family: int) -> None:
    t0 = time.monotonic()
    c, a, peer = established(pair.client, pair.server, family)
    # Usable at once, IPv6 included (no ~1 s neighbour-discovery stall on a fresh lab).
    assert time.monotonic() - t0 < 0.5
    with c, a:
        exchange(c, a)
        assert peer[0] == addr(pair.client, family)  # same link, no NAT
        assert c.getpeername()[0] == addr(pair.server, family)


def test_pair_addresses_and_names(pair: Topology) -> None:
    assert pair.router is None and pair.router_server_side is None
    assert pair.client.v4.endswith(".1") and pair.server.v4.endswith(".2")
    assert pair.client.v4.rsplit(".", 1)[0] == pair.server.v4.rsplit(".", 1)[0]
    assert pair.client.v6.endswith("::1") and pair.server.v6.endswith("::2")
    assert pair.client.name.startswith("tte") and pair.client.name.endswith("-client")
    for h in pair.hosts:
        assert len(h.ifname) <= 15
        assert h.name in netns_list()
        # Only loopback and the lab link exist; no default route anywhere.
        links = pair.run(h, ["ip", "-o", "link"], capture_output=True, text=True, check=True)
        assert sorted(line.split(":")[1].strip().split("@")[0]
                      for line in links.stdout.splitlines()) == sorted(["lo", h.ifname])
        for fam in ("-4", "-6"):
            routes = pair.run(h, ["ip", fam, "route"], capture_output=True, text=True, check=True)
            assert "default" not in routes.stdout


def test_concurrent_topologies_get_distinct_subnets() -> None:
    with Topology.pair() as a, Topology.pair() as b:
        assert a.slot != b.slot
        assert a.client.v4.rsplit(".", 1)[0] != b.client.v4.rsplit(".", 1)[0]
        assert not set(a.namespaces) & set(b.namespaces)


def test_pair_popen_server(pair: Topology) -> None:
    # A server in a separate process started with popen(); the lab terminates it on close().
    code = textwrap.dedent(f"""
        import socket, sys
        s = socket.socket(socket.AF_INET6)
        s.bind(({pair.server.v6!r}, 0))
        s.listen()
        print(s.getsockname()[1], flush=True)
        c, _ = s.accept()
        c.sendall(c.recv(16).upper())
        sys.stdin.read()  # stay alive until killed, to prove close() ends it
    """)
    proc = pair.popen(pair.server, [sys.executable, "-c", code], stdin=subprocess.PIPE,
                      stdout=subprocess.PIPE, text=True)
    ready, _, _ = select.select([proc.stdout], [], [], 10)
    assert ready, "server process did not start listening"
    port = int(proc.stdout.readline())
    with connect(pair.client, socket.AF_INET6, pair.server.v6, port) as c:
        c.sendall(b"hello")
        assert c.recv(16) == b"HELLO"
    pair.close()
    assert proc.poll() is not None  # terminated by close()
    proc.stdin.close()
    proc.stdout.close()


def test_in_netns_is_per_thread_and_restores(pair: Topology) -> None:
    before = own_netns_inode()
    seen: dict[str, int] = {}
    go = threading.Event()

    def bystander() -> None:  # started before the switch: must stay where it was
        go.wait(5)
        seen["bystander"] = own_netns_inode()

    def child() -> None:  # started inside the block: Linux copies its creator's namespaces
        seen["child"] = own_netns_inode()

    t1 = threading.Thread(target=bystander)
    t1.start()
    with in_netns(pair.client):
        inside = own_netns_inode()
        go.set()
        t1.join(5)
        t2 = threading.Thread(target=child)
        t2.start()
        t2.join(5)
    assert inside == pair.netns_inode(pair.client) != before
    assert seen == {"bystander": before, "child": inside}
    assert own_netns_inode() == before
    with pytest.raises(RuntimeError):
        with in_netns(pair.server):
            raise RuntimeError("boom")
    assert own_netns_inode() == before
    with pytest.raises(LabError, match="no network namespace"):
        with in_netns("tte-does-not-exist"):
            pass


def test_netns_inode_matches_kernel(pair: Topology) -> None:
    for h in pair.hosts:
        link = pair.run(h, ["readlink", "/proc/self/ns/net"], capture_output=True, text=True,
                        check=True).stdout.strip()
        assert link == f"net:[{pair.netns_inode(h)}]"
    assert pair.netns_inode(pair.client) != pair.netns_inode(pair.server)


def test_foreign_namespace_refused(pair: Topology) -> None:
    with pytest.raises(LabError, match="not a namespace of this topology"):
        pair.run(Host("some-other-ns", "10.0.0.1", "fd00::1"), ["true"])


# ---------------------------------------------------------------------------------------------
# 2. routed + NAT


@needs_nft
@pytest.mark.parametrize("family", FAMILIES)
def test_routed_nat_masquerades(family: int) -> None:
    fwd_key = "IpForwDatagrams" if family == socket.AF_INET else "Ip6OutForwDatagrams"
    with Topology.routed() as topo:
        assert topo.router is not None and topo.router_server_side is not None
        assert topo.router.name == topo.router_server_side.name
        before = topo.nstat(topo.router)
        t0 = time.monotonic()
        c, a, peer = established(topo.client, topo.server, family)
        assert time.monotonic() - t0 < 0.5  # no neighbour-discovery stall through the router
        with c, a:
            exchange(c, a)
            # Masquerade: the server sees the router's server-side address, not the client's.
            assert peer[0] == addr(topo.router_server_side, family)
            assert c.getpeername()[0] == addr(topo.server, family)
        after = topo.nstat(topo.router)
        assert after[fwd_key] > before[fwd_key]
        assert "TcpOutRsts" in after and "TcpExtTCPAbortOnClose" in after
        # The server has no route back to the client's subnet: only NAT makes this work.
        routes = topo.run(topo.server, ["ip", "-4", "route"], capture_output=True, text=True,
                          check=True).stdout
        assert topo.client.v4.rsplit(".", 1)[0] not in routes


@pytest.mark.parametrize("family", FAMILIES)
def test_routed_without_nat_keeps_client_address(family: int) -> None:
    with Topology.routed(nat=False) as topo:
        t0 = time.monotonic()
        c, a, peer = established(topo.client, topo.server, family)
        # Forwarded packets with a foreign source make the router solicit neighbours from its
        # link-local address; without DAD disabled that stalled the first v6 connection ~2 s.
        assert time.monotonic() - t0 < 0.5
        with c, a:
            exchange(c, a)
            assert peer[0] == addr(topo.client, family)


# ---------------------------------------------------------------------------------------------
# 3. the NAT router forgets an idle flow and resets it


def _read_sysctl(key: str) -> str:
    with open("/proc/sys/" + key.replace(".", "/")) as f:
        return f.read().strip()


@needs_nft
def test_conntrack_timeout_resets_idle_flow() -> None:
    keys = ["net.netfilter.nf_conntrack_tcp_loose",
            "net.netfilter.nf_conntrack_tcp_timeout_established"]
    host_before = {k: _read_sysctl(k) for k in keys}
    with Topology.routed(conntrack_established_timeout=2) as short, \
            Topology.routed() as control:
        values = short.run(short.router, ["sysctl", "-n", *keys], capture_output=True,
                           text=True, check=True).stdout.split()
        assert values == ["0", "2"]
        # The sysctls are per network namespace: the host's values are untouched.
        assert {k: _read_sysctl(k) for k in keys} == host_before

        flows = []
        for topo in (short, control):
            for family in (socket.AF_INET, socket.AF_INET6):
                c, a, _ = established(topo.client, topo.server, family)
                exchange(c, a)
                flows.append((topo, family, c, a))
        resets_before = short.nstat(short.client)["TcpEstabResets"]

        time.sleep(4)  # > 2 s: the short router's conntrack forgets both flows

        try:
            for topo, _family, c, a in flows:
                c.sendall(b"again")
                if topo is short:
                    # Unknown mid-stream packet -> not adopted (loose=0) -> ct state invalid ->
                    # `reject with tcp reset` from the router -> the client's socket dies.
                    with pytest.raises(ConnectionResetError) as exc:
                        c.recv(16)
                    assert exc.value.errno == errno.ECONNRESET
                    # The forgotten flow never reaches the server.
                    a.settimeout(0.3)
                    with pytest.raises(TimeoutError):
                        a.recv(16)
                else:
                    # Control: the default 5-day timeout keeps the flow alive.
                    assert a.recv(16) == b"again"
                    a.sendall(b"ok")
                    assert c.recv(16) == b"ok"
        finally:
            for _, _, c, a in flows:
                c.close()
                a.close()
        assert short.nstat(short.client)["TcpEstabResets"] == resets_before + 2


# ---------------------------------------------------------------------------------------------
# 4. blackhole


@needs_nft
def test_blackhole_drops_everything(pair: Topology) -> None:
    c, a, _ = established(pair.client, pair.server, socket.AF_INET)
    with c, a:
        exchange(c, a)
        port = a.getsockname()[1]
        pair.blackhole(pair.server, pair.client)
        pair.blackhole(pair.server, pair.client)  # idempotent: replaces, does not fail
        c.sendall(b"lost")
        c.settimeout(1)
        with pytest.raises(TimeoutError):
            c.recv(16)
    with listen(pair.server, socket.AF_INET6) as l6:
        port6 = l6.getsockname()[1]
        for family, dst, p in ((socket.AF_INET, pair.server.v4, port),
                               (socket.AF_INET6, pair.server.v6, port6)):
            t0 = time.monotonic()
            with pytest.raises(TimeoutError):
                connect(pair.client, family, dst, p, timeout=1).close()
            assert time.monotonic() - t0 < 3


def test_nft_error_carries_stderr(pair: Topology) -> None:
    if shutil.which("nft", path="/usr/sbin:/sbin:/usr/bin:/bin") is None:
        pytest.skip("nftables not installed (apt-get install -y nftables)")
    with pytest.raises(LabError, match="nft failed in .*(syntax|Error)"):
        pair.nft(pair.client, "table inet x { this is not nft }")


# ---------------------------------------------------------------------------------------------
# 5. cleanup


def _gone(names: tuple[str, ...]) -> bool:
    listed = netns_list().split()
    return not any(n in listed for n in names) and not any(
        os.path.lexists(os.path.join(lab.NETNS_DIR, n)) for n in names)


def _no_locks(prefix: str) -> bool:
    try:
        return f"prefix-{prefix}.lock" not in os.listdir(lab.LOCK_DIR)
    except FileNotFoundError:
        return True


@needs_nft
def test_close_removes_everything() -> None:
    for build in (Topology.pair, Topology.routed):
        topo = build()
        names = topo.namespaces
        assert all(n in netns_list() for n in names)
        topo.close()
        topo.close()  # idempotent
        assert _gone(names)
        assert _no_locks(topo.prefix)
        with pytest.raises(LabError, match="closed"):
            topo.run(topo.client, ["true"])


@needs_nft
def test_exception_inside_with_still_cleans_up() -> None:
    names: tuple[str, ...] = ()
    with pytest.raises(ZeroDivisionError):
        with Topology.routed() as topo:
            names = topo.namespaces
            assert len(names) == 3
            raise ZeroDivisionError  # any exception escaping the with-block
    assert names and _gone(names)


def test_leftovers_of_a_dead_process_are_swept() -> None:
    # A child builds a topology, and dies without any cleanup (os._exit skips finalizers) once
    # told to. While it lives it holds the lock, so nobody (not even a concurrent test process)
    # may sweep its namespaces.
    code = textwrap.dedent("""
        import os, sys
        from tests.lab.netns import Topology
        t = Topology.pair()
        print(t.prefix, flush=True)
        sys.stdin.readline()
        os._exit(0)
    """)
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    with subprocess.Popen([sys.executable, "-c", code], cwd=root, stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE, text=True) as child:
        try:
            ready, _, _ = select.select([child.stdout], [], [], 30)
            assert ready, "child did not build its topology"
            prefix = child.stdout.readline().strip()
            names = (f"{prefix}-client", f"{prefix}-server")
            assert all(n in netns_list() for n in names)
            cleanup_leftovers()
            assert all(n in netns_list() for n in names)  # live owner: untouched
            child.stdin.write("die\n")
            child.stdin.flush()
            assert child.wait(timeout=10) == 0
        finally:
            if child.poll() is None:
                child.kill()
    # The dead child left them behind; after a sweep they are gone. (Do not assert that this
    # call removed them: a lab created meanwhile by a concurrent test process sweeps too.)
    cleanup_leftovers()
    assert _gone(names)
    assert _no_locks(prefix)


def test_prefix_in_use_is_refused() -> None:
    with Topology.pair() as topo:
        with pytest.raises(LabError, match="in use"):
            Topology.pair(prefix=topo.prefix)
        assert all(n in netns_list() for n in topo.namespaces)  # the failed build took nothing


def test_bad_prefix_is_refused() -> None:
    with pytest.raises(LabError, match="invalid prefix"):
        Topology.pair(prefix="../etc")


def test_actionable_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lab.shutil, "which", lambda *a, **k: None)
    with pytest.raises(LabError, match="apt-get install -y iproute2"):
        Topology.pair()
    monkeypatch.undo()
    monkeypatch.setattr(lab.os, "geteuid", lambda: 1000)
    with pytest.raises(LabError, match="root"):
        Topology.pair()
