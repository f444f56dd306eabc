#!/usr/bin/env python3
"""Would socket-local storage make the per-socket table cheaper? Measure it on this kernel.

    sudo .venv/bin/python scripts/bench/skstorage.py [--seconds 3]

bpf_sk_storage_get() needs a BTF-typed `struct sock *`, so only a BTF-typed tracepoint (tp_btf:
BPF_PROG_TYPE_TRACING, expected attach type BPF_TRACE_RAW_TP) can call it from
sock:inet_sock_set_state. BCC 0.26 (Debian 12) cannot load one: bcc_prog_load_xattr()
(src/cc/libbpf.c) sets the expected attach type of a TRACING program only from the name prefixes
kfunc__/kretfunc__/kmod_ret__/lsm__/bpf_iter__ and overwrites the one BPF.load_func() passes, so
the BTF lookup searches a function named like the program ("inet_sock_set_state is not found in
vmlinux BTF"). This script lets BCC compile the C (and create its maps), then loads the
bytecode with its own bpf(BPF_PROG_LOAD) and attaches it with BPF_RAW_TRACEPOINT_OPEN.

Two programs on sock:inet_sock_set_state, each alone under the pure connect/close load (cfin of
scripts/bench/churn.c): a per-CPU counter (the tp_btf floor), and the counter plus one
bpf_sk_storage_get() per state change (created at connect and accept). Printed: ns per run from
kernel.bpf_stats_enabled (switched on for the run, restored after).
"""

from __future__ import annotations

import argparse
import ctypes as ct
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import run as bench  # noqa: E402

bench.NS = f"tte-skstorage-{os.getpid()}"

SYS_BPF = 321  # x86-64
BPF_PROG_LOAD, BPF_RAW_TRACEPOINT_OPEN = 5, 17
BPF_PROG_TYPE_TRACING, BPF_TRACE_RAW_TP = 26, 23

SOURCE = r"""
#define TCP_CLOSE 7
#define TCP_LISTEN 10
struct val { u64 n; };
BPF_SK_STORAGE(store, struct val);
BPF_PERCPU_ARRAY(hits, u64, 2);
int inet_sock_set_state(u64 *ctx)
{
    u32 i = 0;
    u64 *h = hits.lookup(&i);
    if (h)
        (*h)++;
#ifdef WITH_STORAGE
    struct sock *sk = (struct sock *)ctx[0];
    int os = (int)ctx[1];
    struct val *v = store.sk_storage_get(sk, 0, (os == TCP_CLOSE || os == TCP_LISTEN) ? BPF_SK_STORAGE_GET_F_CREATE : 0);
    if (v)
        v->n++;
#endif
    return 0;
}
"""


class ProgLoadAttr(ct.Structure):
    """The BPF_PROG_LOAD part of union bpf_attr (include/uapi/linux/bpf.h), up to attach_prog_fd."""
    _fields_ = [("prog_type", ct.c_uint32), ("insn_cnt", ct.c_uint32), ("insns", ct.c_uint64),
                ("license", ct.c_uint64), ("log_level", ct.c_uint32), ("log_size", ct.c_uint32),
                ("log_buf", ct.c_uint64), ("kern_version", ct.c_uint32), ("prog_flags", ct.c_uint32),
                ("prog_name", ct.c_char * 16), ("prog_ifindex", ct.c_uint32),
                ("expected_attach_type", ct.c_uint32), ("prog_btf_fd", ct.c_uint32),
                ("func_info_rec_size", ct.c_uint32), ("func_info", ct.c_uint64), ("func_info_cnt", ct.c_uint32),
                ("line_info_rec_size", ct.c_uint32), ("line_info", ct.c_uint64), ("line_info_cnt", ct.c_uint32),
                ("attach_btf_id", ct.c_uint32), ("attach_prog_fd", ct.c_uint32), ("_rest", ct.c_uint8 * 64)]


