#!/usr/bin/env python3
"""Rewrite tests/data/golden/*.json from tests/data/recordings/*.jsonl (no root needed).

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
from tracer.explain.pipeline import explain_stream  # noqa: E402


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
    return 0


if __name__ == "__main__":
    sys.exit(main())
