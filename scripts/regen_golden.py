#!/usr/bin/env python3
"""Rewrite tests/data/golden/*.json from tests/data/recordings/*.jsonl, and golden/merge.json
from the two hosts' recordings in tests/data/merge (no root needed).

Run after an intended change to the explanations, then review `git diff tests/data/golden`:
every line that changed is a sentence a user will read differently.
"""

import glob
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tracer.sinks import recording  # noqa: E402
from tracer.explain.pipeline import explain_hosts, explain_stream  # noqa: E402
from tracer.merge import load_hosts  # noqa: E402

# Paths as the merged explanations name them: relative to the repository (tests run from it).
MERGE_INPUTS = ("tests/data/merge/client.jsonl", "tests/data/merge/server.jsonl")


def main() -> int:
    for path in sorted(glob.glob(os.path.join(ROOT, "tests", "data", "recordings", "*.jsonl"))):
        rec = recording.load(path)
        records, _ = recording.decoded(rec)
        out = [e.to_json() for e in explain_stream(records, recording.peer_check(rec))]
        name = os.path.basename(path).rsplit(".", 1)[0]
        with open(os.path.join(ROOT, "tests", "data", "golden", f"{name}.json"), "w", encoding="utf-8") as fh:
            json.dump(out, fh, indent=1, ensure_ascii=True)
            fh.write("\n")
        print(f"{name}: {len(out)} explanations")
    os.chdir(ROOT)
    judged, _ = explain_hosts(load_hosts(MERGE_INPUTS))
    with open(os.path.join(ROOT, "tests", "data", "golden", "merge.json"), "w", encoding="utf-8") as fh:
        json.dump([e.to_json() for _, e in judged], fh, indent=1, ensure_ascii=True)
        fh.write("\n")
    print(f"merge: {len(judged)} explanations")
    return 0


if __name__ == "__main__":
    sys.exit(main())
