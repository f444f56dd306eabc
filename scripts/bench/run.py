#!/usr/bin/env python3
"""Benchmark tcptrace-explain against no tracer and bcc's tcplife/tcpstates, side by side.

    sudo .venv/bin/python scripts/bench/run.py                 # full run, writes docs/benchmarks.md
    sudo .venv/bin/python scripts/bench/run.py --quick         # 1 round of 2 s, nothing written
    sudo .venv/bin/python scripts/bench/run.py --baseline DIR  # also DIR's tracer (e.g. `git archive` of main)

Loads (scripts/bench/churn.c, built here with gcc) run on loopback inside a dedicated network
namespace, so the kernel's counters there belong to the benchmark alone:
  cfin   pure connect/close, no payload, the client closes first (TIME_WAIT on the client)
  sfin   pure connect/close, no payload, the server closes first (TIME_WAIT on the server)
  abort  pure connect/close, no payload, the client closes with SO_LINGER 0 (one RST each)
  fin    saturated connection churn with a 1-byte request/response, clean FIN closes
  rr     saturated 64-byte request/response on persistent connections (per-I/O cost shows here)
  rst    churn where every connection is reset after a 1-byte exchange (a reset storm)
Configurations: no tracer; the floor (scripts/bench/floor.py: a per-CPU counter on the same
tracepoints, the least any tracer there can cost); tcptrace-explain in --json and exporter
mode; with --baseline, another checkout's tracer in --json mode; bcc's tcplife and tcpstates.
Each is started once per round (compile time excluded) and every load runs under it; the order
of configurations rotates over rounds so machine drift cancels; medians are reported.

Throughput moves with whatever else runs on the machine; the kernel's own account of the time
each BPF program ran does not: kernel.bpf_stats_enabled is switched on for the run (and
restored after), and run_time_ns / run_cnt of every program the tracer's process holds are read
from its fds (names from bpftool) before and after each load: BPF ns per operation, per program.
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

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
NS = f"tte-bench-{os.getpid()}"
PY = os.path.join(ROOT, ".venv", "bin", "python")
TTE = [os.path.join(ROOT, ".venv", "bin", "tcptrace-explain")]
STATS = "/proc/sys/kernel/bpf_stats_enabled"
MODES = {
    "cfin": "Pure connect/close, the client closes first (FIN)",
    "sfin": "Pure connect/close, the server closes first (FIN)",
    "abort": "Pure connect/close, abortive close (SO_LINGER 0: one RST per connection)",
    "fin": "Connection churn with a 1-byte request/response, FIN closes",
    "rr": "Saturated 64-byte request/response on persistent connections",
    "rst": "Reset storm: every connection reset after a 1-byte exchange (SO_LINGER 0)",
}


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


_prog_names: dict[int, str] = {}


def prog_stats(pid: int) -> dict[str, tuple[int, int]]:
    """program name -> (run_time_ns, run_cnt) of the BPF programs process `pid` holds."""
    out: dict[str, tuple[int, int]] = {}
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if "bpf-prog" not in os.readlink(f"/proc/{pid}/fd/{fd}"):
                continue
            with open(f"/proc/{pid}/fdinfo/{fd}") as fh:
                info = dict(line.split(":", 1) for line in fh.read().splitlines() if ":" in line)
        except OSError:
            continue
        pid_ = int(info["prog_id"])
        if pid_ not in _prog_names:
            show = json.loads(sh("bpftool", "prog", "show", "id", str(pid_), "-j").stdout)
            _prog_names[pid_] = show["name"]
        name = _prog_names[pid_]
        ns0, n0 = out.get(name, (0, 0))
        out[name] = (ns0 + int(info.get("run_time_ns", 0)), n0 + int(info.get("run_cnt", 0)))
    return out


class Tracer:
    """One traced configuration: start (excluded from timing), stop, read its loss."""

    def __init__(self, name: str, tmp: str, baseline: str | None = None, netns: str | None = None) -> None:
        self.name = name
        self.netns = netns
        self.tmp = tmp
        self.baseline = baseline
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
        cwd = None
        if self.name in ("tte-json", "baseline-json"):
            cmd = TTE + ["--json", "--ready-file", ready]
            if self.name == "baseline-json":
                # the baseline checkout's own package: its directory comes first on sys.path
                cmd, cwd = [PY, "-m", "tracer.cli", "--json", "--ready-file", ready], self.baseline
            out.close()
            out = open(os.devnull, "w")
        elif self.name == "tte-exporter":
            cmd = TTE + ["exporter", "--listen", "127.0.0.1:0", "--ready-file", ready]
            if self.netns:
                cmd += ["--netns", self.netns]
        elif self.name == "floor":
            cmd = [PY, os.path.join(HERE, "floor.py"), "--ready-file", ready]
        else:
            cmd = [shutil.which(f"{self.name}-bpfcc")]
        self.p = subprocess.Popen(cmd, stdout=out, stderr=err, text=True, cwd=cwd)
        deadline = time.monotonic() + 120
        while True:
            if self.own_ready() and os.path.exists(ready) and open(ready).read().strip():
                if self.name == "tte-exporter":
                    self.port = int(open(ready).read())
                break
            if not self.own_ready() and os.path.getsize(self.out) > 0:
                break  # bcc tools print their header once attached
            if self.p.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} did not start: {open(self.err).read()[-2000:]}")
            time.sleep(0.05)

    def own_ready(self) -> bool:
        return self.name not in ("tcplife", "tcpstates")

    def snapshot(self) -> dict:
        """What one load is measured against: CPU, BPF program stats, exporter counts, output lines."""
        if self.p is None:
            return {}
        snap: dict = {"cpu": proc_cpu_s(self.p.pid), "progs": prog_stats(self.p.pid)}
        if self.name == "tte-exporter":
            snap.update(self.exporter_counts())
        elif not self.own_ready():
            with open(self.out) as fh:
                snap["lines"] = sum(1 for _ in fh)
        return snap

    def exporter_counts(self) -> dict:
        text = self.metrics()
        return {
            "lost": int(float(re.search(r"^tcptrace_records_lost_total (\S+)", text, re.M).group(1))),
            "records": int(float(re.search(r"^tcptrace_records_total (\S+)", text, re.M).group(1))),
            "sent": int(sum(float(m) for m in re.findall(
                r'^tcptrace_resets_total\{direction="sent"[^}]*\} (\S+)', text, re.M))),
        }

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=10) as r:
            return r.read().decode()

    def stop(self) -> dict:
        """Stop; what only the end tells: RSS, and for --json the records lost over the session."""
        if self.p is None:
            return {}
        res = {"rss_mb": proc_rss_mb(self.p.pid)}
        self.p.send_signal(signal.SIGINT)
        try:
            self.p.wait(timeout=120)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()
        err = open(self.err).read()
        if self.name in ("tte-json", "baseline-json"):
            summary = json.loads([line for line in err.splitlines() if line.startswith("{")][-1])
            res["lost"], res["records"] = summary["lost"], summary["records"]
            res["tables"] = summary.get("tables")
        elif not self.own_ready():
            res["lost"] = sum(int(n) for n in re.findall(r"[Pp]ossibly lost (\d+) samples", open(self.out).read() + err))
        self.p = None
        return res


def measured(t: Tracer, before: dict, after: dict, load: dict) -> dict:
    """One load under tracer T: throughput, tracer CPU, BPF ns per operation per program, counts."""
    info: dict = {"ops_per_s": load["ops_per_s"]}
    if not before:
        return info
    ops = max(1, load["ops"])
    info["cpu_pct"] = 100 * (after["cpu"] - before["cpu"]) / load["seconds"]
    progs = {}
    for name, (ns1, n1) in after["progs"].items():
        ns0, n0 = before["progs"].get(name, (0, 0))
        if n1 - n0:
            progs[name] = {"runs_per_op": (n1 - n0) / ops, "ns_per_run": (ns1 - ns0) / (n1 - n0),
                           "ns_per_op": (ns1 - ns0) / ops}
    info["progs"] = progs
    info["bpf_ns_per_op"] = sum(p["ns_per_op"] for p in progs.values())
    for k in ("lost", "records", "sent"):
        if k in after:
            info[k] = after[k] - before[k]
    if "lines" in after:
        info["records"] = after["lines"] - before["lines"]
    return info


def run_load(churn: str, mode: str, seconds: float, rate: float = 0, max_ops: int = 0) -> dict:
    cmd = ["ip", "netns", "exec", NS, churn, "--mode", mode, "--threads", "2", "--duration", str(seconds)]
    if rate:
        cmd += ["--rate", str(rate)]
    if max_ops:
        cmd += ["--max", str(max_ops)]
    return json.loads(sh(*cmd, timeout=seconds + 600).stdout)


def rounds_of(churn: str, modes: list[str], configs: list[str], rounds: int, seconds: float, tmp: str,
              baseline: str | None) -> tuple[dict, dict]:
    """Every load under every configuration, one start per configuration per round, order rotated."""
    results: dict[str, dict[str, list[dict]]] = {m: {c: [] for c in configs} for m in modes}
    sessions: dict[str, list[dict]] = {c: [] for c in configs}
    for r in range(rounds):
        order = configs[r % len(configs):] + configs[:r % len(configs)]
        for c in order:
            t = Tracer(c, tmp, baseline)
            t.start()
            try:
                for mode in modes:
                    # a fresh namespace per load: TIME_WAIT sockets left by the previous load would
                    # change the next one's port search (and overflow tcp_max_tw_buckets)
                    netns_up()
                    rsts0 = nstat("TcpOutRsts")
                    before = t.snapshot()
                    load = run_load(churn, mode, seconds)
                    time.sleep(0.3)
                    info = measured(t, before, t.snapshot(), load)
                    info["out_rsts"] = nstat("TcpOutRsts") - rsts0
                    results[mode][c].append(info)
                    brief = {k: (round(v) if isinstance(v, float) else v) for k, v in info.items() if k != "progs"}
                    print(f"  round {r + 1} {mode:<5} {c:<13} {load['ops_per_s']:>10.0f}/s  {json.dumps(brief)}",
                          flush=True)
            finally:
                sessions[c].append(t.stop())
    return results, sessions


def exactness(churn: str, modes: list[str], seconds: float, tmp: str) -> dict:
    """Exporter reset counts against OutRsts, with the exporter filtered to the bench namespace.

    In the rounds above the exporter counts every namespace's resets (another engineer's test
    adds its own), while OutRsts is the bench namespace's alone; here both count the same."""
    out = {}
    for mode in [m for m in modes if m in ("abort", "rst")]:
        netns_up()
        t = Tracer("tte-exporter", tmp, netns=NS)
        t.start()
        try:
            rsts0, before = nstat("TcpOutRsts"), t.exporter_counts()
            load = run_load(churn, mode, seconds)
            time.sleep(0.5)
            after = t.exporter_counts()
            out[mode] = {"sent": after["sent"] - before["sent"], "out_rsts": nstat("TcpOutRsts") - rsts0,
                         "lost": after["lost"] - before["lost"], "ops": load["ops"]}
        finally:
            t.stop()
        print(f"  exactness {mode}: {out[mode]}", flush=True)
    return out


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
    info = t.stop()
    info["connections"] = load["ops"]
    return info


