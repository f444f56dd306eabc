"""Pair the two ends of each connection across recordings made on different hosts.

Through NAT the addresses and ports of a connection differ between its two ends; its TCP
sequence numbers do not (Linux masquerade, SNAT and DNAT, cloud NAT gateways and load balancers
that forward packets rewrite addresses and ports only). So a connection is identified by where
its two byte streams start in sequence space:

    this side's stream:  snd_una - bytes_acked      (tcp_snd_una_update moves both together)
    the peer's stream:   rcv_nxt - bytes_received   (tcp_rcv_nxt_update moves both together)

Both stay the same for the connection's whole life, so a record of the client at its reset and
a record of the server at its close seconds later agree on them, whatever the addresses. The two
ends agree within one: the connecting side counts its SYN as acknowledged (its SYN-ACK goes
through tcp_ack() in tcp_rcv_synsent_state_process()), while the accepting side's socket is born
with snd_una past its SYN-ACK (tcp_create_openreq_child()). Two unrelated connections agree on
both 32-bit values by chance with a probability of about 2^-60.

A reset sent without a full socket (by a TIME_WAIT socket, or with no socket at all) carries the
sequence numbers of the segment it answered instead. The other end sent that segment, so its seq
lies in that end's send stream and its ack in its receive stream, near the time of the reset: the
record joins the one connection it fits, or none if several fit.

Clock skew between two hosts is estimated from paired events whose order is known, as NTP
does: the connecting side's ESTABLISHED (SYN-ACK received, ACK sent) comes one one-way delay
before the accepting side's (that ACK received), and a reset is received one one-way delay after
it is sent. Each such pair bounds the offset between the two clocks to an interval one assumed
maximum one-way delay wide (twice the smoothed RTT); the estimate is the middle of the
intersection of all of them, its uncertainty half the intersection's width.

Pure functions over decoded records: no root, no kernel.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Optional, Sequence, Union

from tracer.model.record import Record, RecordType

SEQ_SPACE = 1 << 32
TCP_ACK = 0x10
# A segment answered by a reset is matched to a connection recorded on the other host within
# this long (on clocks corrected for skew) of one of that connection's records there.
SEGMENT_WINDOW_NS = 2_000_000_000
# Without a skew estimate, the other host's clock may be off by up to this much.
UNKNOWN_SKEW_WINDOW_NS = 600_000_000_000
# How far past the last recorded position a segment may lie in its stream (data sent after
# the other host's last record of the connection).
SEGMENT_SLACK = 1 << 20
# The receipt of a reset may be traced before its send: an active reset is traced after it is
# transmitted (tcp_send_active_reset()), and on a virtual link the receiver can run first.
TRACE_LAG_NS = 1_000_000
# A packet's one-way delay is taken to be at most twice the smoothed RTT (one round trip, with
# as much again for jitter: the handshake's ACK may have been slower than the later average);
# without an RTT measurement, at most this.
DEFAULT_RTT_NS = 100_000_000


def seq_diff(a: int, b: int) -> int:
    """a - b in sequence space, as a signed 32-bit number (RFC 1982 serial arithmetic)."""
    return (a - b + (1 << 31)) % SEQ_SPACE - (1 << 31)


def origins(r: Record) -> Optional[tuple[int, int]]:
    """(start of this side's stream, start of the peer's stream), or None if the record has no
    full socket's sequence numbers, or the peer's stream has not started (SYN_SENT)."""
    if not r.flag("seq") or r.state in ("SYN_SENT", "LISTEN"):
        return None
    if not (r.snd_una or r.rcv_nxt or r.bytes_acked or r.bytes_received):
        return None  # nothing set: not a connection's numbers (the BPF side does not send these)
    return ((r.snd_una - r.bytes_acked) % SEQ_SPACE, (r.rcv_nxt - r.bytes_received) % SEQ_SPACE)


def rst_seq(r: Record) -> Optional[int]:
    """The sequence number of the reset a reset_sent record describes, when known: a reset
    answering a segment takes that segment's ack (tcp_v4_send_reset()), an active reset the
    socket's snd_nxt (tcp_acceptable_seq() in tcp_send_active_reset())."""
    if r.flag("seg_seq"):
        return r.seg_ack if r.seg_flags & TCP_ACK else None
    if r.flag("active") and r.flag("seq"):
        return r.snd_nxt
    return None


