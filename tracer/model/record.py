"""Decode ring-buffer records (struct tte_record, bpf/tte.h) into frozen Python objects.

The layout and the numbers (record types, owner sources, flags) come from bpf/tte.h through
tracer/model/abi.py. This is the edge between the kernel and everything else: nothing downstream sees ctypes or raw
bytes. Kernel numbers are turned into names here with tables read from the running kernel
(tracer/kernel/features.py), never from tables in our code; a number the kernel did not name is kept
as ``UNKNOWN(n)`` so nothing is silently lost. Recordings store the raw bytes plus the
DecodeContext, so replay decodes exactly as the live run did.
"""

from __future__ import annotations

import errno as errno_mod
import socket
import struct
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Mapping, Optional

from tracer.model.frozen import fast_init
from tracer.model import abi

# struct tte_record as laid out from bpf/tte.h (tracer/model/abi.py). The BPF program
# static-asserts its size and two offsets against RECORD_SIZE / OFF_BIRTH / OFF_OWNER_SRC
# (passed as -D by tracer/kernel/program.py).
_ABI = abi.load()
_LAYOUT = _ABI.structs["tte_record"]
RECORD_FORMAT = _LAYOUT.format
RECORD_SIZE = _LAYOUT.size
OFF_BIRTH = _LAYOUT.offset("birth_ns")
OFF_OWNER_SRC = _LAYOUT.offset("owner_src")
# Records written before the sequence fields were appended: decoded with those fields 0.
PREFIX_SIZES = (_LAYOUT.offset("snd_una"),)
_STRUCT = struct.Struct(RECORD_FORMAT)
# The order decode() unpacks the members in; tests/unit/test_abi.py checks it is the header's.
FIELD_ORDER = (
    "type", "family", "state", "old_state", "flags", "ts_ns", "skaddr", "cookie", "ino", "netns", "pid",
    "cur_pid", "reason", "err", "lport", "rport", "laddr", "raddr", "comm", "thread", "cur_comm", "birth_ns",
    "estab_ns", "fin_ns", "close_ns", "state_ns", "last_send_ns", "last_recv_ns", "last_ack_ns", "destroy_ns",
    "fin_last_send_ns", "fin_last_recv_ns", "retrans", "total_retrans", "srtt_us", "unread_bytes",
    "unacked_bytes", "owner_src", "seg_flags", "snd_una", "snd_nxt", "rcv_nxt", "ts_recent", "ts_echo",
    "seg_seq", "seg_ack", "seg_tsval", "seg_tsecr", "bytes_acked", "bytes_received",
)

AF_INET = 2
AF_INET6 = 10

# |CLOCK_REALTIME - CLOCK_MONOTONIC| a recording may carry (2**62 ns, about 146 years).
MAX_CLOCK_OFFSET_NS = 1 << 62

# A send this close before a received reset is taken as what triggered it (see Record.idle_ns).
TRIGGER_WINDOW_NS = 200_000_000


class RecordType(str, Enum):
    RESET_SENT = "reset_sent"
    RESET_RECEIVED = "reset_received"
    ABORT = "abort"
    STATE = "state"
    # The holder of an accepted socket, learnt when it closed the socket (see bpf/tte.h):
    # not an event, an update to the owner of the records already sent for that socket.
    OWNER = "owner"


# The errors a socket reports to its owner along with a reset of its own, in the same call
# chain: tcp_reset() after one received (ECONNREFUSED in SYN_SENT, EPIPE in CLOSE_WAIT, else
# ECONNRESET); with one sent, tcp_disconnect() (an SO_LINGER 0 close, connect(AF_UNSPEC))
# ECONNRESET, the keepalive and user timeouts ETIMEDOUT, tcp_abort() (ss -K) ECONNABORTED.
ERRNOS_WITH = {
    RecordType.RESET_RECEIVED: frozenset({"ECONNREFUSED", "ECONNRESET", "EPIPE"}),
    RecordType.RESET_SENT: frozenset({"ECONNRESET", "ETIMEDOUT", "ECONNABORTED"}),
}

# enum tte_record_type: TTE_REC_RESET_SENT -> RecordType.RESET_SENT (test_abi: every one maps).
TYPE_BY_RAW = {v: RecordType[k] for k, v in _ABI.enum("tte_record_type", "TTE_REC_").items()}
RAW_BY_TYPE = {t: v for v, t in TYPE_BY_RAW.items()}

