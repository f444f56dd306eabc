#!/usr/bin/env python3
"""What reading a process's facts costs (tracer/explain/procinfo.py read_facts: exe, maps, Go
build info): done once per process, when its first record arrives, so the cost grows with the
number of new processes that reset, not with connections. Prints microseconds per process for
this Python process, a JVM and a C program (sleep).
    .venv/bin/python scripts/bench_procinfo.py
"""

import os
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tracer.explain import procinfo  # noqa: E402
from tracer.kernel import procfs  # noqa: E402

N = 200


def per_process_us(pid: int) -> tuple[float, procinfo.Facts]:
    comm = procfs.process_comm(pid) or ""
    t = time.perf_counter()
    for _ in range(N):
        f = procinfo.read_facts(pid, comm)
    return (time.perf_counter() - t) / N * 1e6, f


def main() -> int:
    procs = {"sleep (C)": subprocess.Popen(["sleep", "30"])}
    if shutil.which("jshell"):
        procs["java (jshell)"] = subprocess.Popen(["jshell", "-q"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                                  stderr=subprocess.DEVNULL)
        time.sleep(3)
    try:
        for name, pid in [("python (this process)", os.getpid())] + [(n, p.pid) for n, p in procs.items()]:
            us, f = per_process_us(pid)
            print(f"{name:24} {us:8.0f} us per process  runtime={f.runtime} source={f.source} libs={len(f.libs)}")
    finally:
        for p in procs.values():
            p.kill()
            p.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
