#!/usr/bin/env python3
"""The exporter's HTTP server under concurrent scrapes and idle connections (run as root).

    sudo .venv/bin/python scripts/http_bench.py [--scrapes 200] [--idle 1000] [--rounds 3]

Starts the real exporter (real BPF programs, loopback listener), then per round: N scrapes of
/metrics released at once from N client threads (latency p50/p90/max, all must be 200), and M
connections opened and left idle (the exporter's thread count from /proc/PID/task before and
with them, and a scrape's latency among them). Prints one line per round.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def scrape(port: int) -> tuple[int, float]:
    t = time.monotonic()
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=60) as r:
        r.read()
        return r.status, time.monotonic() - t


def concurrent(port: int, n: int) -> tuple[list[float], int]:
    barrier = threading.Barrier(n)
    times: list[float] = []
    bad = 0
    lock = threading.Lock()

    def one() -> None:
        nonlocal bad
        barrier.wait()
        try:
            code, dt = scrape(port)
        except OSError:
            code, dt = 0, 0.0
        with lock:
            times.append(dt)
            bad += code != 200

    threads = [threading.Thread(target=one) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sorted(times), bad


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scrapes", type=int, default=200)
    ap.add_argument("--idle", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    d = tempfile.mkdtemp(prefix="tte-httpbench-")
    ready = os.path.join(d, "ready")
    p = subprocess.Popen([sys.executable, "-m", "tracer.cli", "exporter", "--listen", "127.0.0.1:0",
                          "--ready-file", ready, "--port", "1"], cwd=REPO, stderr=subprocess.DEVNULL)
    try:
        while not os.path.exists(ready) or not open(ready).read().strip():
            if p.poll() is not None:
                print("the exporter did not start", file=sys.stderr)
                return 1
            time.sleep(0.1)
        port = int(open(ready).read())
        for r in range(a.rounds):
            times, bad = concurrent(port, a.scrapes)
            before = len(os.listdir(f"/proc/{p.pid}/task"))
            idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(a.idle)]
            time.sleep(0.5)
            during = len(os.listdir(f"/proc/{p.pid}/task"))
            code, dt = scrape(port)
            for s in idle:
                s.close()
            print(f"round {r + 1}: {a.scrapes} concurrent scrapes p50 {times[len(times) // 2] * 1000:.0f} ms, "
                  f"p90 {times[len(times) * 9 // 10] * 1000:.0f} ms, max {times[-1] * 1000:.0f} ms, "
                  f"{bad} not 200; threads {before} -> {during} with {a.idle} idle connections, "
                  f"a scrape among them {dt * 1000:.0f} ms ({code})")
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