def med(rows: list[dict], key: str) -> float:
    vals = [r[key] for r in rows if key in r]
    return statistics.median(vals) if vals else float("nan")


def lost_text(rows: list[dict]) -> str:
    lost = sum(r.get("lost", 0) for r in rows)
    recs = sum(r.get("records", 0) for r in rows)
    return f"{lost} of {recs} ({100 * lost / recs:.1f} %)" if recs else str(lost)


def short(prog: str) -> str:
    return prog.replace("tracepoint__", "").replace("raw_tracepoint__", "raw:")


def report(results: dict, sessions: dict, exact: dict, lat: dict, mil: dict, cmd: str, rounds: int,
           seconds: float, baseline_name: str = "") -> str:
    configs = [c for c in next(iter(results.values()))]
    traced = [c for c in configs if c != "none"]
    lines = [
        "# Benchmarks",
        "",
        f"Measured on this project's machine ({os.cpu_count()} cores, kernel {os.uname().release}), "
        f"{datetime.now().strftime('%Y-%m-%d')}, while other work ran on it (throughput is noisy; BPF "
        "run time is not). Reproduce with:",
        "",
        f"    {cmd}",
        "",
        f"Loopback inside a dedicated network namespace, loads from `scripts/bench/churn.c` with 2 client and "
        f"2 server threads; {rounds} rounds, each configuration started once per round (order rotated) with "
        f"every load of {seconds:.0f} s under it; medians. `floor` is `scripts/bench/floor.py`: a per-CPU "
        "counter on the same tracepoints, the least a tracer there can cost. BPF ns per operation is the "
        "kernel's own account (`kernel.bpf_stats_enabled`, run_time_ns / run_cnt of every program the "
        "tracer holds), summed over programs and divided by the load's connections (or exchanges). The "
        "tracers see every namespace, so another load on the machine adds runs: medians over rounds keep "
        "such a round out.",
        "",
    ]
    if "baseline-json" in configs:
        lines += [f"`baseline-json` is the tracer of the --baseline checkout{': ' + baseline_name if baseline_name else ''}, "
                  "in `--json` mode, interleaved with the others.", ""]
    lines += [
        "## BPF ns per operation, and against the floor",
        "",
        "| tracer | " + " | ".join(results) + " |",
        "|---|" + "---|" * len(results),
    ]
    for c in traced:
        cells = []
        for res in results.values():
            ns = med(res[c], "bpf_ns_per_op")
            floor = med(res["floor"], "bpf_ns_per_op") if "floor" in res else float("nan")
            cells.append(f"{ns:,.0f}" + (f" ({ns / floor:.1f}x)" if c != "floor" and floor == floor else ""))
        lines.append(f"| {c} | " + " | ".join(cells) + " |")
    lines += ["", "Per-program cost of tcptrace-explain (`tte-json`; ns per run and runs per operation, medians):", "",
              "| load | program | runs/op | ns/run | ns/op |", "|---|---|---|---|---|"]
    for mode, res in results.items():
        for c in [x for x in ("baseline-json", "tte-json") if x in res]:
            names = sorted({n for row in res[c] for n in row.get("progs", {})})
            for n in names:
                vals = [row["progs"][n] for row in res[c] if n in row.get("progs", {})]
                lines.append(f"| {mode}{' (baseline)' if c == 'baseline-json' else ''} | {short(n)} "
                             f"| {statistics.median(v['runs_per_op'] for v in vals):.2f} "
                             f"| {statistics.median(v['ns_per_run'] for v in vals):,.0f} "
                             f"| {statistics.median(v['ns_per_op'] for v in vals):,.0f} |")
    lines.append("")
    for mode, res in results.items():
        base = med(res["none"], "ops_per_s")
        lines += [f"## {MODES[mode]} ({mode})", "",
                  "| tracer | ops/s (median) | vs untraced | BPF ns/op | lost | tracer CPU % |",
                  "|---|---|---|---|---|---|"]
        for c, rows in res.items():
            ops = med(rows, "ops_per_s")
            if c == "none":
                lines.append(f"| none | {ops:,.0f} | 1.00x | - | - | - |")
                continue
            lost = "(per session, below)" if c in ("tte-json", "baseline-json") else lost_text(rows)
            if c == "floor":
                lost = "-"
            lines.append(f"| {c} | {ops:,.0f} | {ops / base:.2f}x | {med(rows, 'bpf_ns_per_op'):,.0f} | {lost} "
                         f"| {med(rows, 'cpu_pct'):.0f} |")
        if mode in exact:
            e = exact[mode]
            lines += ["", f"Exporter counts of resets sent against the kernel's `OutRsts` in the bench namespace "
                      f"(a separate {seconds:.0f} s run with the exporter filtered to that namespace: unfiltered, it "
                      f"also counts the machine's other namespaces): {e['sent']} vs {e['out_rsts']}"
                      + (" (exact)" if e["sent"] == e["out_rsts"] else " (NOT exact)")
                      + f", {e['lost']} records lost."]
        lines.append("")
    lines += ["## Per session (every load above under one start)", "",
              "| tracer | records lost over all loads, all rounds | RSS MB at the end (median) |", "|---|---|---|"]
    for c in traced:
        rows = sessions.get(c, [])
        lost = lost_text(rows) if c in ("tte-json", "baseline-json") else "(per load, above)"
        lines.append(f"| {c} | {'-' if c == 'floor' else lost} | {med(rows, 'rss_mb'):.0f} |")
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


