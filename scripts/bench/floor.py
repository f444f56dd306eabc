#!/usr/bin/env python3
"""Attach scripts/bench/floor.bpf.c (a per-CPU counter on tcptrace-explain's tracepoints) and
hold it until SIGINT or SIGTERM: the benchmark's floor configuration.

    sudo .venv/bin/python scripts/bench/floor.py --ready-file PATH

The ready file gets "1" once every program is attached.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ready-file", required=True)
    args = ap.parse_args()
    import bcc  # Debian's python3-bpfcc: a benchmark tool, outside the tracer's one-importer rule

    with open(os.path.join(HERE, "floor.bpf.c"), encoding="utf-8") as fh:
        text = fh.read()
    b = bcc.BPF(text=text.encode())
    stop = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    with open(args.ready_file, "w") as fh:
        fh.write("1\n")
    while not stop:
        signal.pause()
    b.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
