#!/usr/bin/env python3
"""Kernel CPU per BPF program, per connection: this checkout against another (e.g. main).

    sudo .venv/bin/python scripts/bench/progcost.py --other /path/to/other/checkout
    sudo .venv/bin/python scripts/bench/progcost.py --other DIR --modes fin,rr,rst --rounds 5 --seconds 5

On a shared machine, throughput ratios move with whatever else runs; the kernel's own account
of the time each program ran (kernel.bpf_stats_enabled: run_time_ns and run_cnt per program,
read from the tracer's program fds) does not. For each load of scripts/bench/churn.c (fin:
connection churn with FIN closes; rr: 64-byte request/response on persistent connections;
rst: every connection reset by the client, so the server's accepted socket receives the reset
and its close names the holder), the two checkouts' tracers (`--json`) run interleaved A/B
over rounds, each alone with the load; reported per program: runs per operation and ns per
run, medians over rounds, and the sum per operation. Throughput (ops/s) against no tracer is
reported too, interleaved the same way.

bpf_stats is switched on for the run and restored after.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)

import run as bench  # noqa: E402

# A namespace of our own: scripts/bench/run.py's fixed one may be in use by another run.
bench.NS = f"tte-progcost-{os.getpid()}"

STATS = "/proc/sys/kernel/bpf_stats_enabled"


def prog_stats(pid: int) -> dict[str, tuple[int, int]]:
    """program name -> (run_time_ns, run_cnt) of the BPF programs process `pid` holds."""
    out = {}
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if "bpf-prog" not in os.readlink(f"/proc/{pid}/fd/{fd}"):
                continue
            info = dict(line.split(":", 1) for line in open(f"/proc/{pid}/fdinfo/{fd}").read().splitlines()
                        if ":" in line)
        except OSError:
            continue
        pid_ = int(info["prog_id"])
        show = json.loads(subprocess.run(["bpftool", "prog", "show", "id", str(pid_), "-j"], check=True,
                                         capture_output=True, text=True).stdout)
        out[show["name"]] = (int(info.get("run_time_ns", 0)), int(info.get("run_cnt", 0)))
    return out


class Tracer:
    def __init__(self, checkout: str, tmp: str) -> None:
        self.checkout = checkout
        self.ready = os.path.join(tmp, f"ready-{abs(hash(checkout))}")

    def __enter__(self) -> "Tracer":
        if os.path.exists(self.ready):
            os.unlink(self.ready)
        self.p = subprocess.Popen([sys.executable, "-m", "tracer.cli", "--json", "--ready-file", self.ready],
                                  cwd=self.checkout, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 120
        while not (os.path.exists(self.ready) and open(self.ready).read().strip()):
            if self.p.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"tracer in {self.checkout} did not start: {self.p.communicate()[1][-2000:]}")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.p.terminate()
        self.p.communicate(timeout=60)


def load(churn: str, mode: str, seconds: float, pid: int | None) -> dict:
    before = prog_stats(pid) if pid else {}
    cpu0 = bench.proc_cpu_s(pid) if pid else 0.0
    res = bench.run_load(churn, mode, seconds)
    cpu = 100 * (bench.proc_cpu_s(pid) - cpu0) / res["seconds"] if pid else 0.0
    after = prog_stats(pid) if pid else {}
    ops = res["ops"]
    progs = {}
    for name, (ns1, n1) in after.items():
        ns0, n0 = before.get(name, (0, 0))
        runs = n1 - n0
        progs[name] = {"runs_per_op": runs / ops if ops else 0.0, "ns_per_run": (ns1 - ns0) / runs if runs else 0.0,
                       "ns_per_op": (ns1 - ns0) / ops if ops else 0.0}
    return {"ops_per_s": res["ops_per_s"], "progs": progs, "cpu_pct": cpu}


def round_of(checkout: str | None, churn: str, modes: list[str], seconds: float, tmp: str) -> dict:
    """One tracer start (compile excluded), then every load under it."""
    if checkout is None:
        return {m: load(churn, m, seconds, None) for m in modes}
    with Tracer(checkout, tmp) as t:
        return {m: load(churn, m, seconds, t.p.pid) for m in modes}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--other", required=True, help="the checkout to compare with (e.g. a `git archive main` copy)")
    ap.add_argument("--modes", default="fin,rr,rst")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=5)
    args = ap.parse_args()
    configs = {"none": None, "other": os.path.abspath(args.other), "this": ROOT}
    old = open(STATS).read().strip()
    with tempfile.TemporaryDirectory(prefix="tte-progcost-") as tmp:
        churn = bench.build_churn(tmp)
        bench.netns_up()
        modes = args.modes.split(",")
        results: dict = {m: {c: [] for c in configs} for m in modes}
        try:
            with open(STATS, "w") as fh:
                fh.write("1\n")
            for r in range(args.rounds):
                order = list(configs) if r % 2 == 0 else list(reversed(configs))
                for c in order:
                    for mode, res in round_of(configs[c], churn, modes, args.seconds, tmp).items():
                        results[mode][c].append(res)
        finally:
            with open(STATS, "w") as fh:
                fh.write(old + "\n")
            subprocess.run(["ip", "netns", "del", bench.NS], capture_output=True)
    for mode, by in results.items():
        base = statistics.median(x["ops_per_s"] for x in by["none"])
        print(f"\n## {mode}: untraced {base:,.0f} ops/s (median of {args.rounds})")
        print("| checkout | ops/s vs untraced | program | runs/op | ns/run | ns/op |")
        print("|---|---|---|---|---|---|")
        cpu = {c: statistics.median(x["cpu_pct"] for x in by[c]) for c in ("other", "this")}
        for c in ("other", "this"):
            ratio = statistics.median(x["ops_per_s"] for x in by[c]) / base
            names = sorted({n for x in by[c] for n in x["progs"]})
            total = statistics.median(sum(p["ns_per_op"] for p in x["progs"].values()) for x in by[c])
            for n in names:
                vals = [x["progs"][n] for x in by[c] if n in x["progs"]]
                print(f"| {c} | {ratio:.2f}x | {n.replace('tracepoint__', '').replace('raw_tracepoint__', 'raw:')} "
                      f"| {statistics.median(v['runs_per_op'] for v in vals):.2f} "
                      f"| {statistics.median(v['ns_per_run'] for v in vals):,.0f} "
                      f"| {statistics.median(v['ns_per_op'] for v in vals):,.0f} |")
            print(f"| {c} | {ratio:.2f}x | **all programs** (tracer process CPU {cpu[c]:.0f} %) | | | **{total:,.0f}** |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
