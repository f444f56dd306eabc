"""What the rules may look at: one case, built from a correlated incident or from a storm bucket.

A Case is the explainer's whole view of one event: the kernel's facts (state, reason, errno,
flags, addresses, owner) and the timings derived from the socket's timestamps. Rules
(tracer/explain/rules.py) are conditions over a Case and nothing else, so every input (a full
record with its partners, or a storm bucket that kept only its key) takes the same path. What
an input does not know stays None (a timing) or False/empty (a flag), and the rules that need it
do not match.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

from tracer.model.frozen import evolve, fast_init
from tracer.explain import procinfo
from tracer.explain.correlate import Incident
from tracer.explain.explanation import endpoint
from tracer.model.record import AF_INET, AF_INET6, FLAG_BITS, Record, RecordType


@fast_init
@dataclass(frozen=True)
class Case:
    event: RecordType
    state: Optional[str] = None
    kernel_reason: Optional[str] = None   # the reason the kernel gave (sent resets), as named
    reason: Optional[str] = None          # the reason the rules use: the kernel's, or inferred
    reason_inferred: bool = False
    errno: Optional[str] = None           # what the application sees, when known
    flags: frozenset[str] = frozenset()   # TTE_F_* names (tracer.model.record.FLAG_BITS)
    pid: int = 0
    comm: str = ""
    thread: str = ""
    owner_source: str = "none"
    cur_pid: int = 0                      # the task the kernel ran the event in
    cur_comm: str = ""
    family: int = AF_INET
    netns: int = 0
    laddr: str = ""
    lport: int = 0
    raddr: str = ""
    rport: int = 0
    syn: bool = False                     # the reset answered a connection attempt (SYN)
    synack: bool = False                  # the reset answered a server's answer to one (SYN-ACK)
    unread_bytes: int = 0
    ino: int = 0
    retrans: int = 0
    srtt_us: int = 0
    # Never reached ESTABLISHED; None when the input cannot tell.
    never_established: Optional[bool] = None
    ts_ns: int = 0
    wall_ns: int = 0
    idle_s: Optional[float] = None
    age_s: Optional[float] = None
    trigger: bool = False                 # a received reset answered this side's own send
    since_fin_ns: Optional[int] = None    # the peer's FIN, before the event
    since_close_ns: Optional[int] = None  # this side's close, before the event
    since_destroy_ns: Optional[int] = None  # the socket's destruction, before the event
    since_birth_ns: Optional[int] = None  # the connect/listen/accept that made the socket, before the event
    gap_before_fin_ns: Optional[int] = None    # the peer's FIN minus the last data before it
    gap_before_close_ns: Optional[int] = None  # our close minus our last data before it
    self_received: bool = False           # this host ran tcp_reset() on its own socket first
    peer: Optional[Record] = None         # the other end's reset record, when on this host
    # pid is 0: the holder of this accepted socket is not known; the listener's owner, then its
    # child processes (tracer/explain/owners.py)
    owner_candidates: tuple[int, ...] = ()
    peer_local: Optional[bool] = None     # the remote address belongs to this host
    runtime: Optional[str] = None         # the owner's runtime (tracer/explain/procinfo.py), when known

    def flag(self, name: str) -> bool:
        return name in self.flags

    @property
    def role(self) -> Optional[str]:
        """Which side this host's socket is: "server" (it accepted, listens, or was connected to)
        or "client" (it connected); None when the event does not say."""
        if self.flag("accepted") or self.state == "LISTEN" or (self.flag("no_socket") and self.syn):
            return "server"
        if self.flag("connected") or self.state == "SYN_SENT":
            return "client"
        return None

    @property
    def service(self) -> str:
        """The listening side's address:port. Without a role, the lower port is taken as the
        service's (ephemeral ports are allocated from the top of the range)."""
        side = self.role
        if side is None:
            side = "server" if self.lport and (not self.rport or self.lport < self.rport) else "client"
        return endpoint(self.laddr, self.lport) if side == "server" else endpoint(self.raddr, self.rport)

    @property
    def family_name(self) -> str:
        return {AF_INET: "ipv4", AF_INET6: "ipv6"}.get(self.family, f"af{self.family}")

    @property
    def display_reason(self) -> Optional[str]:
        """The JSON `reason`: the kernel's name, `inferred:NAME`, or the peer's for a received reset."""
        if self.event is RecordType.RESET_SENT:
            return f"inferred:{self.reason}" if self.reason_inferred else self.reason
        if self.event is RecordType.RESET_RECEIVED and self.peer is not None and self.peer.reason:
            return self.peer.reason
        return None