# enum tte_owner_source: TTE_OWNER_LISTENER -> "listener"
OWNER_SOURCES = {v: k.lower() for k, v in _ABI.enum("tte_owner_source", "TTE_OWNER_").items()}
# Owner sources set in user space (tracer/explain/owners.py), never by the kernel side.
OWNER_FROM_PROCFS = "procfs"        # found holding the socket in /proc/<pid>/fd
OWNER_INHERITED = "listener"        # inherited from the listener: the holder is not known yet

# TTE_F_* bits: TTE_F_PEER_FIN -> "peer_fin"
FLAG_BITS = {k.lower(): v for k, v in _ABI.prefixed("TTE_F_").items()}


class RecordDecodeError(ValueError):
    pass


@dataclass(frozen=True)
class DecodeContext:
    """What decoding needs from the machine that recorded: kernel enum names and clocks."""

    tcp_states: Mapping[int, str]
    reset_reasons: Mapping[int, str]
    # CLOCK_REALTIME - CLOCK_MONOTONIC at start-up, to turn bpf_ktime_get_ns() into wall time.
    mono_to_wall_ns: int = 0
    hostname: str = ""
    kernel: str = ""

    def state_name(self, raw: int) -> Optional[str]:
        if raw == 0:
            return None
        return self.tcp_states.get(raw, f"UNKNOWN({raw})")

    def reason_name(self, raw: int) -> Optional[str]:
        if raw < 0:
            return None
        return self.reset_reasons.get(raw, f"UNKNOWN({raw})")

    def to_json(self) -> dict[str, Any]:
        return {
            "tcp_states": {str(k): v for k, v in self.tcp_states.items()},
            "reset_reasons": {str(k): v for k, v in self.reset_reasons.items()},
            "mono_to_wall_ns": self.mono_to_wall_ns,
            "hostname": self.hostname,
            "kernel": self.kernel,
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "DecodeContext":
        try:
            ctx = cls(
                tcp_states={int(k): str(v) for k, v in d["tcp_states"].items()},
                reset_reasons={int(k): str(v) for k, v in d["reset_reasons"].items()},
                mono_to_wall_ns=int(d.get("mono_to_wall_ns", 0)),
                hostname=str(d.get("hostname", "")),
                kernel=str(d.get("kernel", "")),
            )
        except (KeyError, TypeError, ValueError, AttributeError, RecursionError) as exc:
            raise RecordDecodeError(f"invalid decode context: {str(exc):.200}") from exc
        if not abs(ctx.mono_to_wall_ns) <= MAX_CLOCK_OFFSET_NS:
            # Wall time is monotonic time plus this; beyond ~146 years no date can be printed.
            raise RecordDecodeError(f"invalid decode context: clock offset {ctx.mono_to_wall_ns:.3g} ns is out of range")
        return ctx


@fast_init
@dataclass(frozen=True)
class Record:
    """One decoded ring-buffer record: an observation, not yet an explanation."""

    type: RecordType
    ts_ns: int
    family: int
    state: Optional[str]
    old_state: Optional[str]
    flags_raw: int
    skaddr: int
    cookie: int
    ino: int
    netns: int
    pid: int
    cur_pid: int
    reason: Optional[str]
    reason_raw: int
    errno: Optional[str]
    errno_raw: int
    laddr: str
    lport: int
    raddr: str
    rport: int
    comm: str
    thread: str
    cur_comm: str
    birth_ns: Optional[int]
    estab_ns: Optional[int]
    fin_ns: Optional[int]
    close_ns: Optional[int]
    state_ns: Optional[int]
    last_send_ns: Optional[int]
    last_recv_ns: Optional[int]
    last_ack_ns: Optional[int]
    destroy_ns: Optional[int]
    fin_last_send_ns: Optional[int]
    fin_last_recv_ns: Optional[int]
    retrans: int
    total_retrans: int
    srtt_us: int
    unread_bytes: int
    unacked_bytes: int
    owner_source: str
    seg_flags: int = 0
    wall_ns: int = field(default=0)
    # Where the connection stood in sequence space at the event (flag "seq", a full socket):
    # what identifies it on both hosts, through NAT (tracer/explain/pairing.py).
    snd_una: int = 0
    snd_nxt: int = 0
    rcv_nxt: int = 0
    bytes_acked: int = 0      # tcp_sock.bytes_acked (RFC 4898): moves with snd_una
    bytes_received: int = 0   # tcp_sock.bytes_received: moves with rcv_nxt
    # Flag "ts" (the timestamp option is in use): the peer's last TSval this side accepted
    # (rx_opt.ts_recent, the peer's clock plus its per-connection offset) and the peer's last
    # echo of this side's TSval, which the kernel keeps with this side's offset removed
    # (rx_opt.rcv_tsecr): this host's TCP clock, in ms, when it sent what the peer last echoed.
    ts_recent: int = 0
    ts_echo: int = 0
    # Flag "seg_seq": the segment a passive reset answered (sent by the peer): its seq and
    # ack; flag "seg_ts": its TSval and TSecr.
    seg_seq: int = 0
    seg_ack: int = 0
    seg_tsval: int = 0
    seg_tsecr: int = 0
    # When the holder of an accepted socket could not be resolved: the listener's owner first,
    # then its child processes; pid is 0 then (the tool never guesses which one).
    owner_candidates: tuple[int, ...] = ()

    def flag(self, name: str) -> bool:
        return bool(self.flags_raw & FLAG_BITS[name])

    @property
    def flags(self) -> tuple[str, ...]:
        return tuple(n for n, bit in FLAG_BITS.items() if self.flags_raw & bit)

    @property
    def segment_was_syn(self) -> bool:
        """The reset answered a SYN (a connection attempt), not a segment of a connection."""
        return bool(self.seg_flags & 0x02) and not self.seg_flags & 0x10

    @property
    def segment_was_synack(self) -> bool:
        """The reset answered a SYN-ACK: a server's answer to a connection attempt."""
        return self.seg_flags & 0x12 == 0x12

    @property
    def family_name(self) -> str:
        return {AF_INET: "ipv4", AF_INET6: "ipv6"}.get(self.family, f"af{self.family}")

    @property
    def idle_ns(self) -> Optional[int]:
        """Time since the application's last data on this connection, before the event.

        Data only (tcp_sock.lsndtime and icsk_ack.lrcvtime): a bare ACK, a keepalive answer or
        the peer's FIN is not the application using the connection (rcv_tstamp, which any ACK
        refreshes, stays evidence, not idle time). One exception: a reset received within
        TRIGGER_WINDOW_NS (or four smoothed RTTs) of our own send answers that send. That send
        is what met the reset (a pooled connection reused after an idle period), so it does not
        end the idle period; otherwise every reset on a reused connection would read as idle 0.
        """
        send = self.last_send_ns
        if (self.type is RecordType.RESET_RECEIVED and send is not None
                and self.ts_ns - send <= max(TRIGGER_WINDOW_NS, 4 * self.srtt_us * 1000)):
            send = None
        last = max((t for t in (self.last_recv_ns, send) if t is not None), default=None)
        if last is None or last > self.ts_ns:
            return None
        return self.ts_ns - last

    @property
    def idle_s(self) -> Optional[float]:
        n = self.idle_ns
        return None if n is None else n / 1e9

    @property
    def age_s(self) -> Optional[float]:
        start = self.estab_ns or self.birth_ns
        return None if start is None or start > self.ts_ns else (self.ts_ns - start) / 1e9

    @property
    def ident(self) -> tuple[str, int, int, int]:
        """This record among its host's: (type, time, netns, socket address). Records are
        replaced by copies on their way (an accepted socket's holder, once learnt), so joins
        across stages use this, not object identity."""
        return (self.type.value, self.ts_ns, self.netns, self.skaddr)

    @property
    def sock_key(self) -> tuple[int, int, int]:
        """(netns, socket address, birth): one socket's identity (addresses are reused)."""
        return (self.netns, self.skaddr, self.birth_ns or 0)

    @property
    def tuple4(self) -> tuple[int, str, int, str, int]:
        """(netns, laddr, lport, raddr, rport): the key that joins records across sockets."""
        return (self.netns, self.laddr, self.lport, self.raddr, self.rport)


_V4_MAPPED = b"\0" * 10 + b"\xff\xff"


# Decoded names and addresses by their raw bytes: a stream repeats a few of each. Bounded: the
# cache starts again past _SEEN_MAX entries (distinct endpoints under churn). An empty name is
# never kept (it is falsy): it is decoded again, as cheaply.
_SEEN: dict[tuple[int, bytes], str] = {}
_SEEN_MAX = 65_536


def _addr(family: int, raw: bytes) -> str:
    return _SEEN.get((family, raw)) or _learn((family, raw), _addr_text(family, raw))


def _learn(key: tuple[int, bytes], text: str) -> str:
    if len(_SEEN) >= _SEEN_MAX:
        _SEEN.clear()
    _SEEN[key] = text
    return text


def _addr_text(family: int, raw: bytes) -> str:
    # inet_ntop is C; ipaddress objects cost more than the rest of decoding together.
    if family == AF_INET6:
        if raw[:12] == _V4_MAPPED:
            return socket.inet_ntop(socket.AF_INET, raw[12:16])
        return socket.inet_ntop(socket.AF_INET6, raw[:16])
    return socket.inet_ntop(socket.AF_INET, raw[:4])


def _text(raw: bytes) -> str:
    # family 0: a name, never an address
    return _SEEN.get((0, raw)) or _learn((0, raw), raw.split(b"\0", 1)[0].decode("utf-8", errors="replace"))


def errno_name(raw: int) -> Optional[str]:
    if raw <= 0:
        return None
    return errno_mod.errorcode.get(raw, f"E{raw}")


def decode(data: bytes, ctx: DecodeContext) -> Record:
    if len(data) in PREFIX_SIZES:
        data = data + bytes(RECORD_SIZE - len(data))
    elif len(data) < RECORD_SIZE:
        raise RecordDecodeError(f"record of {len(data)} bytes, expected {RECORD_SIZE}")
    (
        type_raw, family, state_raw, old_state_raw, flags_raw, ts_ns, skaddr, cookie, ino,
        netns, pid, cur_pid, reason_raw, err_raw, lport, rport, laddr, raddr, comm, thread,
        cur_comm, birth, estab, fin, close, state_ts, last_send, last_recv, last_ack, destroy,
        fin_last_send, fin_last_recv, retrans, total_retrans, srtt_us, unread, unacked, owner_src, seg_flags,
        snd_una, snd_nxt, rcv_nxt, ts_recent, ts_echo, seg_seq, seg_ack, seg_tsval, seg_tsecr,
        bytes_acked, bytes_received,
    ) = _STRUCT.unpack_from(data)
    rtype = TYPE_BY_RAW.get(type_raw)
    if rtype is None:
        raise RecordDecodeError(f"unknown record type {type_raw}")
    # Positional, in Record's field order (tests/unit/test_record.py checks it): keyword
    # arguments cost twice as much for a frozen dataclass of this size.
    return Record(
        rtype,  # type
        ts_ns,  # ts_ns
        family,  # family
        ctx.state_name(state_raw),  # state
        ctx.state_name(old_state_raw) if rtype is RecordType.STATE else None,  # old_state
        flags_raw,  # flags_raw
        skaddr,  # skaddr
        cookie,  # cookie
        ino,  # ino
        netns,  # netns
        pid,  # pid
        cur_pid,  # cur_pid
        ctx.reason_name(reason_raw),  # reason
        reason_raw,  # reason_raw
        errno_name(err_raw),  # errno
        err_raw,  # errno_raw
        _addr(family, laddr),  # laddr
        lport,  # lport
        _addr(family, raddr),  # raddr
        rport,  # rport
        _text(comm),  # comm
        _text(thread),  # thread
        _text(cur_comm),  # cur_comm
        birth or None,  # birth_ns
        estab or None,  # estab_ns
        fin or None,  # fin_ns
        close or None,  # close_ns
        state_ts or None,  # state_ns
        last_send or None,  # last_send_ns
        last_recv or None,  # last_recv_ns
        last_ack or None,  # last_ack_ns
        destroy or None,  # destroy_ns
        fin_last_send or None,  # fin_last_send_ns
        fin_last_recv or None,  # fin_last_recv_ns
        retrans,  # retrans
        total_retrans,  # total_retrans
        srtt_us,  # srtt_us
        # rcv_nxt counts the peer's FIN as one sequence number: it is not data left unread.
        unread - 1 if unread and flags_raw & FLAG_BITS["peer_fin"] else unread,  # unread_bytes
        unacked,  # unacked_bytes
        OWNER_SOURCES.get(owner_src, f"unknown({owner_src})"),  # owner_source
        seg_flags,  # seg_flags
        ts_ns + ctx.mono_to_wall_ns,  # wall_ns
        snd_una,  # snd_una
        snd_nxt,  # snd_nxt
        rcv_nxt,  # rcv_nxt
        bytes_acked,  # bytes_acked
        bytes_received,  # bytes_received
        ts_recent,  # ts_recent
        ts_echo,  # ts_echo
        seg_seq,  # seg_seq
        seg_ack,  # seg_ack
        seg_tsval,  # seg_tsval
        seg_tsecr,  # seg_tsecr
    )
