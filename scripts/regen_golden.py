#!/usr/bin/env python3
"""Rewrite what is derived from the explainer's code (no root needed):
- tests/data/golden/*.json from tests/data/recordings/*.jsonl;
- tests/data/golden/merge.json from the two hosts' recordings in tests/data/merge;
- the verdict, who and confidence enums of docs/schema/event.schema.json from
  tracer/model/verdicts.py (so a new verdict is written in the code once).

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
from tracer.model.verdicts import Confidence, Verdict, Who  # noqa: E402

# Paths as the merged explanations name them: relative to the repository (tests run from it).
MERGE_INPUTS = ("tests/data/merge/client.jsonl", "tests/data/merge/server.jsonl")
SCHEMA = os.path.join(ROOT, "docs", "schema", "event.schema.json")


def write_schema_enums() -> None:
    with open(SCHEMA, encoding="utf-8") as fh:
        schema = json.load(fh)
    for name, enum in (("verdict", Verdict), ("who", Who), ("confidence", Confidence)):
        schema["properties"][name]["enum"] = [m.value for m in enum]
    with open(SCHEMA, "w", encoding="utf-8") as fh:
        json.dump(schema, fh, indent=2)
        fh.write("\n")


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
    write_schema_enums()
    print(f"{os.path.relpath(SCHEMA, ROOT)}: enums of {len(Verdict)} verdicts")
    return 0


if __name__ == "__main__":
    sys.exit(main())
