#!/usr/bin/env python3
"""What does the least per-socket table cost? Measure it on this kernel, against the floor.

    sudo .venv/bin/python scripts/bench/tablefloor.py [--seconds 3] [--rounds 3]

Issue 13 asks for the tracer's BPF cost per connection within 3x of the floor (a per-CPU
counter on the same tracepoints). This measures what any tracer that keeps a per-socket table
must pay at least: the floor's counter, plus one insert when a socket is born (connect, listen,
an accepted child), one lookup and two stores on each later change the table follows
(bpf/tte.bpf.c table_follows()), and a lookup and a delete at tcp_destroy_sock. The value is
as large as struct tte_sock (232 bytes) and the table as large as the tracer's (65,536). No
owner, no tuple, no history, no records: the table alone.

Variants, each alone under the pure connect/close load (cfin of scripts/bench/churn.c),
interleaved over rounds:
  floor            the counter only (scripts/bench/floor.py's, on these two tracepoints)
  lru              the tracer's map type (BPF_MAP_TYPE_LRU_HASH)
  lru-cpu-lists    LRU hash with per-CPU LRU lists (BPF_F_NO_COMMON_LRU)
  hash             a preallocated plain hash (no eviction: a missed destroy would leak)
  lru-no-delete    LRU hash, the entry marked dead at destroy instead of deleted
Printed per run: BPF ns per connection per program and in total, from kernel.bpf_stats_enabled
(switched on for the run, restored after), and the ratio to the floor of the same round.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import run as bench  # noqa: E402

bench.NS = f"tte-tablefloor-{os.getpid()}"

SOURCE = r"""
struct val { u64 a[28]; u32 pid; u32 dead; };   /* 232 bytes, as struct tte_sock */
#if TABLE
BPF_F_TABLE(MAPTYPE, u64, struct val, socks, 65536, MAPFLAGS);
#endif
BPF_PERCPU_ARRAY(hits, u64, 1);
static __always_inline int follows(int os, int ns)
{
    return (os == 7 && (ns == 2 || ns == 10)) || os == 10 || ns == 1 || (os == 1 && ns == 8) || ns == 4 ||
           (os == 8 && ns == 9) || os == 2 || os == 3;
}
TRACEPOINT_PROBE(sock, inet_sock_set_state)
{
    if (args->protocol != 6)
        return 0;
    u32 i = 0;
    u64 *h = hits.lookup(&i);
    if (h)
        (*h)++;
#if TABLE
    u64 key = (u64)args->skaddr;
    int os = args->oldstate, ns = args->newstate;
    if (!follows(os, ns))
        return 0;
    u64 now = bpf_ktime_get_ns();
    if ((os == 7 && (ns == 2 || ns == 10)) || (os == 10 && ns == 3)) {
        struct val v;
        __builtin_memset(&v, 0, sizeof(v));
        v.a[0] = now;
        v.pid = bpf_get_current_pid_tgid() >> 32;
        socks.update(&key, &v);
        return 0;
    }
    struct val *s = socks.lookup(&key);
    if (!s || s->dead)
        return 0;
    s->a[ns & 15] = now;
    s->a[20] = args->sport;
#endif
    return 0;
}
TRACEPOINT_PROBE(tcp, tcp_destroy_sock)
{
    u32 i = 0;
    u64 *h = hits.lookup(&i);
    if (h)
        (*h)++;
#if TABLE
    u64 key = (u64)args->skaddr;
    struct val *s = socks.lookup(&key);
    if (!s)
        return 0;
#if DELETE
    socks.delete(&key);
#else
    s->dead = 1;
#endif
#endif
    return 0;
}
"""

# name: (table compiled in, map type, map flags, delete at destroy)
VARIANTS = {
    "floor": (0, '"lru_hash"', "0", 1),
    "lru": (1, '"lru_hash"', "0", 1),
    "lru-cpu-lists": (1, '"lru_hash"', "BPF_F_NO_COMMON_LRU", 1),
    "hash": (1, '"hash"', "0", 1),
    "lru-no-delete": (1, '"lru_hash"', "0", 0),
}
PROGRAMS = ("tracepoint__sock__inet_sock_set_state", "tracepoint__tcp__tcp_destroy_sock")


def measure(bcc: object, churn: str, seconds: float, name: str) -> dict:
    table, maptype, flags, delete = VARIANTS[name]
    b = bcc.BPF(text=SOURCE, cflags=[f"-DTABLE={table}", f"-DMAPTYPE={maptype}",  # type: ignore[attr-defined]
                                     f"-DMAPFLAGS={flags}", f"-DDELETE={delete}"])

    def stats() -> dict[str, tuple[int, int]]:
        out = {}
        for p in PROGRAMS:
            fd = b.funcs[p.encode()].fd
            with open(f"/proc/self/fdinfo/{fd}") as fh:
                info = dict(line.split(":", 1) for line in fh.read().splitlines() if ":" in line)
            out[p] = (int(info["run_time_ns"]), int(info["run_cnt"]))
        return out

    try:
        bench.netns_up()
        s0 = stats()
        load = bench.run_load(churn, "cfin", seconds)
        s1 = stats()
    finally:
        b.cleanup()
    ops = max(1, load["ops"])
    per = {p.rsplit("__", 1)[-1]: round((s1[p][0] - s0[p][0]) / ops) for p in PROGRAMS}
    return {"variant": name, "connections_per_s": round(load["ops_per_s"]), "ns_per_connection": per,
            "total": sum(per.values())}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=3)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    import bcc  # Debian's python3-bpfcc: a benchmark tool, outside the tracer's one-importer rule

    old = open(bench.STATS).read().strip()
    ratios: dict[str, list[float]] = {v: [] for v in VARIANTS}
    totals: dict[str, list[int]] = {v: [] for v in VARIANTS}
    with tempfile.TemporaryDirectory(prefix="tte-tablefloor-") as tmp:
        churn = bench.build_churn(tmp)
        try:
            with open(bench.STATS, "w") as fh:
                fh.write("1\n")
            names = list(VARIANTS)
            for r in range(args.rounds):
                order = names[r % len(names):] + names[:r % len(names)]
                rows = {v: measure(bcc, churn, args.seconds, v) for v in order}
                for v, row in rows.items():
                    row["vs_floor"] = round(row["total"] / max(1, rows["floor"]["total"]), 2)
                    ratios[v].append(row["vs_floor"])
                    totals[v].append(row["total"])
                    print(json.dumps({"round": r + 1, **row}), flush=True)
        finally:
            with open(bench.STATS, "w") as fh:
                fh.write(old + "\n")
            subprocess.run(["ip", "netns", "del", bench.NS], capture_output=True)
    print("\n| variant | BPF ns per connection (median) | vs floor, same round (median) |")
    print("|---|---|---|")
    for v in VARIANTS:
        print(f"| {v} | {statistics.median(totals[v]):,.0f} | {statistics.median(ratios[v]):.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