def _latest(*ts: Optional[int], until: Optional[int] = None) -> Optional[int]:
    return max((t for t in ts if t and (until is None or t <= until)), default=None)


RuntimeOf = Callable[[int, str], Optional[str]]


def from_incident(inc: Incident, runtime_of: Optional[RuntimeOf] = None) -> Case:
    """The case of a correlated incident (reason still unresolved: see tracer.explain.reasons)."""
    r = inc.primary
    if not r.pid and inc.self_received is not None and inc.self_received.pid:
        # This host's own tcp_reset() on the socket saw the owner the reset record lacks.
        s = inc.self_received
        r = evolve(r, pid=s.pid, comm=s.comm, thread=s.thread, owner_source=s.owner_source)
    before_fin = _latest(r.fin_last_send_ns, r.fin_last_recv_ns)
    gap_fin = r.fin_ns - before_fin if r.fin_ns and before_fin and before_fin <= r.fin_ns else None
    before_close = _latest(r.last_recv_ns, r.last_send_ns, until=r.close_ns) if r.close_ns else None
    gap_close = r.close_ns - before_close if r.close_ns and before_close else None
    # Never established: the table saw no ESTABLISHED, or (socket unknown to the table) the
    # kernel never set the receive timestamp it sets at establishment.
    never = (not r.estab_ns) if r.flag("sock_known") else r.last_recv_ns is None
    idle_ns = r.idle_ns
    return Case(
        event=r.type, state=r.state, kernel_reason=r.reason, errno=inc.errno,
        flags=_flag_names(r.flags_raw),
        pid=r.pid, comm=r.comm, thread=r.thread, owner_source=r.owner_source,
        cur_pid=r.cur_pid, cur_comm=r.cur_comm, family=r.family, netns=r.netns,
        laddr=r.laddr, lport=r.lport, raddr=r.raddr, rport=r.rport,
        syn=r.segment_was_syn, synack=r.segment_was_synack, unread_bytes=r.unread_bytes, ino=r.ino, retrans=r.retrans,
        srtt_us=r.srtt_us, never_established=never, ts_ns=r.ts_ns, wall_ns=r.wall_ns,
        idle_s=None if idle_ns is None else idle_ns / 1e9, age_s=r.age_s,
        trigger=(r.last_send_ns is not None and idle_ns is not None
                 and r.ts_ns - r.last_send_ns < idle_ns),
        since_fin_ns=r.ts_ns - r.fin_ns if r.fin_ns else None,
        since_close_ns=r.ts_ns - r.close_ns if r.close_ns else None,
        since_destroy_ns=r.ts_ns - r.destroy_ns if r.destroy_ns else None,
        since_birth_ns=r.ts_ns - r.birth_ns if r.birth_ns and r.birth_ns <= r.ts_ns else None,
        gap_before_fin_ns=gap_fin, gap_before_close_ns=gap_close,
        self_received=inc.self_received is not None, peer=inc.peer, peer_local=inc.peer_local,
        owner_candidates=r.owner_candidates,
        runtime=(runtime_of or _comm_runtime)(r.pid, r.comm) if r.pid else None,
    )


_FLAG_NAMES: dict[int, frozenset[str]] = {}


def _flag_names(raw: int) -> frozenset[str]:
    """The TTE_F_* names set in raw (a few dozen combinations occur: kept once each)."""
    names = _FLAG_NAMES.get(raw)
    if names is None:
        names = frozenset(n for n, bit in FLAG_BITS.items() if raw & bit)
        if len(_FLAG_NAMES) < 4096:
            _FLAG_NAMES[raw] = names
    return names


def _comm_runtime(pid: int, comm: str) -> Optional[str]:
    return procinfo.runtime_from_comm(comm)
