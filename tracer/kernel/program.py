"""Turn Options, tracepoint features and BTF offsets into the exact program BCC compiles.

The C sources are real files (bpf/tte.bpf.c and the parts it includes); this module only chooses
-D constants:
which tracepoint layout to read, which filters to compile in, kernel field offsets from BTF,
and the record layout the decoder expects. ``describe()`` prints exactly what was compiled
(the hidden --print-program flag).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping, Optional

from tracer.model import record
from tracer.kernel import sources
from tracer.kernel.btf import Btf, BtfError
from tracer.model.errors import KernelUnsupported
from tracer.kernel.features import Features
from tracer.model.options import Options


# Constant name -> (struct, member path, size the program reads). The size check guards
# against a field whose type changed under us.
FIELDS: Mapping[str, tuple[str, str, int]] = {
    "SKC_FAMILY": ("sock_common", "skc_family", 2),
    "SKC_STATE": ("sock_common", "skc_state", 1),
    "SKC_NUM": ("sock_common", "skc_num", 2),
    "SKC_DPORT": ("sock_common", "skc_dport", 2),
    "SKC_DADDR": ("sock_common", "skc_daddr", 4),
    "SKC_RCV_SADDR": ("sock_common", "skc_rcv_saddr", 4),
    "SKC_V6_DADDR": ("sock_common", "skc_v6_daddr", 16),
    "SKC_V6_RCV_SADDR": ("sock_common", "skc_v6_rcv_saddr", 16),
    "SKC_NET": ("sock_common", "skc_net", 8),
    "NET_INUM": ("net", "ns.inum", 4),
    "SK_FLAGS": ("sock", "__sk_common.skc_flags", 8),
    "SK_ERR": ("sock", "sk_err", 4),
    "SK_PROTOCOL": ("sock", "sk_protocol", 2),
    "SK_TYPE": ("sock", "sk_type", 2),
    "SK_SOCKET": ("sock", "sk_socket", 8),
    "SOCKALLOC_INO": ("socket_alloc", "vfs_inode.i_ino", 8),
    "TP_LSNDTIME": ("tcp_sock", "lsndtime", 4),
    "TP_RCV_TSTAMP": ("tcp_sock", "rcv_tstamp", 4),
    "TP_LRCVTIME": ("tcp_sock", "inet_conn.icsk_ack.lrcvtime", 4),
    "TP_SRTT_US": ("tcp_sock", "srtt_us", 4),
    "TP_TOTAL_RETRANS": ("tcp_sock", "total_retrans", 4),
    "TP_RCV_NXT": ("tcp_sock", "rcv_nxt", 4),
    "TP_COPIED_SEQ": ("tcp_sock", "copied_seq", 4),
    "TP_WRITE_SEQ": ("tcp_sock", "write_seq", 4),
    "TP_SND_UNA": ("tcp_sock", "snd_una", 4),
    # sequence positions and their RFC 4898 byte counters: a connection's identity across hosts
    "TP_SND_NXT": ("tcp_sock", "snd_nxt", 4),
    "TP_BYTES_ACKED": ("tcp_sock", "bytes_acked", 8),
    "TP_BYTES_RECEIVED": ("tcp_sock", "bytes_received", 8),
    # timestamp option (RFC 7323): ts_recent_stamp is 0 while no timestamp was ever stored
    "TP_TS_RECENT": ("tcp_sock", "rx_opt.ts_recent", 4),
    "TP_TS_RECENT_STAMP": ("tcp_sock", "rx_opt.ts_recent_stamp", 4),
    "TP_RCV_TSECR": ("tcp_sock", "rx_opt.rcv_tsecr", 4),
    "TASK_GROUP_LEADER": ("task_struct", "group_leader", 8),
    "TASK_COMM": ("task_struct", "comm", 16),
    "TASK_FLAGS": ("task_struct", "flags", 4),
    "TASK_REAL_PARENT": ("task_struct", "real_parent", 8),
    "TASK_TGID": ("task_struct", "tgid", 4),
    "SKB_DEV": ("sk_buff", "dev", 8),
    "NETDEV_NET": ("net_device", "nd_net", 8),
    "SKB_HEAD": ("sk_buff", "head", 8),
    "SKB_NETWORK_HEADER": ("sk_buff", "network_header", 2),
    "SKB_TRANSPORT_HEADER": ("sk_buff", "transport_header", 2),
}
SOCK_FLAGS = ("SOCK_DEAD", "SOCK_DONE", "SOCK_KEEPOPEN", "SOCK_LINGER")
STATE_NAMES = (
    "ESTABLISHED", "SYN_SENT", "SYN_RECV", "FIN_WAIT1", "FIN_WAIT2", "TIME_WAIT", "CLOSE",
    "CLOSE_WAIT", "LAST_ACK", "LISTEN", "CLOSING", "NEW_SYN_RECV",
)


@dataclass(frozen=True)
class Program:
    source: str  # the main file, for messages; BCC compiles `text`
    text: str  # the main file with its parts inlined (tracer/kernel/sources.py)
    cflags: tuple[str, ...]
    io_hooks: bool
    hz: int

    def describe(self) -> str:
        parts = sorted({p for p in re.findall(r'^#line 1 "([^"]+)"$', self.text, re.M) if p != self.source})
        lines = [f"source: {self.source}", *(f"  + {p}" for p in parts),
                 f"io hooks: {self.io_hooks}", f"HZ: {self.hz}", "cflags:"]
        lines += [f"  {f}" for f in self.cflags]
        return "\n".join(lines)


def kernel_offsets(btf: Btf) -> dict[str, int]:
    """TTE_OFF_* values from BTF, checked for the size the program reads."""
    out: dict[str, int] = {}
    for const, (struct, path, size) in FIELDS.items():
        try:
            m = btf.member(struct, path)
        except BtfError as exc:
            raise KernelUnsupported(
                f"BTF lacks {struct}.{path}: {exc}",
                "report this kernel to the project (its socket layout is one the tool does not know yet)",
            ) from exc
        if m.size != size:
            raise KernelUnsupported(
                f"{struct}.{path} is {m.size} bytes on this kernel, the program reads {size}",
                "report this kernel to the project",
            )
        out[const] = m.offset
    return out


def sock_flag_bits(btf: Btf) -> dict[str, int]:
    values = btf.enum_values("sock_flags")
    missing = [f for f in SOCK_FLAGS if f not in values]
    if missing:
        raise KernelUnsupported(f"enum sock_flags lacks {', '.join(missing)}")
    return {f: values[f] for f in SOCK_FLAGS}


def build(options: Options, features: Features, btf: Optional[Btf], hz: int) -> Program:
    missing = features.missing_required()
    if missing:
        raise KernelUnsupported(
            f"the kernel lacks required tracepoints: {', '.join(missing)}",
            "tcptrace-explain needs Linux 5.14 or later (inet_sk_error_report) with tracepoints enabled",
        )
    io_hooks = options.io_hooks if options.io_hooks is not None else btf is None
    if io_hooks and not (features.has_hook("sock/sock_send_length") and features.has_hook("sock/sock_recv_length")):
        raise KernelUnsupported(
            "per-I/O hooks were asked for, but sock:sock_send_length/sock_recv_length are missing (Linux < 6.3)",
            "drop --io-hooks",
        )
    if btf is None:
        raise KernelUnsupported(
            "no BTF at /sys/kernel/btf/vmlinux: socket fields cannot be located safely",
            "use a kernel built with CONFIG_DEBUG_INFO_BTF=y (Debian's are)",
        )

    d: dict[str, object] = {
        "TTE_MAX_SOCKS": options.max_socks,
        "TTE_MAX_CLOSED": options.max_closed,
        "TTE_MAX_INODES": options.max_inodes,
        "TTE_RINGBUF_PAGES": options.ringbuf_pages,
        "TTE_WAKEUP_EVERY": options.wakeup_every,
        "TTE_STORM_LIMIT": options.storm_limit,
        "TTE_STORM_SAMPLE": min(options.storm_sample, options.storm_limit),
        "TTE_NSEC_PER_JIFFY": f"{1_000_000_000 // hz}ULL",
        "TTE_EMIT_STATES": int(options.states),
        "TTE_FILTER_PID": int(bool(options.pids)),
        "TTE_FILTER_COMM": int(bool(options.comms)),
        "TTE_FILTER_PORT": int(bool(options.ports)),
        "TTE_FILTER_NETNS": int(bool(options.netns)),
        "TTE_IO_HOOKS": int(io_hooks),
        "TTE_EXPECT_RECORD_SIZE": record.RECORD_SIZE,
        "TTE_EXPECT_OFF_BIRTH": record.OFF_BIRTH,
        "TTE_EXPECT_OFF_OWNER_SRC": record.OFF_OWNER_SRC,
    }
    if features.rst_layout_sockaddr:
        d["TTE_RST_SOCKADDR"] = 1
    if features.rst_has_reason and not options.ignore_kernel_reason:
        d["TTE_RST_HAS_REASON"] = 1
    if features.rst_has_state:
        d["TTE_RST_HAS_STATE"] = 1
    if features.rst_has_family:
        d["TTE_RST_HAS_FAMILY"] = 1
    if features.recv_has_cookie:
        d["TTE_RECV_HAS_COOKIE"] = 1

    by_name = {name: num for num, name in features.tcp_states.items()}
    if all(n in by_name for n in STATE_NAMES):
        for n in STATE_NAMES:
            d[f"TTE_TCP_{n}"] = by_name[n]

    for const, off in kernel_offsets(btf).items():
        d[f"TTE_OFF_{const}"] = off
    for flag, bit in sock_flag_bits(btf).items():
        d[f"TTE_{flag}"] = bit

    cflags = tuple([f"-I{sources.bpf_dir()}"] + [f"-D{k}={v}" for k, v in d.items()])
    return Program(source=sources.main_source(), text=sources.translation_unit(), cflags=cflags,
                   io_hooks=io_hooks, hz=hz)
