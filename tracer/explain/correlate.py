"""Join records into incidents: what one reset or abort was, seen from every side we can see.

Rules (kernel facts from shared/reference/kernel-tcp-resets.md):
- An error report (abort record) on the same socket within JOIN_WINDOW_NS of a reset is that
  reset's errno (tcp_reset() reports in the same call chain; an active reset is traced after it
  is transmitted, so the error may come first).
- A reset sent and a reset received on the same socket within the window is the kernel killing
  its own socket before answering (TCP_ABORT_ON_DATA): one local incident, not two.
- A reset sent in one namespace and received in another with the swapped 4-tuple is one
  connection seen from both ends: the two incidents are linked (both ends on this host).
- An abort with no reset is its own incident (timeouts, ICMP errors, socket destroy).

- A record whose owner is only inherited from its listener (an accepted socket of a pre-forked
  server) waits until its holder is known (tracer/explain/owners.py), and so do the records of
  its socket and of its other end on this host, so the incident and its peer link stay whole.

Memory is bounded: pending records wait SETTLE_NS for their partners and are then released;
the index used for cross-end joins keeps at most PEER_INDEX_MAX recent resets for PEER_WINDOW_NS.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable, Iterable, Optional

from tracer.model.frozen import fast_init
from tracer.explain.owners import OwnerResolver
from tracer.model.record import ERRNOS_WITH, Record, RecordType

JOIN_WINDOW_NS = 5_000_000
# Records of one reset are produced within microseconds of each other and the consumer drains
# the whole ring buffer at each poll, so 10 ms after its timestamp a record's partners are in.
SETTLE_NS = 10_000_000
PEER_WINDOW_NS = 1_000_000_000
# A received reset whose sender is this host (both ends here) waits up to this long after its
# timestamp for the sender's record, which the kernel traces microseconds later but the reader
# may drain later (a full batch, a preempted sender): without it, a reset this host's own peer
# sent would read as a middlebox's. Only such resets wait: a remote peer's never comes.
PEER_HOLD_NS = 100_000_000
PEER_INDEX_MAX = 4096
LATE_MAX = 4096
# A release holds back a settled record whose socket has a newer, unsettled record within
# JOIN_WINDOW_NS (they may belong together); past this many pending records it holds nothing.
PENDING_MAX = 20_000


@fast_init
@dataclass(frozen=True)
class Incident:
    primary: Record                     # the reset (sent or received) or the abort
    error: Optional[Record] = None      # the errno the application sees, on the same socket
    self_received: Optional[Record] = None  # this host's own tcp_reset() before answering
    peer: Optional[Record] = None       # the other end's reset record, when on this host
    peer_local: Optional[bool] = None   # the remote address belongs to this host

    @property
    def event(self) -> str:
        return self.primary.type.value

    @property
    def errno(self) -> Optional[str]:
        if self.error is not None:
            return self.error.errno
        return self.primary.errno

    @property
    def ts_ns(self) -> int:
        return self.primary.ts_ns


def _same_peer(a: Record, b: Record) -> bool:
    """Records of one socket describe one connection: same remote end where both know it (a
    socket address is reused by the next connection within microseconds under churn)."""
    if a.rport and b.rport and (a.raddr, a.rport) != (b.raddr, b.rport):
        return False
    return True


def _swapped(r: Record) -> tuple[object, ...]:
    return (r.raddr, r.rport, r.laddr, r.lport)


def _plain(r: Record) -> tuple[object, ...]:
    return (r.laddr, r.lport, r.raddr, r.rport)


class Correlator:
    """Feed records in arrival order; take incidents out once their partners had time to arrive."""

    def __init__(self, peer_is_local: Optional[Callable[[str], Optional[bool]]] = None,
                 settle_ns: int = SETTLE_NS, owners: Optional[OwnerResolver] = None) -> None:
        self._pending: list[Record] = []
        self._recent: "OrderedDict[tuple[object, ...], Record]" = OrderedDict()
        self._peer_is_local = peer_is_local or (lambda addr: None)
        self.settle_ns = settle_ns
        # Without a /proc lookup (replay), holders come only from the recording's OWNER records.
        self.owners = owners if owners is not None else OwnerResolver()
        self.dropped_states = 0
        self.peers_evicted = 0       # resets dropped from the peer index for PEER_INDEX_MAX
        self._tail_ns: Optional[int] = None   # the last read's end, until the next release
        # Resets released without their errno, by socket: an errno record of theirs that comes
        # later (its reader ran late) is theirs, not an incident of its own (LATE_MAX of them).
        self._no_errno: "OrderedDict[tuple[int, int], Record]" = OrderedDict()
        self.late_errors = 0          # errno records joined to a reset already released
        self.no_errno_evicted = 0     # resets dropped from that index while still of use

    def feed(self, records: Iterable[Record]) -> None:
        batch = records if isinstance(records, list) else list(records)
        # The records of one reset are traced microseconds apart, but a read can end between
        # them (the reader took what was committed, or a full batch): the last records read
        # (within JOIN_WINDOW_NS of the last one) are not released by the release that follows
        # this read, whatever their age, so a partner just behind them comes in first. Without
        # it a reader running late split a refused connect into two connection_refused.
        self._tail_ns = min(batch[-1].ts_ns, max(r.ts_ns for r in batch)) if batch else None
        for r in batch:
            if r.type is RecordType.STATE:
                self.dropped_states += 1
                continue
            if r.type is RecordType.OWNER:
                self.owners.note(r)
                continue
            self._pending.append(r)

    def release(self, now_ns: Optional[int] = None) -> list[Incident]:
        """Incidents whose records are older than the settle time (all of them if now_ns is None)."""
        if not self._pending:
            return []
        self._pending.sort(key=lambda r: r.ts_ns)
        ready: list[Record]
        self._pending, owner_wait = self.owners.settle(self._pending, now_ns)
        if now_ns is None:
            ready, self._pending = self._pending, []
        else:
            cut = now_ns - self.settle_ns
            if self._tail_ns is not None:      # for one release: the next read brings the rest
                cut = min(cut, self._tail_ns - JOIN_WINDOW_NS)
                self._tail_ns = None
            # Unsettled records per socket address; a settled record waits only for one that
            # could be its partner: same address, same remote end, within the join window (the
            # kernel reuses a freed socket's address for the next connection within ms). A
            # record waiting for its holder counts as unsettled, and so holds its other end.
            unsettled: dict[tuple[object, ...], list[Record]] = {}
            held_ends: set[tuple[object, ...]] = set()
            for i, r in enumerate(self._pending):
                if r.ts_ns > cut or i in owner_wait:
                    unsettled.setdefault((r.netns, r.skaddr), []).append(r)
                if i in owner_wait and r.rport:
                    held_ends.add(_plain(r))
            hold = len(self._pending) <= PENDING_MAX
            ready = []
            keep: list[Record] = []
            for i, r in enumerate(self._pending):
                wait = r.ts_ns > cut or i in owner_wait or (hold and (any(
                    abs(o.ts_ns - r.ts_ns) <= JOIN_WINDOW_NS and _same_peer(o, r)
                    for o in unsettled.get((r.netns, r.skaddr), ()) if o is not r)
                    or bool(r.rport and _swapped(r) in held_ends)))
                (keep if wait else ready).append(r)
            if hold:
                ready = self._hold_for_senders(ready, keep, now_ns)
            if not ready:
                return []
            self._pending = keep
        return self._group(ready)

    def _hold_for_senders(self, ready: list[Record], keep: list[Record], now_ns: int) -> list[Record]:
        """`ready` less the received resets from a local peer whose sender's record is neither
        released before nor ready now, within PEER_HOLD_NS of their time, and less the records
        of their sockets within the join window (their errno): those go to `keep`."""
        received = RecordType.RESET_RECEIVED
        if not any(r.type is received for r in ready):
            return ready
        sent_ready = [r for r in ready if r.type is RecordType.RESET_SENT]
        sent_now = {_plain(r) for r in sent_ready if r.rport}
        # This host's own reset on the same socket (TCP_ABORT_ON_DATA) is the incident: no wait.
        own = {(r.netns, r.skaddr) for r in sent_ready}
        held: dict[tuple[int, int], list[int]] = {}
        for r in ready:
            if (r.type is received and r.rport and now_ns - r.ts_ns < PEER_HOLD_NS and (r.netns, r.skaddr) not in own
                    and _swapped(r) not in sent_now and self._sender(r) is None and self._peer_is_local(r.raddr)):
                held.setdefault((r.netns, r.skaddr), []).append(r.ts_ns)
        if not held:
            return ready
        out = []
        for r in ready:
            near = held.get((r.netns, r.skaddr))
            if near is not None and any(abs(r.ts_ns - t) <= JOIN_WINDOW_NS for t in near):
                keep.append(r)
            else:
                out.append(r)
        return out

    def _sender(self, r: Record) -> Optional[Record]:
        """The other end's sent reset already released, within PEER_WINDOW_NS of r."""
        other = self._recent.get((RecordType.RESET_SENT, _swapped(r)))
        return other if other is not None and abs(other.ts_ns - r.ts_ns) <= PEER_WINDOW_NS else None

    def _group(self, records: list[Record]) -> list[Incident]:
        used: set[int] = set()
        # Per socket, indices in time order (records arrive sorted): a partner is found by
        # scanning neighbours within the join window, not the whole list, because under a storm
        # the kernel reuses one socket address for many connections within a batch.
        by_sock: dict[tuple[object, ...], list[int]] = {}
        pos: dict[int, int] = {}
        for i, r in enumerate(records):
            lst = by_sock.setdefault((r.netns, r.skaddr), [])
            pos[i] = len(lst)
            lst.append(i)

        def partner(i: int, rtype: RecordType) -> Optional[int]:
            r = records[i]
            lst = by_sock[(r.netns, r.skaddr)]
            p = pos[i]
            best = None
            for step in (1, -1):
                q = p + step
                while 0 <= q < len(lst):
                    j = lst[q]
                    if abs(records[j].ts_ns - r.ts_ns) > JOIN_WINDOW_NS:
                        break
                    if j not in used and records[j].type is rtype and _same_peer(records[j], r):
                        if best is None or abs(records[j].ts_ns - r.ts_ns) < abs(records[best].ts_ns - r.ts_ns):
                            best = j
                        break
                    q += step
            return best

        # Sent resets first: they may absorb this host's own receive (ABORT_ON_DATA). Each
        # incident's records are found first and the incident built once, when it is linked.
        sent = RecordType.RESET_SENT
        order = [i for i, r in enumerate(records) if r.type is sent] + [
            i for i, r in enumerate(records) if r.type is not sent]
        found: list[tuple[Record, Optional[Record], Optional[Record]]] = []
        for i in order:
            if i in used:
                continue
            r = records[i]
            if r.type is RecordType.ABORT:
                continue  # handled after resets had the chance to claim it
            used.add(i)
            received = None
            if r.type is RecordType.RESET_SENT and not r.flag("timewait") and not r.flag("no_socket"):
                j = partner(i, RecordType.RESET_RECEIVED)
                if j is not None:
                    used.add(j)
                    received = records[j]
            k = partner(i, RecordType.ABORT)
            error = None
            if k is not None:
                used.add(k)
                error = records[k]
            found.append((r, error, received))
        for i, r in enumerate(records):
            if i not in used and r.type is RecordType.ABORT:
                used.add(i)
                if self._late_error(r):
                    continue
                found.append((r, None, None))
        for r, error, _ in found:
            if error is None and r.type is not RecordType.ABORT:
                self._wait_errno(r)
        found.sort(key=lambda x: x[0].ts_ns)
        # Index the whole batch before linking, so both ends of a connection find each other
        # whichever was traced first (an active reset is traced after the peer received it).
        for r, _, _ in found:
            self._remember(r)
        return [self._linked(*x) for x in found]

    def _wait_errno(self, r: Record) -> None:
        key = (r.netns, r.skaddr)
        self._no_errno[key] = r
        self._no_errno.move_to_end(key)
        while self._no_errno:
            oldest = next(iter(self._no_errno.values()))
            if r.ts_ns - oldest.ts_ns > JOIN_WINDOW_NS:
                self._no_errno.popitem(last=False)        # past the window: of no more use
            elif len(self._no_errno) > LATE_MAX:
                self._no_errno.popitem(last=False)
                self.no_errno_evicted += 1
            else:
                break

    def _late_error(self, r: Record) -> bool:
        """r, an errno record, belongs to a reset on its socket released just before it."""
        key = (r.netns, r.skaddr)
        reset = self._no_errno.get(key)
        if reset is None or abs(reset.ts_ns - r.ts_ns) > JOIN_WINDOW_NS or not _same_peer(reset, r):
            return False
        if r.errno not in ERRNOS_WITH.get(reset.type, ()):
            # not an error that reset gives (its address reused by a connect to the same
            # peer, failing with EHOSTUNREACH): an incident of its own
            return False
        del self._no_errno[key]
        self.late_errors += 1
        return True

    def _remember(self, r: Record) -> None:
        if r.type is RecordType.ABORT or not r.rport:
            return
        key = (r.type, _plain(r))
        self._recent[key] = r
        self._recent.move_to_end(key)
        while len(self._recent) > PEER_INDEX_MAX:
            old = self._recent.popitem(last=False)[1]
            if r.ts_ns - old.ts_ns <= PEER_WINDOW_NS:   # still of use: a link may be missed
                self.peers_evicted += 1

    def _linked(self, r: Record, error: Optional[Record], received: Optional[Record]) -> Incident:
        """The incident, with the other end's reset (swapped 4-tuple, the other direction) seen
        recently."""
        if r.type is RecordType.ABORT or not r.rport:
            return Incident(r, error, received)
        want = RecordType.RESET_RECEIVED if r.type is RecordType.RESET_SENT else RecordType.RESET_SENT
        other = self._recent.get((want, _swapped(r)))
        if other is not None and abs(other.ts_ns - r.ts_ns) > PEER_WINDOW_NS:
            other = None
        local = True if other is not None else self._peer_is_local(r.raddr)
        return Incident(r, error, received, other, local)
