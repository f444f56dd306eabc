"""Replay benchmark: time and peak memory of `replay --json` over large recordings.

Builds recordings of each size with scripts/big_recording.py (from the real recordings in
tests/data/recordings), replays each one as a user would (output to /dev/null) and prints
wall time, CPU time, records per second and peak RSS. Constant memory shows as the same RSS at
every size; the target is 1,000,000 records in under 60 s and under 200 MB. CPU time and RSS
are those of the whole replay: with --processes 2 (the default for big recordings on two CPUs,
tracer/replay.py), both processes, RSS summed (pages the two share after the fork count twice).

    .venv/bin/python scripts/replay_bench.py --sizes 100000,1000000 --dir /tmp [--processes 1|2]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from typing import Optional

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def rss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as fh:
            return next(int(line.split()[1]) for line in fh if line.startswith("VmRSS:"))
    except (OSError, StopIteration):
        return 0


def tree_rss_kib(pid: int) -> int:
    """RSS of pid and its children (the explaining process of a two-process replay)."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as fh:
            children = [int(c) for c in fh.read().split()]
    except OSError:
        children = []
    return rss_kib(pid) + sum(rss_kib(c) for c in children)


def replay_once(path: str, processes: Optional[int]) -> tuple[float, float, int, list[int]]:
    """(wall s, CPU s, peak RSS KiB, RSS KiB sampled every second) of one replay."""
    t = time.monotonic()
    samples = []
    cmd = [sys.executable, "-m", "tracer.cli", "replay", "--json", path]
    if processes:
        cmd[4:4] = ["--processes", str(processes)]
    with open(os.devnull, "w") as out:
        p = subprocess.Popen(cmd, cwd=REPO, stdout=out, stderr=out)
        while True:
            pid, status, usage = os.wait4(p.pid, os.WNOHANG)    # this child's own rusage
            if pid:
                break
            samples.append(tree_rss_kib(p.pid))
            time.sleep(1.0)
    wall = time.monotonic() - t
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0:
        raise SystemExit(f"replay of {path} failed: rc {p.returncode}")
    # The rusage of a child includes its own children's, once it waited for them.
    samples = [x for x in samples if x]
    return wall, usage.ru_utime + usage.ru_stime, max([usage.ru_maxrss, *samples]), samples


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="100000,1000000", help="records per recording, comma list")
    ap.add_argument("--dir", default="/tmp", help="where the generated recordings go")
    ap.add_argument("--processes", type=int, choices=(1, 2), help="replay --processes (default: the replay's own choice)")
    a = ap.parse_args()
    print(f"{'records':>9} {'MB':>6} {'wall s':>7} {'cpu s':>7} {'rec/s':>8} {'peak RSS MB':>11}  "
          "RSS MB at 25/50/75/100 % of the run")
    for n in (int(x) for x in a.sizes.split(",")):
        path = os.path.join(a.dir, f"tte-bench-{n}.jsonl")
        if not os.path.exists(path):
            subprocess.run([sys.executable, os.path.join(REPO, "scripts", "big_recording.py"), "--count", str(n),
                            path], check=True)
        wall, cpu, rss, samples = replay_once(path, a.processes)
        quarters = " / ".join(f"{samples[min(len(samples) - 1, len(samples) * q // 4)] / 1024:.0f}"
                              for q in (1, 2, 3, 4)) if samples else "-"
        print(f"{n:>9} {os.path.getsize(path) / 1e6:>6.0f} {wall:>7.1f} {cpu:>7.1f} {n / wall:>8.0f} "
              f"{rss / 1024:>11.0f}  {quarters}", flush=True)


if __name__ == "__main__":
    main()
