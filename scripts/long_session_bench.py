"""Long-session memory benchmark: the live tracer's RSS over N connections to distinct
endpoints (each a connect refused by the kernel: a reset sent, a reset received, an abort).

Remote ends are distinct loopback addresses 127.a.b.c (all local on Linux) on one closed port,
traced with --port so only these count; --storm-limit is raised so every event goes through
user space (the tables under test), and connects are paced to --rate so the consumer keeps up.
Prints the tracer's RSS every tenth of the run and its final counters. Needs root.

    sudo .venv/bin/python scripts/long_session_bench.py --connections 1000000 --rate 3000
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmRSS:")) / 1024


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def connect_refused(addr: str, port: int) -> None:
    s = socket.socket()
    try:
        s.connect((addr, port))
    except ConnectionRefusedError:
        pass
    finally:
        s.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--connections", type=int, default=1_000_000)
    ap.add_argument("--rate", type=float, default=3000.0, help="connects per second")
    a = ap.parse_args()
    port = free_port()
    tmp = tempfile.mkdtemp(prefix="tte-long-")
    ready = os.path.join(tmp, "ready")
    err_path = os.path.join(tmp, "stderr")
    with open(os.devnull, "w") as out, open(err_path, "w") as err:
        p = subprocess.Popen([sys.executable, "-m", "tracer.cli", "--json", "--port", str(port), "--storm-limit",
                              "1000000", "--ringbuf-pages", "4096", "--ready-file", ready], cwd=REPO,
                             stdout=out, stderr=err)
        while not os.path.exists(ready):
            if p.poll() is not None:
                raise SystemExit(open(err_path).read())
            time.sleep(0.1)
        start = time.monotonic()
        print(f"{'connections':>11} {'elapsed s':>9} {'tracer RSS MB':>13}", flush=True)
        print(f"{0:>11} {0:>9.0f} {rss_mb(p.pid):>13.1f}", flush=True)
        step = max(1, a.connections // 10)
        for i in range(1, a.connections + 1):
            connect_refused(f"127.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255 or 1}", port)
            ahead = i / a.rate - (time.monotonic() - start)
            if ahead > 0:
                time.sleep(ahead)
            if i % step == 0:
                print(f"{i:>11} {time.monotonic() - start:>9.0f} {rss_mb(p.pid):>13.1f}", flush=True)
        time.sleep(2)
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=300)
    text = open(err_path).read()
    summary = json.loads(text[text.rindex('{"summary"'):].splitlines()[0])
    print(f"tracer rc {p.returncode}: records {summary['records']}, lost {summary['lost']}, "
          f"explained {summary['summary']['total']}, evicted {summary['summary'].get('evicted')}")


if __name__ == "__main__":
    main()
