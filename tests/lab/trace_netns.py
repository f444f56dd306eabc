"""Run the real tracer limited to one network namespace, recording: one "host" of a merge test.

    python -m tests.lab.trace_netns --netns-inode N --record FILE --ready-file FILE [--states]

Two of these on one machine stand for two hosts (tracer/merge.py tells recordings apart by the
namespaces their tracer traced). This drives the same live session as the CLI (tracer.live)
with Options(netns=...), for as long as the CLI has no --netns option of its own; SIGTERM ends
it the way Ctrl-C ends the CLI (the recording gets its end line).
"""

from __future__ import annotations

import argparse
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, REPO)

from tracer.live import RunLimits, run_live  # noqa: E402
from tracer.model.options import Options  # noqa: E402
from tracer.sinks.jsonl import JsonSink  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--netns-inode", type=int, required=True)
    ap.add_argument("--record", required=True)
    ap.add_argument("--ready-file", required=True)
    ap.add_argument("--states", action="store_true")
    a = ap.parse_args()
    with open(os.devnull, "w", encoding="utf-8") as out:
        run_live(Options(netns=frozenset({a.netns_inode}), states=a.states), JsonSink(out=out, err=sys.stderr),
                 RunLimits(), record_path=a.record, ready_file=a.ready_file)
    return 0


if __name__ == "__main__":
    sys.exit(main())