def seq_json(r: Record) -> Optional[dict[str, object]]:
    """The record's sequence numbers for the JSON contract (field "seq"): what matches it to a
    packet capture, and to the other end's recording; None when it has none."""
    out: dict[str, object] = {}
    if r.flag("seq"):
        out.update(snd_una=r.snd_una, snd_nxt=r.snd_nxt, rcv_nxt=r.rcv_nxt, bytes_acked=r.bytes_acked,
                   bytes_received=r.bytes_received)
        if r.flag("ts"):
            out.update(ts_recent=r.ts_recent, ts_echo_ms=r.ts_echo)
    if r.flag("seg_seq"):
        seg: dict[str, object] = {"seq": r.seg_seq, "ack": r.seg_ack}
        if r.flag("seg_ts"):
            seg.update(tsval=r.seg_tsval, tsecr=r.seg_tsecr)
        out["segment"] = seg
    return out or None


def _mono_to_wall(r: Record) -> int:
    return r.wall_ns - r.ts_ns


def _rtt_ns(*records: Record) -> int:
    """The largest one-way delay assumed for a packet between these records' hosts."""
    srtt = max((r.srtt_us for r in records), default=0)
    return 2 * srtt * 1000 if srtt else DEFAULT_RTT_NS


@dataclass(frozen=True)
class HostStream:
    """One host's records, as decoded from its recording."""

    label: str
    records: Sequence[Record]


@dataclass(frozen=True)
class Skew:
    """How far a host's clock is ahead of the reference host's (the first recording's)."""

    offset_ns: int
    uncertainty_ns: int
    pairs: int              # paired events the estimate rests on
    consistent: bool = True  # False: the pairs contradict each other (a clock step?)

    def correct(self, wall_ns: int) -> int:
        """A wall time read on this host, on the reference host's clock."""
        return wall_ns - self.offset_ns


@dataclass(frozen=True)
class Paired:
    """The other end of a record's connection, recorded on another host."""

    host: int                         # index of the other host
    records: tuple[Record, ...]       # that host's records of the connection, in time order
    by: str                           # "stream origins" or "segment": what paired them
    reset: Optional[Record] = None    # the other host's side of this very reset, if recorded


@dataclass(frozen=True)
class Unpaired:
    why: str


Counterpart = Union[Paired, Unpaired]


@dataclass
class _View:
    """One socket's records on one host (or one segment-based reset record)."""

    host: int
    records: list[Record] = field(default_factory=list)
    origins: Optional[tuple[int, int]] = None
    syn_seq: Optional[int] = None     # a SYN_SENT socket: its SYN's sequence number

    def extent(self, side: int) -> int:
        """How far the stream (0: this side's, 1: the peer's) reaches past its start."""
        assert self.origins is not None
        start = self.origins[side]
        return max(seq_diff(r.snd_nxt if side == 0 else r.rcv_nxt, start) for r in self.records)


class _Groups:
    """Union-find over views: a group is one connection seen from every host that recorded it."""

    def __init__(self) -> None:
        self.parent: list[int] = []

    def add(self) -> int:
        self.parent.append(len(self.parent))
        return len(self.parent) - 1

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, a: int, b: int) -> None:
        self.parent[self.find(a)] = self.find(b)


