#!/usr/bin/env python3
"""Re-record tests/data/merge/: the two hosts' recordings of the lab's NAT scenario
(tests/lab/crosshost.py), the ground truth of the run, and the merged console transcript in
docs/examples/merge-console.txt. Run as root, then `python scripts/regen_golden.py`.

    sudo .venv/bin/python scripts/record_merge.py
    .venv/bin/python scripts/record_merge.py --example-only    # only the transcript, no root
"""

import io
import json
import os
import shutil
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tests.lab import crosshost  # noqa: E402
from tracer.merge import merge  # noqa: E402
from tracer.sinks.console import ConsoleSink  # noqa: E402

OUT = os.path.join(ROOT, "tests", "data", "merge")
EXAMPLE = os.path.join(ROOT, "docs", "examples", "merge-console.txt")
INPUTS = ("tests/data/merge/client.jsonl", "tests/data/merge/server.jsonl")


def transcript() -> str:
    """The merged console output of the committed recordings, as a user sees it."""
    buf = io.StringIO()
    os.chdir(ROOT)
    merge(INPUTS, ConsoleSink(out=buf, color=False))
    return buf.getvalue()


def write_example() -> None:
    with open(EXAMPLE, "w", encoding="utf-8") as fh:
        fh.write(f"# tcptrace-explain merge {' '.join(INPUTS)}\n"
                 "# (written by scripts/record_merge.py from the recordings of tests/lab/crosshost.py: client and\n"
                 "# server namespaces behind a NAT router, one tracer each, a real nginx)\n\n")
        fh.write(transcript())


def main() -> int:
    if sys.argv[1:] == ["--example-only"]:   # no root: the transcript of the committed recordings
        write_example()
        return 0
    with tempfile.TemporaryDirectory(prefix="tte-merge-") as tmp:
        run = crosshost.run(tmp)
        os.makedirs(OUT, exist_ok=True)
        shutil.copy(run.client_recording, os.path.join(OUT, "client.jsonl"))
        shutil.copy(run.server_recording, os.path.join(OUT, "server.jsonl"))
    truth = {"client_port": run.client_port, "nginx_saw": run.nginx_saw, "errors": run.errors,
             "server_out_rsts": run.server_out_rsts, "nat_ports": list(crosshost.NAT_PORTS),
             "ports": crosshost.PORTS}
    with open(os.path.join(OUT, "truth.json"), "w", encoding="utf-8") as fh:
        json.dump(truth, fh, indent=1)
        fh.write("\n")
    print(json.dumps(truth, indent=1))
    write_example()
    return 0


if __name__ == "__main__":
    sys.exit(main())
