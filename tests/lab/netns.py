"""Throwaway network-namespace topologies built from iproute2 and nftables.

Two shapes exist::

    pair():    client [to-server] ===veth=== [to-client] server
    routed():  client [to-router] ===veth=== [to-client] router [to-server] ===veth=== [to-router] server

Addresses (X, Y are picked per topology; Y is even)::

    pair     client 10.X.Y.1/24      fd00:X:Y::1/64      server 10.X.Y.2      fd00:X:Y::2
    routed   client 10.X.Y.1/24      fd00:X:Y::1/64      router 10.X.Y.2      fd00:X:Y::2
             router 10.X.(Y+1).1/24  fd00:X:(Y+1)::1/64  server 10.X.(Y+1).2  fd00:X:(Y+1)::2

X and Y are written in decimal in both families (fd00:100:8::1 belongs to 10.100.8.1) so a
human can match a v6 address to its v4 twin; decimal digits are valid hex digits.

Safety rules this module keeps:

* Only namespaces it creates are configured, and every address it configures lives inside them.
  No namespace gets a default route: each one can reach only the lab's own subnets, so nothing
  can leak to a real network even if a test connects to a wrong address.
* Everything is removed on ``close()``: by the context manager (also when the body raises), by a
  ``weakref.finalize`` hook (garbage collection and interpreter exit), and, for processes that
  died without cleaning up (SIGKILL), by a sweep at the next topology creation
  (:func:`cleanup_leftovers`). Ownership is proven with ``flock`` locks under ``LOCK_DIR`` that
  the kernel drops when the owning process dies, so the sweep never touches a live topology of a
  concurrent test process.

Needs root (creating namespaces needs CAP_SYS_ADMIN, configuring them CAP_NET_ADMIN), iproute2
(``ip``, ``nstat``) and, for routed topologies and firewall rules, nftables (``nft``).

Nothing here imports BCC: the lab must be usable by tests that never load a BPF program.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import os
import random
import re
import secrets
import shutil
import subprocess
import threading
import time
import weakref
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

from tracer.kernel.nsenter import setns_net

__all__ = [
    "LabError",
    "Host",
    "Topology",
    "in_netns",
    "cleanup_leftovers",
    "NETNS_DIR",
    "LOCK_DIR",
    "DEFAULT_PREFIX",
]

NETNS_DIR = "/run/netns"  # where `ip netns add` bind-mounts named namespaces
LOCK_DIR = "/run/tcptrace-explain-lab"  # ownership locks; /run is tmpfs, like /run/netns
DEFAULT_PREFIX = "tte"

# Namespace names are "<prefix>-<role>". The prefix must be usable in a file name and an nft
# identifier; 32 characters keeps every derived name short.
_PREFIX_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_]{0,31}$")
_ROLES = ("client", "router", "server")

# CLONE_NEWNET from <sched.h>; Python 3.11 has no os.setns (3.12 does).

# X in [100, 199] and even Y in [0, 254] give 12 800 slots, far more than concurrent tests need;
# a routed topology uses 10.X.Y.0/24 and 10.X.(Y+1).0/24, so Y is even to keep slots disjoint.
_SLOT_X = range(100, 200)
_SLOT_Y = range(0, 256, 2)

# Interface indexes per role. Without them both ends of a veth would get ifindex 2 (the first
# free index in a new namespace), and the kernel treats a carrier change of a device whose
# peer ifindex equals its own as non-urgent (linkwatch_urgent_event), batching it for up to a
# second. IPv6 waits for that operstate change before joining the solicited-node groups, so
# the first IPv6 connection of a fresh lab stalled for about 1 s of neighbour discovery.
# Distinct indexes make the event urgent: IPv6 works as soon as the build returns.
_IFINDEX = {"client": 10, "router": 20, "server": 30}

# How long close() gives processes started with popen() to exit after SIGTERM before SIGKILL.
_TERM_GRACE_S = 1.0


class LabError(Exception):
    """The lab could not be built, used or removed; the message says what to do about it."""


def v6(text: str) -> str:
    """An IPv6 address as the kernel and Python print it (fd00:100:0::1 is fd00:100::1)."""
    return str(ipaddress.IPv6Address(text))


@dataclass(frozen=True)
class Host:
    """One end of a link: a network namespace and its addresses on that link.

    The router of a routed topology has two links, so it appears as two Hosts with the same
    ``name``: ``Topology.router`` (its client-side addresses, the client's gateway) and
    ``Topology.router_server_side`` (its server-side addresses, the source the server sees
    when the router masquerades).
    """

    name: str  # netns name, as listed by `ip netns list`
    v4: str  # its IPv4 address on its link, without prefix length
    v6: str  # its IPv6 address on its link, without prefix length
    ifname: str = ""  # the interface carrying v4/v6 inside the namespace


# ---------------------------------------------------------------------------------------------
# Environment checks


def _require_root() -> None:
    if os.geteuid() != 0:
        raise LabError(
            "network-namespace labs need root (CAP_SYS_ADMIN to create namespaces, "
            "CAP_NET_ADMIN to configure them); run as root, e.g. `sudo .venv/bin/python -m pytest`"
        )


def _tool(name: str, package: str) -> str:
    # A venv or sudo may drop the sbin directories from PATH, where Debian puts ip and nft.
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin:/usr/bin:/bin")
    if path is None:
        raise LabError(
            f"`{name}` not found; install it with `apt-get install -y {package}` "
            "(scripts/setup.sh installs everything the lab needs)"
        )
    return path


def _check_name(name: str) -> None:
    # A netns name becomes a path under /run/netns; refuse anything that could escape it.
    if not name or "/" in name or name in (".", ".."):
        raise LabError(f"invalid network namespace name {name!r}")


# ---------------------------------------------------------------------------------------------
# Entering a namespace from Python


def _setns(fd: int) -> None:
    setns_net(fd)


@contextlib.contextmanager
def in_netns(name: str | Host) -> Iterator[None]:
    """Run the body with the CURRENT THREAD inside network namespace ``name``.

    Network-namespace membership is per thread (``setns(2)`` changes only the calling thread),
    so other threads of the process, including the one running pytest, stay where they are.
    Sockets keep the namespace they were created in for their whole life: a socket created in
    the body still lives in ``name`` after the block, and can be used from any thread. Files
    under /proc/sys/net opened in the body address ``name``'s sysctls; /proc/self/net follows
    the thread-group leader and does NOT (use /proc/thread-self/net). Threads started and
    processes forked in the body start in ``name`` (Linux copies the creator's namespaces).

    The thread switches back to its original namespace on exit, even if the body raises: an fd
    to /proc/self/task/<tid>/ns/net is opened first because the original namespace usually has
    no name to open it by again.
    """
    ns = name.name if isinstance(name, Host) else name
    _check_name(ns)
    tid = threading.get_native_id()
    orig = os.open(f"/proc/self/task/{tid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        try:
            target = os.open(os.path.join(NETNS_DIR, ns), os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise LabError(f"no network namespace {ns!r} ({NETNS_DIR}/{ns} is missing)") from None
        try:
            _setns(target)
        except PermissionError:
            raise LabError(f"setns into {ns!r} refused: entering a namespace needs root") from None
        finally:
            os.close(target)
        try:
            yield
        finally:
            try:
                _setns(orig)
            except OSError as e:
                # Extremely unlikely, but a thread silently left in a lab namespace would make
                # every later socket of that thread go to the wrong place, so fail loudly.
                raise LabError(f"could not switch thread {tid} back to its namespace: {e}") from e
    finally:
        os.close(orig)


def _write_sysctls(ns: str, values: dict[str, int]) -> None:
    # Writing /proc/sys/net from a thread inside the namespace sets that namespace's value (the
    # sysctl tree is looked up through the writing task's namespace); one setns pair is much
    # cheaper than forking `ip netns exec ... sysctl`.
    with in_netns(ns):
        for key, value in values.items():
            path = "/proc/sys/" + key.replace(".", "/")
            try:
                with open(path, "w") as f:
                    f.write(f"{value}\n")
            except OSError as e:
                raise LabError(f"cannot set {key}={value} in {ns}: {e}") from e


# ---------------------------------------------------------------------------------------------
# Ownership locks


def _claim(path: str) -> int | None:
    """Take an exclusive flock on ``path`` (creating it); None if another holder has it.

    The kernel drops the lock when the holder dies, which is what lets a later run tell a
    leftover from a live topology. Holders unlink the file before releasing, so after locking
    we check that ``path`` still names the inode we locked, otherwise we locked a file that was
    being retired and must retry.
    """
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except FileNotFoundError:
            # LOCK_DIR was removed by a closing topology between our makedirs and open.
            os.makedirs(LOCK_DIR, mode=0o700, exist_ok=True)
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)


def _release(path: str, fd: int) -> None:
    # Unlink while still holding the lock (see _claim), then let the close drop it.
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    os.close(fd)


def _prefix_lock(prefix: str) -> str:
    return os.path.join(LOCK_DIR, f"prefix-{prefix}.lock")


def _slot_lock(x: int, y: int) -> str:
    return os.path.join(LOCK_DIR, f"slot-{x}-{y}.lock")


def _remove_lock_dir() -> None:
    # Best effort: only succeeds when no other topology holds a lock (ENOTEMPTY otherwise).
    with contextlib.suppress(OSError):
        os.rmdir(LOCK_DIR)


def _existing_names(prefix: str) -> list[str]:
    try:
        present = set(os.listdir(NETNS_DIR))
    except FileNotFoundError:
        return []
    return [f"{prefix}-{role}" for role in _ROLES if f"{prefix}-{role}" in present]


def _delete_netns(ip: str, names: Sequence[str]) -> list[str]:
    """Delete named namespaces with one `ip -batch`; returns the names that still exist."""
    if names:
        # -force: keep going past a name that is already gone.
        subprocess.run(
            [ip, "-force", "-batch", "-"],
            input="".join(f"netns del {n}\n" for n in names),
            text=True,
            capture_output=True,
            check=False,
        )
    return [n for n in names if os.path.lexists(os.path.join(NETNS_DIR, n))]


def cleanup_leftovers() -> list[str]:
    """Remove namespaces and locks left by lab processes that died without closing.

    Safe to call while other processes run labs: a topology is only removed when nobody holds
    its prefix lock, i.e. its owner is dead. Returns the namespace names removed. Runs
    automatically when a topology is created.
    """
    _require_root()
    try:
        entries = os.listdir(LOCK_DIR)
    except FileNotFoundError:
        return []
    ip = _tool("ip", "iproute2")
    removed: list[str] = []
    for entry in sorted(entries):
        if not entry.endswith(".lock"):
            continue
        path = os.path.join(LOCK_DIR, entry)
        fd = _claim(path)
        if fd is None:
            continue  # held: its owner is alive
        try:
            if entry.startswith("prefix-"):
                prefix = entry[len("prefix-") : -len(".lock")]
                names = _existing_names(prefix) if _PREFIX_RE.match(prefix) else []
                left = _delete_netns(ip, names)
                removed.extend(n for n in names if n not in left)
                if left:
                    os.close(fd)  # keep the file so a later sweep retries
                    continue
        except BaseException:
            os.close(fd)
            raise
        # A dead owner's slot lock, or a prefix lock whose namespaces are gone: retire it.
        _release(path, fd)
    _remove_lock_dir()
    return removed


# ---------------------------------------------------------------------------------------------
# Topology


@dataclass
class _Resources:
    """Everything a topology must undo, kept apart from it so a finalizer can run without it."""

    ip: str
    prefix: str
    owns_prefix: bool = False  # True once we hold the prefix lock; only then are names ours
    locks: list[tuple[str, int]] = field(default_factory=list)
    procs: list[subprocess.Popen] = field(default_factory=list)


def _teardown(res: _Resources) -> list[str]:
    """Undo everything; never raises (it also runs from a finalizer). Returns names left."""
    # Processes first: a namespace lives on while a process is inside it, and so do its veths.
    for p in res.procs:
        if p.poll() is None:
            with contextlib.suppress(OSError):
                p.terminate()
    for p in res.procs:
        try:
            p.wait(timeout=_TERM_GRACE_S)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(OSError):
                p.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(timeout=_TERM_GRACE_S)
    res.procs.clear()
    # While we hold the prefix lock every "<prefix>-<role>" name is ours, including ones a
    # failed build left half made, so delete by name rather than by what we remember creating.
    # Without the lock (the prefix belongs to a live lab) we created nothing and touch nothing.
    left: list[str] = []
    if res.owns_prefix:
        try:
            left = _delete_netns(res.ip, _existing_names(res.prefix))
        except OSError:
            left = _existing_names(res.prefix)
    if not left:
        for path, fd in reversed(res.locks):
            with contextlib.suppress(OSError):
                _release(path, fd)
        res.locks.clear()
        _remove_lock_dir()
    return left


class Topology:
    """A throwaway set of network namespaces; build with :meth:`pair` or :meth:`routed`.

    Use as a context manager (or call :meth:`close`): leaving the block removes every
    namespace, interface, rule and lock it created, also when the block raised. Processes
    started with :meth:`popen` are terminated then. Sockets created with :func:`in_netns` keep
    a namespace's kernel object alive until they are closed, but its name disappears at close.
    """

    client: Host
    server: Host
    router: Host | None
    router_server_side: Host | None

    def __init__(self, *, _res: _Resources, _slot: tuple[int, int]) -> None:
        # Private: pair()/routed() claim the locks and build before handing out an instance.
        self._res = _res
        self.prefix = _res.prefix
        self.slot = _slot
        self.router = None
        self.router_server_side = None
        self._nft_path: str | None = None
        self._closed = False
        self._finalizer = weakref.finalize(self, _teardown, _res)

    # -- construction --------------------------------------------------------------------------

    @classmethod
    def _start(cls, prefix: str | None) -> Topology:
        _require_root()
        ip = _tool("ip", "iproute2")
        if prefix is None:
            prefix = DEFAULT_PREFIX + secrets.token_hex(3)  # e.g. "tte3fa9c1"
        if not _PREFIX_RE.match(prefix):
            raise LabError(
                f"invalid prefix {prefix!r}: use 1-32 letters, digits or '_', starting with a "
                "letter or digit"
            )
        # Sweep what dead processes left before adding more; cheap (a small directory listing).
        cleanup_leftovers()
        os.makedirs(LOCK_DIR, mode=0o700, exist_ok=True)
        res = _Resources(ip=ip, prefix=prefix)
        try:
            path = _prefix_lock(prefix)
            fd = _claim(path)
            # A concurrent cleanup_leftovers() holds a fresh lock file for an instant while it
            # checks it; only a lock held for a while means a live lab owns this prefix.
            for _ in range(20):
                if fd is not None:
                    break
                time.sleep(0.05)
                fd = _claim(path)
            if fd is None:
                raise LabError(
                    f"prefix {prefix!r} is in use by a running lab; pick another or omit it"
                )
            res.locks.append((path, fd))
            res.owns_prefix = True
            # Names with our prefix that exist while we hold its lock are leftovers of a dead
            # owner: remove them so `ip netns add` does not fail on them.
            left = _delete_netns(ip, _existing_names(prefix))
            if left:
                raise LabError(f"cannot remove leftover namespaces {left}; remove them by hand")
            slot = cls._claim_slot(res)
        except BaseException:
            _teardown(res)
            raise
        return cls(_res=res, _slot=slot)

    @staticmethod
    def _claim_slot(res: _Resources) -> tuple[int, int]:
        # Random order so concurrent processes rarely contend for the same lock file.
        slots = [(x, y) for x in _SLOT_X for y in _SLOT_Y]
        random.shuffle(slots)
        for x, y in slots:
            path = _slot_lock(x, y)
            fd = _claim(path)
            if fd is not None:
                res.locks.append((path, fd))
                return x, y
        raise LabError("no free address slot: too many labs are running at once")

    def _ns(self, role: str) -> str:
        return f"{self.prefix}-{role}"

    def _ip_batch(self, lines: Sequence[str], netns: str | None = None) -> None:
        # One `ip` process per namespace keeps creation fast; `ip -batch` cannot switch
        # namespaces per line, but `ip -n NS -batch -` runs a whole batch inside one.
        argv = [self._res.ip] + (["-n", netns] if netns else []) + ["-batch", "-"]
        proc = subprocess.run(
            argv, input="".join(line + "\n" for line in lines), text=True,
            capture_output=True, check=False,
        )
        if proc.returncode != 0:
            where = f" in {netns}" if netns else ""
            raise LabError(f"ip -batch failed{where}: {proc.stderr.strip()}")

    @classmethod
    def pair(cls, prefix: str | None = None) -> Topology:
        """client <-> server on one veth: 10.X.Y.1/.2 /24 and fd00:X:Y::1/::2 /64."""
        topo = cls._start(prefix)
        try:
            topo._build_pair()
        except BaseException:
            topo.close(_raise=False)
            raise
        return topo

    def _build_pair(self) -> None:
        x, y = self.slot
        c, s = self._ns("client"), self._ns("server")
        self.client = Host(c, f"10.{x}.{y}.1", v6(f"fd00:{x}:{y}::1"), "to-server")
        self.server = Host(s, f"10.{x}.{y}.2", v6(f"fd00:{x}:{y}::2"), "to-client")
        self._ip_batch([
            f"netns add {c}",
            f"netns add {s}",
            # Both ends are created directly inside their namespaces, so these interface names
            # never exist in the host's namespace and cannot clash with another lab's.
            # Explicit, different ifindexes: see _IFINDEX.
            f"link add to-server index {_IFINDEX['client']} netns {c} type veth "
            f"peer name to-client index {_IFINDEX['server']} netns {s}",
        ])
        for h in (self.client, self.server):
            _write_sysctls(h.name, _no_dad(h))  # while the link is still down: see _no_dad
            self._ip_batch(_host_lines(h), h.name)

    @classmethod
    def routed(
        cls,
        prefix: str | None = None,
        nat: bool = True,
        conntrack_established_timeout: int | None = None,
        nat_ports: tuple[int, int] | None = None,
    ) -> Topology:
        """client --veth-- router --veth-- server; the router forwards IPv4 and IPv6.

        With ``nat`` (default) the router behaves like a cloud NAT gateway: it masquerades
        connections leaving towards the server (the server sees ``router_server_side``'s
        address and has no route back to the client), refuses to pick up connections it has no
        state for (``nf_conntrack_tcp_loose=0``) and answers packets of flows it does not know
        (``ct state invalid``) with a TCP reset. ``conntrack_established_timeout`` (seconds)
        shortens how long it remembers an idle established flow. ``nat_ports`` (low, high)
        makes it translate the client's ports too, into that range, picked at random per flow
        (masquerade alone keeps a source port that is free). Without ``nat`` it is a plain
        stateless router and the server routes back to the client through it.
        """
        if nat_ports is not None and not (nat and 1024 <= nat_ports[0] <= nat_ports[1] <= 65535):
            raise LabError("nat_ports needs nat=True and a range within 1024-65535")
        if conntrack_established_timeout is not None:
            if not nat:
                raise LabError("conntrack_established_timeout needs nat=True (only the NAT "
                               "router tracks connections)")
            if conntrack_established_timeout < 1:
                raise LabError("conntrack_established_timeout must be >= 1 second")
        topo = cls._start(prefix)
        try:
            if nat:
                topo._nft()  # fail before building anything when nftables is missing
            topo._build_routed(nat, conntrack_established_timeout, nat_ports)
        except BaseException:
            topo.close(_raise=False)
            raise
        return topo

    def _build_routed(self, nat: bool, ct_timeout: int | None, nat_ports: tuple[int, int] | None = None) -> None:
        x, y = self.slot
        y2 = y + 1
        c, r, s = self._ns("client"), self._ns("router"), self._ns("server")
        self.client = Host(c, f"10.{x}.{y}.1", v6(f"fd00:{x}:{y}::1"), "to-router")
        self.router = Host(r, f"10.{x}.{y}.2", v6(f"fd00:{x}:{y}::2"), "to-client")
        self.router_server_side = Host(r, f"10.{x}.{y2}.1", v6(f"fd00:{x}:{y2}::1"), "to-server")
        self.server = Host(s, f"10.{x}.{y2}.2", v6(f"fd00:{x}:{y2}::2"), "to-router")
        self._ip_batch([
            f"netns add {c}",
            f"netns add {r}",
            f"netns add {s}",
            f"link add to-router index {_IFINDEX['client']} netns {c} type veth "
            f"peer name to-client index {_IFINDEX['router']} netns {r}",
            f"link add to-router index {_IFINDEX['server']} netns {s} type veth "
            f"peer name to-server index {_IFINDEX['router'] + 1} netns {r}",
        ])
        _write_sysctls(c, _no_dad(self.client))  # while the links are still down: see _no_dad
        _write_sysctls(s, _no_dad(self.server))
        sysctls = {
            **_no_dad(self.router),
            **_no_dad(self.router_server_side),
            "net.ipv4.ip_forward": 1,
            "net.ipv6.conf.all.forwarding": 1,
        }
        if nat:
            # Per-namespace on this kernel (struct nf_tcp_net), so the host is unaffected.
            # loose=0: a mid-stream packet of a flow conntrack forgot is not adopted as a new
            # ESTABLISHED flow but left untracked, which `ct state invalid` matches.
            sysctls["net.netfilter.nf_conntrack_tcp_loose"] = 0
            if ct_timeout is not None:
                sysctls["net.netfilter.nf_conntrack_tcp_timeout_established"] = ct_timeout
        # Set before the ruleset exists: conntrack only starts tracking in this namespace once a
        # rule needs it, so no flow is ever seen with the permissive defaults.
        _write_sysctls(r, sysctls)

        # Routes name only the lab's own subnets (never a default route): see module docstring.
        self._ip_batch(_host_lines(self.client) + [
            f"route add 10.{x}.{y2}.0/24 via {self.router.v4}",
            f"route add fd00:{x}:{y2}::/64 via {self.router.v6}",
        ], c)
        self._ip_batch(
            _host_lines(self.router) + _host_lines(self.router_server_side, lo=False), r
        )
        server_lines = _host_lines(self.server)
        if not nat:
            server_lines += [
                f"route add 10.{x}.{y}.0/24 via {self.router_server_side.v4}",
                f"route add fd00:{x}:{y}::/64 via {self.router_server_side.v6}",
            ]
        self._ip_batch(server_lines, s)
        if nat:
            rules = _NAT_RULESET
            if nat_ports:
                # nft maps ports only on rules that match the transport protocol.
                rules = rules.replace('oifname "to-server" masquerade', (
                    f'oifname "to-server" meta l4proto tcp masquerade to :{nat_ports[0]}-{nat_ports[1]} random\n'
                    '        oifname "to-server" masquerade'))
            self.nft(self.router, rules)

    # -- use -----------------------------------------------------------------------------------

    @property
    def hosts(self) -> tuple[Host, ...]:
        """client, [router, router_server_side,] server."""
        mid = (self.router, self.router_server_side) if self.router else ()
        return (self.client, *[h for h in mid if h is not None], self.server)

    @property
    def namespaces(self) -> tuple[str, ...]:
        """The namespace names of this topology, in client, [router,] server order."""
        return tuple(dict.fromkeys(h.name for h in self.hosts))

    def _check(self, host: Host) -> None:
        # The lab may only touch namespaces it created (see module docstring).
        if self._closed:
            raise LabError("topology is closed")
        if host.name not in self.namespaces:
            raise LabError(f"{host.name!r} is not a namespace of this topology")

    def _nft(self) -> str:
        if self._nft_path is None:
            self._nft_path = _tool("nft", "nftables")
        return self._nft_path

    def _exec(self, host: Host, argv: Sequence[str]) -> list[str]:
        self._check(host)
        return [self._res.ip, "netns", "exec", host.name, *argv]

    def run(self, host: Host, argv: list[str], **kw: Any) -> subprocess.CompletedProcess:
        """``subprocess.run`` of ``argv`` inside ``host``'s namespace (``ip netns exec``)."""
        return subprocess.run(self._exec(host, argv), **kw)

    def popen(self, host: Host, argv: list[str], **kw: Any) -> subprocess.Popen:
        """``subprocess.Popen`` inside ``host``'s namespace; terminated by :meth:`close`.

        ``ip netns exec`` execs the command in place, so the Popen's pid is the command's.
        """
        proc = subprocess.Popen(self._exec(host, argv), **kw)
        self._res.procs.append(proc)
        return proc

    def nft(self, host: Host, script: str) -> None:
        """Load an nftables script (``nft -f -``) in ``host``'s namespace."""
        proc = self.run(host, [self._nft(), "-f", "-"], input=script, text=True,
                        capture_output=True, check=False)
        if proc.returncode != 0:
            raise LabError(f"nft failed in {host.name}: {proc.stderr.strip()}")

    def nstat(self, host: Host) -> dict[str, int]:
        """Absolute SNMP/netstat counters of ``host``'s namespace, e.g. ``TcpOutRsts``.

        ``-a`` ignores and ``-s`` leaves alone nstat's history file, which is shared by all
        namespaces (/tmp/.nstat.u<uid>), so concurrent calls cannot disturb each other.
        """
        proc = self.run(host, [_tool("nstat", "iproute2"), "-azsj"], text=True,
                        capture_output=True, check=False)
        if proc.returncode != 0:
            raise LabError(f"nstat failed in {host.name}: {proc.stderr.strip()}")
        try:
            data = json.loads(proc.stdout)["kernel"]
            return {str(k): int(v) for k, v in data.items()}
        except (ValueError, KeyError, TypeError) as e:
            raise LabError(f"cannot parse nstat output in {host.name}: {e}") from e

    def netns_inode(self, host: Host) -> int:
        """Inode of /run/netns/<name>: the kernel's ``net->ns.inum`` (``net:[inode]``)."""
        self._check(host)
        # /run/netns/<name> is a bind mount of the nsfs inode, so stat sees the namespace itself.
        return os.stat(os.path.join(NETNS_DIR, host.name)).st_ino

    def blackhole(self, host: Host, peer: Host) -> None:
        """Make ``host`` silently drop all IP traffic to and from ``peer``'s addresses.

        Drops happen at the raw priority of prerouting and output, before conntrack and NAT,
        so the blackholed packets leave no state behind, like a cut cable that still shows
        link: ARP/neighbour discovery keep working. Only ``peer.v4`` and ``peer.v6`` are
        dropped: pass ``router`` and ``router_server_side`` to cut both router addresses.
        Local senders in ``host`` get EPERM from a dropped send (TCP hides it and retransmits).
        """
        self._check(host)
        self._check(peer)
        table = "blackhole_" + re.sub(r"[^A-Za-z0-9_]", "_", f"{peer.name}_{peer.ifname}")
        v4, v6 = peer.v4, peer.v6
        # "add; delete; define" makes a repeated call replace the table instead of failing.
        self.nft(host, f"""
table inet {table}
delete table inet {table}
table inet {table} {{
    chain pre {{
        type filter hook prerouting priority raw; policy accept;
        ip saddr {v4} drop
        ip daddr {v4} drop
        ip6 saddr {v6} drop
        ip6 daddr {v6} drop
    }}
    chain out {{
        type filter hook output priority raw; policy accept;
        ip daddr {v4} drop
        ip6 daddr {v6} drop
    }}
}}
""")

    # -- teardown ------------------------------------------------------------------------------

    def close(self, *, _raise: bool = True) -> None:
        """Remove everything this topology created. Idempotent."""
        if self._closed:
            return
        self._closed = True
        left = self._finalizer()  # runs _teardown once and detaches the finalizer
        if left and _raise:
            raise LabError(
                f"could not remove namespaces {left}; `ip netns del` them by hand "
                "(the next lab creation also retries)"
            )

    def __enter__(self) -> Topology:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        hosts = ", ".join(f"{h.name}[{h.ifname}] {h.v4} {h.v6}" for h in self.hosts)
        return f"<Topology {self.prefix} {state}: {hosts}>"


def _no_dad(h: Host) -> dict[str, int]:
    """Sysctl turning off duplicate address detection on ``h``'s interface.

    Set before the link goes up, when the kernel generates the fe80:: link-local address. With
    DAD that address stays "tentative" for a second or two, and a router forwarding a packet
    whose source is not its own sends neighbour solicitations only from its link-local
    address: the first IPv6 connection through a fresh un-NATed router stalled ~2 s in SYN
    retransmits. No other host can claim an address on a veth we just created.
    """
    return {f"net.ipv6.conf.{h.ifname}.accept_dad": 0}


def _host_lines(h: Host, lo: bool = True) -> list[str]:
    """`ip -batch` lines configuring ``h``'s link inside its namespace."""
    plen6 = 64
    lines = ["link set lo up"] if lo else []  # loopback is down in a new namespace
    return lines + [
        f"addr add {h.v4}/24 dev {h.ifname}",
        # nodad: skip duplicate address detection (about 1 s in "tentative" state during which
        # the address cannot be bound); no other host can own it on a veth we just created.
        f"addr add {h.v6}/{plen6} dev {h.ifname} nodad",
        f"link set {h.ifname} up",
    ]


# The NAT gateway's ruleset. `meta l4proto tcp` is needed because nft only accepts
# `reject with tcp reset` on rules that match TCP.
_NAT_RULESET = """
table inet tte_nat {
    chain forward {
        type filter hook forward priority filter; policy accept;
        # A packet of a flow conntrack does not know (forgotten after the idle timeout, and not
        # adopted because nf_conntrack_tcp_loose=0) is answered with a reset, like a cloud NAT.
        meta l4proto tcp ct state invalid reject with tcp reset
    }
    chain postrouting {
        type nat hook postrouting priority srcnat; policy accept;
        oifname "to-server" masquerade
    }
}
"""