class Pairing:
    """Every host's records grouped into connections across hosts, and the clocks' skew."""

    def __init__(self, hosts: Sequence[HostStream]) -> None:
        self.hosts = list(hosts)
        # Each host's clock against host 0's; None where no paired event relates them (yet).
        self.skew: list[Optional[Skew]] = [Skew(0, 0, 0) if h == 0 else None for h in range(len(self.hosts))]
        self._views: list[_View] = []
        self._view_of: dict[tuple[str, int, int, int], int] = {}  # Record.ident -> view index
        self._groups = _Groups()
        self.ambiguous: set[int] = set()       # views that fit several connections
        self._build_views()
        self._has_seq = [any(r.flag("seq") or r.flag("seg_seq") for r in h.records) for h in self.hosts]
        self._join_by_origins()
        self._estimate_skew()
        self._join_segments()
        self._members = self._connections()
        self._estimate_skew()                   # resets answered without a socket pair too

    # -- building ------------------------------------------------------------------------
    def _new_view(self, view: _View) -> int:
        self._views.append(view)
        return self._groups.add()

    def _build_views(self) -> None:
        for h, stream in enumerate(self.hosts):
            by_key: dict[tuple[object, ...], int] = {}
            for r in stream.records:
                o = origins(r)
                if o is not None:
                    key: Optional[tuple[object, ...]] = ("o", r.netns, o)
                elif r.flag("seq") and r.state == "SYN_SENT":
                    key = ("syn", r.netns, r.snd_una)
                else:
                    key = None
                if key is not None:
                    if key not in by_key:
                        by_key[key] = self._new_view(_View(h, origins=o, syn_seq=None if o else r.snd_una))
                    v = by_key[key]
                elif r.flag("seg_seq"):
                    v = self._new_view(_View(h))   # joined in _join_segments
                else:
                    continue
                self._views[v].records.append(r)
                self._view_of[r.ident] = v
        for view in self._views:
            view.records.sort(key=lambda r: r.ts_ns)

    def _join_by_origins(self) -> None:
        index: dict[tuple[int, int], list[int]] = {}
        for i, v in enumerate(self._views):
            if v.origins is not None:
                index.setdefault(v.origins, []).append(i)
        for i, v in enumerate(self._views):
            if v.origins is None:
                continue
            mine, theirs = v.origins
            for d1 in (-1, 0, 1):
                for d2 in (-1, 0, 1):
                    key = ((theirs + d1) % SEQ_SPACE, (mine + d2) % SEQ_SPACE)
                    for j in index.get(key, ()):
                        if self._views[j].host != v.host:
                            self._groups.union(i, j)

    def _join_segments(self) -> None:
        # Views with sequence numbers, per host, by the time of their first record, to find
        # the ones near a segment's time quickly.
        timed: dict[int, list[tuple[int, int]]] = {}
        for i, v in enumerate(self._views):
            if v.origins is not None or v.syn_seq is not None:
                timed.setdefault(v.host, []).append((self._ref_time(v.host, v.records[0]), i))
        for lst in timed.values():
            lst.sort()
        for i, v in enumerate(self._views):
            if v.origins is not None or v.syn_seq is not None:
                continue
            seg = v.records[0]
            t = self._ref_time(v.host, seg)
            fits = [j for h, lst in timed.items() if h != v.host
                    for j in self._near(lst, t, h, v.host) if self._fits(seg, self._views[j])]
            groups = {self._groups.find(j) for j in fits}
            if len(groups) > 1 and seg.flag("seg_ts"):
                # The segment echoes the last TSval its sender accepted (its ts_recent then).
                fits = [j for j in fits if any(r.flag("ts") and r.ts_recent == seg.seg_tsecr
                                               for r in self._views[j].records)] or fits
                groups = {self._groups.find(j) for j in fits}
            if len(groups) == 1:
                self._groups.union(i, fits[0])
            elif len(groups) > 1:
                self.ambiguous.add(i)

    def _window(self, a: int, b: int) -> int:
        known = self.skew[a] is not None and self.skew[b] is not None
        return SEGMENT_WINDOW_NS if known else UNKNOWN_SKEW_WINDOW_NS

    def _near(self, lst: list[tuple[int, int]], t: int, host: int, seg_host: int) -> list[int]:
        w = self._window(host, seg_host)
        hi = bisect.bisect_right(lst, (t + w, len(self._views)))
        out = []
        for _, j in lst[:hi]:
            last = self._ref_time(host, self._views[j].records[-1])
            if last >= t - w:
                out.append(j)
        return out

    @staticmethod
    def _fits(seg: Record, v: _View) -> bool:
        """The segment seg answered could have been sent by the socket of view v."""
        if not seg.seg_flags & TCP_ACK:
            # A SYN: its seq is the connecting socket's initial sequence number.
            return v.syn_seq is not None and seg.seg_seq == v.syn_seq
        if v.origins is None:
            return False
        return (0 <= seq_diff(seg.seg_seq, v.origins[0]) <= v.extent(0) + SEGMENT_SLACK
                and 0 <= seq_diff(seg.seg_ack, v.origins[1]) <= v.extent(1) + SEGMENT_SLACK)

    # -- clocks ------------------------------------------------------------------------
    def _ref_time(self, host: int, r: Record) -> int:
        sk = self.skew[host]
        return sk.correct(r.wall_ns) if sk is not None else r.wall_ns

    def _connections(self) -> dict[int, list[int]]:
        out: dict[int, list[int]] = {}
        for i in range(len(self._views)):
            out.setdefault(self._groups.find(i), []).append(i)
        return out

    def _estimate_skew(self) -> None:
        """Intervals for (clock of b - clock of a), for host pairs a < b, then each host's
        offset from host 0 along the pairs."""
        bounds: dict[tuple[int, int], list[tuple[int, int]]] = {}
        for views in self._connections().values():
            recs = [(self._views[i].host, r) for i in views for r in self._views[i].records]
            for a, b, lo, hi in _constraints(recs):
                if a > b:
                    a, b, lo, hi = b, a, -hi, -lo
                bounds.setdefault((a, b), []).append((lo, hi))
        pair_est = {k: _intersect(v) for k, v in bounds.items()}
        skew: list[Optional[Skew]] = [None] * len(self.hosts)
        if not self.hosts:
            return
        skew[0] = Skew(0, 0, 0)
        frontier = [0]
        while frontier:
            a = frontier.pop()
            base = skew[a]
            assert base is not None
            for (x, y), est in pair_est.items():
                for src, dst, sign in ((x, y, 1), (y, x, -1)):
                    if src == a and skew[dst] is None:
                        skew[dst] = Skew(base.offset_ns + sign * est.offset_ns,
                                         base.uncertainty_ns + est.uncertainty_ns,
                                         est.pairs, base.consistent and est.consistent)
                        frontier.append(dst)
        self.skew = skew

    # -- answers -----------------------------------------------------------------------
    def counterpart(self, host: int, r: Record) -> Counterpart:
        """The other end of r's connection, or why it could not be found."""
        v = self._view_of.get(r.ident)
        if v is None:
            if not self._has_seq[host]:
                return Unpaired("its recording has no sequence numbers (made by a tcptrace-explain version "
                                "that did not record them)")
            return Unpaired("the kernel had no connection state to identify it by (no socket, or only a "
                            "listener, at the event)")
        if v in self.ambiguous:
            return Unpaired("the segment this reset answered fits connections of several hosts")
        others: dict[int, list[Record]] = {}
        by = "stream origins"
        for i in self._members[self._groups.find(v)]:
            view = self._views[i]
            if view.host != host:
                others.setdefault(view.host, []).extend(view.records)
                if view.origins is None or self._views[v].origins is None:
                    by = "segment"
        if not others:
            return Unpaired("no other recording has this connection: the other end's host was not recorded, "
                            "or its tracer wrote nothing about this connection (it writes a connection at a "
                            "reset or an abort, and at every state change with --states)")
        if len(others) > 1:
            return Unpaired("the connection appears in the recordings of several other hosts")
        (other, recs), = others.items()
        recs.sort(key=lambda x: x.ts_ns)
        return Paired(other, tuple(recs), by, self._same_reset(host, r, other, recs))

    def _same_reset(self, host: int, r: Record, other: int, recs: list[Record]) -> Optional[Record]:
        """The other host's record of this very reset: its send (r received) or its receipt."""
        if r.type is RecordType.RESET_RECEIVED:
            cands = [y for y in recs if y.type is RecordType.RESET_SENT and _answers(y, r)]
        elif r.type is RecordType.RESET_SENT:
            cands = [y for y in recs if y.type is RecordType.RESET_RECEIVED and _answers(r, y)]
        else:
            return None
        if not cands:
            return None
        t = self._ref_time(host, r)
        return min(cands, key=lambda y: abs(self._ref_time(other, y) - t))