# docs/benchmarks.md also holds other benchmarks' sections (scripts/http_bench.py and others),
# written by hand from their own runs: everything after this line is theirs and is kept.
END_MARK = "<!-- end of scripts/bench/run.py's part: what follows is kept when it rewrites the part above -->"


def write_report(path: str, text: str) -> None:
    rest = ""
    if os.path.exists(path):
        with open(path, encoding="utf-8") as fh:
            old = fh.read()
        if END_MARK in old:
            rest = old.split(END_MARK, 1)[1]
        else:
            print(f"bench: {path} has no end marker; writing only this run's part", file=sys.stderr)
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(text + "\n" + END_MARK + rest)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--configs", default="none,floor,tte-json,tte-exporter,tcplife,tcpstates",
                    help="comma-separated subset (baseline-json is added by --baseline)")
    ap.add_argument("--baseline", help="another checkout whose tracer runs beside this one (--json)")
    ap.add_argument("--baseline-name", default="", help="what the baseline is, for the report (e.g. a commit)")
    ap.add_argument("--quick", action="store_true", help="1 round of 2 s, no latency/1M runs, no report")
    ap.add_argument("--no-extras", action="store_true", help="no latency/1M runs, no report written")
    ap.add_argument("--million", type=int, default=1_000_000)
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench: run as root", file=sys.stderr)
        return 1
    if args.quick:
        args.rounds, args.seconds, args.no_extras = 1, 2, True
    modes = args.modes.split(",")
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        print(f"bench: unknown modes {unknown}; known: {', '.join(MODES)}", file=sys.stderr)
        return 2
    configs = args.configs.split(",")
    if args.baseline:
        configs.insert(configs.index("tte-json") if "tte-json" in configs else len(configs), "baseline-json")
    missing = [c for c in ("tcplife", "tcpstates") if c in configs and not shutil.which(f"{c}-bpfcc")]
    if missing:
        print(f"bench: {missing} not found (apt-get install bpfcc-tools); skipping them", file=sys.stderr)
        configs = [c for c in configs if c not in missing]
    if not shutil.which("bpftool"):
        print("bench: bpftool not found (apt-get install bpftool; scripts/setup.sh does)", file=sys.stderr)
        return 1
    tmp = tempfile.mkdtemp(prefix="tte-bench-")
    old_stats = open(STATS).read().strip()
    netns_up()
    try:
        churn = build_churn(tmp)
        with open(STATS, "w") as fh:
            fh.write("1\n")
        try:
            results, sessions = rounds_of(churn, modes, configs, args.rounds, args.seconds, tmp,
                                          os.path.abspath(args.baseline) if args.baseline else None)
        finally:
            with open(STATS, "w") as fh:
                fh.write(old_stats + "\n")
        exact = {}
        if "tte-exporter" in configs:
            print("== exporter counts against OutRsts, exporter filtered to the bench namespace", flush=True)
            exact = exactness(churn, modes, args.seconds, tmp)
        lat = mil = {}
        if not args.no_extras:
            print("== latency at 1,000 resets/s", flush=True)
            lat = latency(churn, tmp)
            print(f"  {lat}", flush=True)
            print(f"== {args.million:,} connections", flush=True)
            mil = million(churn, tmp, args.million)
            print(f"  {mil}", flush=True)
        cmd = "sudo .venv/bin/python scripts/bench/run.py" + "".join(
            f" {flag} {val}" for flag, val, default in (("--rounds", args.rounds, 3), ("--seconds", args.seconds, 5))
            if val != default) + (" --baseline DIR" if args.baseline else "")
        text = report(results, sessions, exact, lat, mil, cmd, args.rounds, args.seconds, args.baseline_name)
        print(text)
        if not args.no_extras:
            write_report(os.path.join(ROOT, "docs", "benchmarks.md"), text)
    finally:
        subprocess.run(["ip", "netns", "del", NS], capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