class RawTpOpenAttr(ct.Structure):
    _fields_ = [("name", ct.c_uint64), ("prog_fd", ct.c_uint32), ("_rest", ct.c_uint32 * 8)]


def btf_type_id(name: str) -> int:
    out = bench.sh("bpftool", "btf", "dump", "file", "/sys/kernel/btf/vmlinux").stdout
    for line in out.splitlines():
        if f"TYPEDEF '{name}'" in line:
            return int(line.split("]")[0].lstrip("["))
    raise SystemExit(f"skstorage: {name} not in vmlinux BTF")


def measure(bcc: object, churn: str, seconds: float, with_storage: bool) -> dict:
    libc = ct.CDLL(None, use_errno=True)
    b = bcc.BPF(text=SOURCE, cflags=["-DWITH_STORAGE"] if with_storage else [])  # type: ignore[attr-defined]
    name = b"inet_sock_set_state"
    start = bcc.lib.bpf_function_start(b.module, name)  # type: ignore[attr-defined]
    size = bcc.lib.bpf_function_size(b.module, name)  # type: ignore[attr-defined]
    log = ct.create_string_buffer(1 << 20)
    lic = ct.c_char_p(b"GPL")
    attr = ProgLoadAttr(prog_type=BPF_PROG_TYPE_TRACING, insn_cnt=size // 8, insns=ct.cast(start, ct.c_void_p).value,
                        license=ct.cast(lic, ct.c_void_p).value, log_level=1, log_size=len(log),
                        log_buf=ct.cast(log, ct.c_void_p).value, prog_name=b"tte_skstorage",
                        expected_attach_type=BPF_TRACE_RAW_TP,
                        attach_btf_id=btf_type_id("btf_trace_inet_sock_set_state"))
    fd = libc.syscall(SYS_BPF, BPF_PROG_LOAD, ct.byref(attr), ct.sizeof(attr))
    if fd < 0:
        raise SystemExit(f"skstorage: BPF_PROG_LOAD (tp_btf): {os.strerror(ct.get_errno())}\n"
                         f"{log.value.decode()[-2000:]}")
    link = libc.syscall(SYS_BPF, BPF_RAW_TRACEPOINT_OPEN, ct.byref(RawTpOpenAttr(name=0, prog_fd=fd)),
                        ct.sizeof(RawTpOpenAttr))
    if link < 0:
        raise SystemExit(f"skstorage: BPF_RAW_TRACEPOINT_OPEN: {os.strerror(ct.get_errno())}")
    try:
        def stats() -> tuple[int, int]:
            with open(f"/proc/self/fdinfo/{fd}") as fh:
                info = dict(line.split(":", 1) for line in fh.read().splitlines() if ":" in line)
            return int(info["run_time_ns"]), int(info["run_cnt"])
        bench.netns_up()
        ns0, n0 = stats()
        load = bench.run_load(churn, "cfin", seconds)
        ns1, n1 = stats()
    finally:
        os.close(link)
        os.close(fd)
        b.cleanup()
    return {"program": "counter + sk_storage_get" if with_storage else "counter (tp_btf floor)",
            "connections_per_s": round(load["ops_per_s"]), "runs_per_conn": round((n1 - n0) / max(1, load["ops"]), 2),
            "ns_per_run": round((ns1 - ns0) / max(1, n1 - n0), 1)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=3)
    args = ap.parse_args()
    import bcc  # Debian's python3-bpfcc: a benchmark tool, outside the tracer's one-importer rule

    old = open(bench.STATS).read().strip()
    with tempfile.TemporaryDirectory(prefix="tte-skstorage-") as tmp:
        churn = bench.build_churn(tmp)
        try:
            with open(bench.STATS, "w") as fh:
                fh.write("1\n")
            for with_storage in (False, True, False, True):
                print(json.dumps(measure(bcc, churn, args.seconds, with_storage)), flush=True)
        finally:
            with open(bench.STATS, "w") as fh:
                fh.write(old + "\n")
            subprocess.run(["ip", "netns", "del", bench.NS], capture_output=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