def _answers(sent: Record, received: Record) -> bool:
    """The reset `sent` records is the one `received` records (a reset is accepted only at
    exactly rcv_nxt, RFC 5961 3.2; in SYN_SENT, by its ack of the SYN, RFC 793)."""
    if received.state == "SYN_SENT":
        return sent.flag("seg_seq") and received.flag("seq") and sent.seg_seq == received.snd_una
    seq = rst_seq(sent)
    if seq is None or not received.flag("seq"):
        return False
    return seq == received.rcv_nxt


def _constraints(recs: list[tuple[int, Record]]) -> list[tuple[int, int, int, int]]:
    """(a, b, lo, hi): clock of host b minus clock of host a lies in [lo, hi], from the events of
    one connection recorded on both."""
    out: list[tuple[int, int, int, int]] = []
    for ha, a in recs:
        for hb, b in recs:
            if ha == hb:
                continue
            rtt = _rtt_ns(a, b)
            # a connected, b accepted: a's ESTABLISHED (ACK sent) precedes b's (ACK received).
            if a.flag("connected") and b.flag("accepted") and a.estab_ns and b.estab_ns:
                d = (b.estab_ns + _mono_to_wall(b)) - (a.estab_ns + _mono_to_wall(a))
                out.append((ha, hb, d - rtt, d))
            # a sent the reset b received.
            if a.type is RecordType.RESET_SENT and b.type is RecordType.RESET_RECEIVED and _answers(a, b):
                d = b.wall_ns - a.wall_ns
                out.append((ha, hb, d - rtt - TRACE_LAG_NS, d + TRACE_LAG_NS))
    # Each connection's establishment is in several records of it: count each bound once.
    return sorted(set(out))


def _intersect(intervals: list[tuple[int, int]]) -> Skew:
    lo = max(i[0] for i in intervals)
    hi = min(i[1] for i in intervals)
    if lo <= hi:
        return Skew((lo + hi) // 2, (hi - lo + 1) // 2, len(intervals))
    mids = sorted((a + b) // 2 for a, b in intervals)
    mid = mids[len(mids) // 2]
    spread = max(abs(m - mid) for m in mids) + max((b - a) // 2 for a, b in intervals)
    return Skew(mid, spread, len(intervals), consistent=False)
