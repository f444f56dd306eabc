"""Which explained events a run shows: the bcc-style filters of the command line, as data.

One EventFilter serves the live run, the replay and the exporter, so `replay rec.jsonl --pid 42`
shows the events `--pid 42` would have shown live (replay of an unfiltered recording can judge
them better: it still has the other processes' records, the peer's reset among them). Filters the kernel can apply (pids, ports, network
namespaces, process names; see tracer/kernel/program.py) also go into the program through
tracer/cli.py; this object then judges every explained event again in user space, which is
idempotent for those and the only place for the others (the remote address). Judging after
the explainer, not before, keeps correlation whole: a partner record outside the filter still
informs the verdict of one inside it.

Within one option the values are alternatives (``--netns a --netns b``: either); different
options must all hold (``--pid 42 --netns a``: process 42's connections in namespace a).

The owner's uid and cgroup are not in the records: they are read from /proc/<pid> when the
owner's record arrives (tracer/kernel/attribution.py) and written into recordings, and the
event carries them. An event whose owner is unknown (a reset sent with no socket, a process
gone before it could be read, a recording without those tables) does not match --uid or
--cgroup: the filter keeps only what it knows to be wanted.
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


def cgroup_match(wanted: tuple[str, ...], path: Optional[str]) -> bool:
    """path is one of the wanted cgroups or below one ("/" wants every known cgroup)."""
    if not wanted:
        return True
    if path is None:
        return False
    return any(w == "/" or path == w or path.startswith(w + "/") for w in wanted)


FAMILIES = {"ipv4": 2, "ipv6": 10}    # the JSON's family names, and AF_INET / AF_INET6


@dataclass(frozen=True)
class EventFilter:
    pids: frozenset[int] = frozenset()
    comms: frozenset[str] = frozenset()
    ports: frozenset[int] = frozenset()      # local or remote
    lports: frozenset[int] = frozenset()     # local port
    rports: frozenset[int] = frozenset()     # remote port
    netns: frozenset[int] = frozenset()      # namespace inodes
    remotes: tuple[Network, ...] = ()
    families: frozenset[str] = frozenset()   # "ipv4", "ipv6" (-4, -6): the socket's family
    uids: frozenset[int] = frozenset()       # the owner's effective uid
    cgroups: tuple[str, ...] = ()            # cgroup v2 paths ("/system.slice/nginx.service"), with subtrees
    verdicts: frozenset[str] = frozenset()   # verdict codes
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
        return bool(self.pids or self.comms or self.ports or self.lports or self.rports or self.netns
                    or self.remotes or self.families or self.uids or self.cgroups or self.verdicts)

    @property
    def kernel_ports(self) -> frozenset[int]:
        """Ports the kernel may pre-filter on: it matches either side, so every port of
        --port, --lport and --rport; user space then checks which side each one is on."""
        return self.ports | self.lports | self.rports

    @property
    def judges_storm_explained(self) -> bool:
        """Options a storm bucket is judged on through its explanation (verdict, uid, cgroup)."""
        return bool(self.verdicts or self.uids or self.cgroups)

    def _owner_match(self, e: Explanation) -> bool:
        if self.uids and e.uid not in self.uids:
            return False
        workload = e.cgroup.workload if e.cgroup is not None else None
        return cgroup_match(self.cgroups, workload.cgroup if workload is not None else None)

    def match(self, e: Explanation) -> bool:
        if not self.pid_match(e.pid, e.owner_candidates):
            return False
        if self.comms and (e.comm or "") not in self.comms:
            return False
        if self.ports and e.lport not in self.ports and e.rport not in self.ports:
            return False
        if self.lports and e.lport not in self.lports:
            return False
        if self.rports and e.rport not in self.rports:
            return False
        if self.families and e.family not in self.families:
            return False
        if self.verdicts and e.verdict.value not in self.verdicts:
            return False
        if self.netns and e.netns not in self.netns:
            return False
        if not self._owner_match(e):
            return False
        return remote_match(self.remotes, e.raddr)

    def match_storm(self, b: "StormCount", explained: Optional[Explanation] = None) -> bool:
        """A storm bucket keeps only some fields (owner, remote address, service port, family):
        it is judged on those, and on `explained` (the bucket's explanation with its owner's
        uid and cgroup: tracer/live.py) for --verdict, --uid and --cgroup. The service port is
        the local one for a server and the remote one for a client; the bucket does not say
        which, so a port option of either side admits it. A bucket cannot be judged by
        namespace (the kernel does not key it by one): in live runs the kernel's namespace
        filter already applied."""
        if not self.pid_match(b.pid):
            return False
        if self.comms and b.comm not in self.comms:
            return False
        if self.kernel_ports and b.port not in self.kernel_ports:
            return False
        if self.families and b.family not in {FAMILIES[f] for f in self.families}:
            return False
        if self.judges_storm_explained:
            if explained is None:
                return False
            if self.verdicts and explained.verdict.value not in self.verdicts:
                return False
            if not self._owner_match(explained):
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
        if self.uids:
            parts.append(nums("uid", self.uids))
        if self.cgroups:
            parts.append("cgroup " + ",".join(self.cgroups))
        if self.ports:
            parts.append(nums("port", self.ports))
        if self.lports:
            parts.append(nums("local port", self.lports))
        if self.rports:
            parts.append(nums("remote port", self.rports))
        if self.families:
            parts.append(" and ".join(f.replace("ip", "IP") for f in sorted(self.families)) + " only")
        if self.netns:
            parts.append("netns " + ",".join(names.get(n, str(n)) for n in sorted(self.netns)))
        if self.remotes:
            parts.append("remote " + ",".join(str(n) for n in self.remotes))
        if self.verdicts:
            parts.append("verdict " + ",".join(sorted(self.verdicts)))
        return "; ".join(parts) if parts else "every process"


NO_FILTER = EventFilter()
