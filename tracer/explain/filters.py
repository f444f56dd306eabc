"""Which explained events a run shows: the bcc-style filters of the command line, as data.

One EventFilter serves the live run, the replay and the exporter, so `replay rec.jsonl --pid 42`
shows what `--pid 42` would have shown live. Filters the kernel can apply (pids, ports, network
namespaces, process names; see tracer/kernel/program.py) also go into the program through
tracer/cli.py; this object then judges every explained event again in user space, which is
idempotent for those and the only place for the others (the remote address). Judging after
the explainer, not before, keeps correlation whole: a partner record outside the filter still
informs the verdict of one inside it.

Within one option the values are alternatives (``--netns a --netns b``: either); different
options must all hold (``--pid 42 --netns a``: process 42's connections in namespace a).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Mapping, Optional, Union

from tracer.explain.owners import PidScope
from tracer.explain.rules import Explanation

if TYPE_CHECKING:
    from tracer.explain.storm import StormCount

Network = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]


def remote_match(nets: tuple[Network, ...], addr: str) -> bool:
    if not nets:
        return True
    try:
        a = ipaddress.ip_address(addr)
    except ValueError:
        return False
    return any(a.version == n.version and a in n for n in nets)


@dataclass(frozen=True)
class EventFilter:
    pids: frozenset[int] = frozenset()
    comms: frozenset[str] = frozenset()
    ports: frozenset[int] = frozenset()      # local or remote
    netns: frozenset[int] = frozenset()      # namespace inodes
    remotes: tuple[Network, ...] = ()
    children: bool = False                   # --children: the pids' descendants too
    # Which processes --pid/--children means now: shared with the owner resolver, which learns
    # the holders of accepted sockets (tracer/explain/owners.py).
    scope: PidScope = field(default_factory=lambda: PidScope(frozenset()), compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.scope.pids != self.pids or self.scope.children != self.children:
            object.__setattr__(self, "scope", PidScope(self.pids, self.children))

    def pid_match(self, pid: Optional[int], candidates: tuple[int, ...] = ()) -> bool:
        """A process of --pid (or of its family with --children). An event whose holder is not
        known matches when one of its candidates does: it may be ours, and it says so."""
        if not self.pids:
            return True
        if pid:
            return self.scope.wants(pid)
        return any(self.scope.wants(p) for p in candidates)

    @property
    def active(self) -> bool:
        return bool(self.pids or self.comms or self.ports or self.netns or self.remotes)

    @property
    def kernel_ports(self) -> frozenset[int]:
        """Ports the kernel may pre-filter on (local or remote)."""
        return self.ports

    def match(self, e: Explanation) -> bool:
        if not self.pid_match(e.pid, e.owner_candidates):
            return False
        if self.comms and (e.comm or "") not in self.comms:
            return False
        if self.ports and e.lport not in self.ports and e.rport not in self.ports:
            return False
        if self.netns and e.netns not in self.netns:
            return False
        return remote_match(self.remotes, e.raddr)

    def match_storm(self, b: "StormCount") -> bool:
        """A storm bucket keeps only some fields (owner, remote address, service port, family):
        it is judged on those. The service port is the local one
        for a server and the remote one for a client; the bucket does not say which, so a port
        option of either side admits it. A bucket cannot be judged by namespace (the kernel does
        not key it by one): in live runs the kernel's namespace filter already applied."""
        if not self.pid_match(b.pid):
            return False
        if self.comms and b.comm not in self.comms:
            return False
        if self.kernel_ports and b.port not in self.kernel_ports:
            return False
        return remote_match(self.remotes, b.raddr)

    def describe(self, netns_names: Optional[Mapping[int, str]] = None) -> str:
        """The filters in force, as the start banner states them."""
        names = netns_names or {}

        def nums(label: str, values: frozenset[int]) -> str:
            return f"{label} {','.join(map(str, sorted(values)))}"

        parts = []
        if self.pids:
            parts.append(nums("pid", self.pids) + (" and their children" if self.children else ""))
        if self.comms:
            parts.append("process " + ",".join(sorted(self.comms)))
        if self.ports:
            parts.append(nums("port", self.ports))
        if self.netns:
            parts.append("netns " + ",".join(names.get(n, str(n)) for n in sorted(self.netns)))
        if self.remotes:
            parts.append("remote " + ",".join(str(n) for n in self.remotes))
        return "; ".join(parts) if parts else "every process"


NO_FILTER = EventFilter()
