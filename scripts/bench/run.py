#!/usr/bin/env python3
"""Benchmark tcptrace-explain against no tracer and bcc's tcplife/tcpstates, side by side.

    sudo .venv/bin/python scripts/bench/run.py                 # full run, writes docs/benchmarks.md
    sudo .venv/bin/python scripts/bench/run.py --quick         # 1 round of 2 s, nothing written

Loads (scripts/bench/churn.c, built here with gcc) run on loopback inside a dedicated network
namespace, so the kernel's counters there belong to the benchmark alone:
  fin   saturated connection churn, clean FIN closes
  rr    saturated 64-byte request/response on persistent connections (per-I/O cost shows here)
  rst   saturated churn where every connection is reset (a reset storm)
Tracers are started before each run (compile time excluded) and stopped after it; runs are
interleaved A/B/A/B over rounds so machine drift cancels; medians are reported.
Also measured: records lost per tool, tracer CPU and RSS, reset-to-explanation latency at
1,000 resets/s, and RSS after 1,000,000 connections with the kernel maps' fill.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from datetime import datetime

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NS = "tte-bench"
TTE = [os.path.join(ROOT, ".venv", "bin", "tcptrace-explain")]


def sh(*cmd, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)


def build_churn(tmp: str) -> str:
    out = os.path.join(tmp, "churn")
    sh("gcc", "-O2", "-Wall", "-pthread", "-o", out, os.path.join(ROOT, "scripts", "bench", "churn.c"))
    return out


def netns_up() -> None:
    subprocess.run(["ip", "netns", "del", NS], capture_output=True)
    sh("ip", "netns", "add", NS)
    sh("ip", "-n", NS, "link", "set", "lo", "up")


def nstat(key: str) -> int:
    out = sh("ip", "netns", "exec", NS, "nstat", "-azsj").stdout
    return int(json.loads(out)["kernel"].get(key, 0))


def proc_cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as fh:
        f = fh.read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def proc_rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


class Tracer:
    """One traced configuration: start (excluded from timing), stop, read its loss."""

    def __init__(self, name: str, tmp: str) -> None:
        self.name = name
        self.tmp = tmp
        self.p = None
        self.out = os.path.join(tmp, f"{name}.out")
        self.err = os.path.join(tmp, f"{name}.err")
        self.port = None

    def start(self) -> None:
        if self.name == "none":
            return
        ready = os.path.join(self.tmp, f"{self.name}.ready")
        if os.path.exists(ready):
            os.unlink(ready)
        out, err = open(self.out, "w"), open(self.err, "w")
        if self.name == "tte-json":
            cmd = TTE + ["--json", "--ready-file", ready]
            out.close()
            out = open(os.devnull, "w")
        elif self.name == "tte-exporter":
            cmd = TTE + ["exporter", "--listen", "127.0.0.1:0", "--ready-file", ready]
        else:
            cmd = [shutil.which(f"{self.name}-bpfcc")]
        self.p = subprocess.Popen(cmd, stdout=out, stderr=err, text=True)
        deadline = time.monotonic() + 60
        while True:
            if self.name.startswith("tte") and os.path.exists(ready) and open(ready).read().strip():
                if self.name == "tte-exporter":
                    self.port = int(open(ready).read())
                break
            if not self.name.startswith("tte") and os.path.getsize(self.out) > 0:
                break  # bcc tools print their header once attached
            if self.p.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} did not start: {open(self.err).read()[-2000:]}")
            time.sleep(0.05)
        self.cpu0 = proc_cpu_s(self.p.pid)

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=10) as r:
            return r.read().decode()

    def stop(self, seconds: float) -> dict:
        if self.p is None:
            return {}
        res = {"cpu_pct": 100 * (proc_cpu_s(self.p.pid) - self.cpu0) / seconds, "rss_mb": proc_rss_mb(self.p.pid)}
        if self.name == "tte-exporter":
            text = self.metrics()
            res["lost"] = int(float(re.search(r"^tcptrace_records_lost_total (\S+)", text, re.M).group(1)))
            res["records"] = int(float(re.search(r"^tcptrace_records_total (\S+)", text, re.M).group(1)))
            res["sent"] = int(sum(float(m) for m in re.findall(
                r'^tcptrace_resets_total\{direction="sent"[^}]*\} (\S+)', text, re.M)))
        self.p.send_signal(signal.SIGINT)
        try:
            self.p.wait(timeout=120)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()
        err = open(self.err).read()
        if self.name == "tte-json":
            summary = json.loads([line for line in err.splitlines() if line.startswith("{")][-1])
            res["lost"], res["records"] = summary["lost"], summary["records"]
            res["tables"] = summary.get("tables")
        elif not self.name.startswith("tte"):
            out = open(self.out).read()
            printed = max(0, len(out.splitlines()) - 1)
            lost = sum(int(n) for n in re.findall(r"[Pp]ossibly lost (\d+) samples", out + err))
            res["records"], res["lost"] = printed + lost, lost
        self.p = None
        return res


def run_load(churn: str, mode: str, seconds: float, rate: float = 0, max_ops: int = 0) -> dict:
    cmd = ["ip", "netns", "exec", NS, churn, "--mode", mode, "--threads", "2", "--duration", str(seconds)]
    if rate:
        cmd += ["--rate", str(rate)]
    if max_ops:
        cmd += ["--max", str(max_ops)]
    return json.loads(sh(*cmd, timeout=seconds + 600).stdout)


def ab(churn: str, mode: str, configs: list[str], rounds: int, seconds: float, tmp: str) -> dict:
    results: dict[str, list[dict]] = {c: [] for c in configs}
    for r in range(rounds):
        order = configs[r % len(configs):] + configs[:r % len(configs)]
        for c in order:
            t = Tracer(c, tmp)
            t.start()
            rsts0 = nstat("TcpOutRsts")
            load = run_load(churn, mode, seconds)
            time.sleep(0.3)
            info = t.stop(load["seconds"])
            info["out_rsts"] = nstat("TcpOutRsts") - rsts0
            info["ops_per_s"] = load["ops_per_s"]
            results[c].append(info)
            print(f"  {mode} round {r + 1} {c:<13} {load['ops_per_s']:>10.0f}/s  {json.dumps(info)}", flush=True)
    return results


def latency(churn: str, tmp: str, rate: int = 1000, seconds: float = 10) -> dict:
    """Reset to explanation line: the JSON line's arrival minus the kernel event's time."""
    ready = os.path.join(tmp, "lat.ready")
    p = subprocess.Popen(TTE + ["--json", "--ready-file", ready], stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, text=True, bufsize=1)
    while not os.path.exists(ready):
        time.sleep(0.05)
    lat: list[float] = []

    def reader():
        for line in p.stdout:
            arrived = time.time()
            e = json.loads(line)
            if e["event"] == "reset_sent":
                ts = datetime.strptime(e["ts"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(
                    tzinfo=__import__("datetime").timezone.utc).timestamp()
                lat.append((arrived - ts) * 1000)

    th = threading.Thread(target=reader, daemon=True)
    th.start()
    run_load(churn, "rst", seconds, rate=rate)
    time.sleep(1)
    p.send_signal(signal.SIGINT)
    p.wait(timeout=60)
    th.join(timeout=10)
    lat.sort()
    return {"samples": len(lat), "median_ms": statistics.median(lat), "p99_ms": lat[int(len(lat) * 0.99) - 1]}


def million(churn: str, tmp: str, n: int) -> dict:
    t = Tracer("tte-json", tmp)
    t.start()
    load = run_load(churn, "fin", 600, max_ops=n)
    info = t.stop(load["seconds"])
    info["connections"] = load["ops"]
    return info


def med(rows: list[dict], key: str) -> float:
    vals = [r[key] for r in rows if key in r]
    return statistics.median(vals) if vals else float("nan")


def report(all_results: dict, lat: dict, mil: dict, cmd: str, rounds: int, seconds: float) -> str:
    lines = [
        "# Benchmarks",
        "",
        f"Measured on this project's machine ({os.cpu_count()} cores, kernel {os.uname().release}), "
        f"{datetime.now().strftime('%Y-%m-%d')}. Reproduce with:",
        "",
        f"    {cmd}",
        "",
        f"Loopback inside a dedicated network namespace, loads from `scripts/bench/churn.c` with 2 client and "
        f"2 server threads; {rounds} interleaved rounds of {seconds:.0f} s per configuration, medians. "
        "`lost` is records (or events) lost over all rounds; CPU is the tracer's own, in % of one core.",
        "",
    ]
    for mode, title in (("fin", "Saturated connection churn, FIN closes"),
                        ("rr", "Saturated 64-byte request/response on persistent connections"),
                        ("rst", "Reset storm: every connection reset (SO_LINGER 0)")):
        res = all_results.get(mode)
        if not res:
            continue
        base = med(res["none"], "ops_per_s")
        lines += [f"## {title}", "", "| tracer | ops/s (median) | vs untraced | lost | tracer CPU % | tracer RSS MB |",
                  "|---|---|---|---|---|---|"]
        for c, rows in res.items():
            ops = med(rows, "ops_per_s")
            lost = sum(r.get("lost", 0) for r in rows)
            recs = sum(r.get("records", 0) for r in rows)
            lost_s = "-" if c == "none" else f"{lost} of {recs} ({100 * lost / recs:.1f} %)" if recs else str(lost)
            cpu = "-" if c == "none" else f"{med(rows, 'cpu_pct'):.0f}"
            rss = "-" if c == "none" else f"{med(rows, 'rss_mb'):.0f}"
            lines.append(f"| {c} | {ops:,.0f} | {ops / base:.2f}x | {lost_s} | {cpu} | {rss} |")
        if mode == "rst" and "tte-exporter" in res:
            rows = res["tte-exporter"]
            exact = all(r.get("sent") == r.get("out_rsts") for r in rows)
            lines += ["", "Exporter counts of resets sent against the kernel's `OutRsts` in the namespace, per round: "
                      + ", ".join(f"{r.get('sent')} vs {r.get('out_rsts')}" for r in rows)
                      + (" (exact)." if exact else " (NOT exact).")]
        lines.append("")
    if lat:
        lines += ["## Latency from a reset to its explanation line", "",
                  f"Paced at 1,000 resets/s for 10 s, `--json`: {lat['samples']} explained resets; "
                  f"median {lat['median_ms']:.1f} ms, 99th percentile {lat['p99_ms']:.1f} ms "
                  "(event time from the kernel, arrival time of the JSON line; millisecond timestamps).", ""]
    if mil:
        lines += ["## Memory after 1,000,000 connections", "",
                  f"{mil['connections']:,} FIN-closed connections traced in `--json` mode: tracer RSS "
                  f"{mil['rss_mb']:.0f} MB; kernel tables at the end: "
                  + ", ".join(f"{k} {v[0]}/{v[1]}" for k, v in (mil.get("tables") or {}).items())
                  + f"; lost {mil.get('lost')}.", ""]
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--modes", default="fin,rr,rst")
    ap.add_argument("--quick", action="store_true", help="1 round of 2 s, no latency/1M runs, no report")
    ap.add_argument("--million", type=int, default=1_000_000)
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench: run as root", file=sys.stderr)
        return 1
    if args.quick:
        args.rounds, args.seconds = 1, 2
    configs = ["none", "tte-json", "tte-exporter", "tcplife", "tcpstates"]
    missing = [c for c in ("tcplife", "tcpstates") if not shutil.which(f"{c}-bpfcc")]
    if missing:
        print(f"bench: {missing} not found (apt-get install bpfcc-tools); skipping them", file=sys.stderr)
        configs = [c for c in configs if c not in missing]
    tmp = tempfile.mkdtemp(prefix="tte-bench-")
    netns_up()
    try:
        churn = build_churn(tmp)
        results = {}
        for mode in args.modes.split(","):
            print(f"== {mode}", flush=True)
            results[mode] = ab(churn, mode, configs, args.rounds, args.seconds, tmp)
        lat = mil = {}
        if not args.quick:
            print("== latency at 1,000 resets/s", flush=True)
            lat = latency(churn, tmp)
            print(f"  {lat}", flush=True)
            print(f"== {args.million:,} connections", flush=True)
            mil = million(churn, tmp, args.million)
            print(f"  {mil}", flush=True)
        cmd = "sudo .venv/bin/python scripts/bench/run.py" + (f" --rounds {args.rounds}" if args.rounds != 3 else "")
        text = report(results, lat, mil, cmd, args.rounds, args.seconds)
        print(text)
        if not args.quick:
            with open(os.path.join(ROOT, "docs", "benchmarks.md"), "w", encoding="utf-8") as fh:
                fh.write(text)
    finally:
        subprocess.run(["ip", "netns", "del", NS], capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
