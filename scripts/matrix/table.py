"""Print the kernel matrix's table from the results scripts/kernel-matrix.sh wrote.

    python scripts/matrix/table.py OUT KERNEL...

Per kernel: the kernel release, the features the tool detected (`tcptrace-explain --version`),
and passed/failed/skipped per tier from the junit xml; then every failure and skip reason.
"""

from __future__ import annotations

import os
import sys
import xml.etree.ElementTree as ET


def tier_counts(path: str) -> tuple[int, int, int, list[str]]:
    """passed, failed (failures + errors), skipped, and one line per failure or skip."""
    if not os.path.exists(path):
        return 0, 0, 0, ["no results"]
    passed = failed = skipped = 0
    notes = []
    for case in ET.parse(path).getroot().iter("testcase"):
        name = case.get("name", "?")
        bad = case.find("failure")
        if bad is None:
            bad = case.find("error")
        skip = case.find("skipped")
        if bad is not None:
            failed += 1
            notes.append(f"FAILED {name}: {(bad.get('message') or '').splitlines()[0][:150] if bad.get('message') else ''}")
        elif skip is not None:
            skipped += 1
            notes.append(f"skipped {name}: {(skip.get('message') or '')[:150]}")
        else:
            passed += 1
    return passed, failed, skipped, notes


def features(kdir: str) -> tuple[str, str]:
    try:
        with open(os.path.join(kdir, "features.txt"), encoding="utf-8") as fh:
            lines = fh.read().splitlines()
    except FileNotFoundError:
        return "?", "not run"
    kernel = next((x.split(None, 1)[1] for x in lines if x.startswith("kernel ")), "?")
    feats = "; ".join(x.split(": ", 1)[1] for x in lines if x.startswith("tcp_send_reset: "))
    return kernel, feats or "?"


def main(argv: list[str]) -> int:
    out, kernels = argv[0], argv[1:]
    rows = []
    notes = []
    for k in kernels:
        kdir = os.path.join(out, k)
        kernel, feats = features(kdir)
        cells = []
        for tier in ("load", "scenario"):
            p, f, s, n = tier_counts(os.path.join(kdir, f"{tier}.xml"))
            cells.append(f"{p}/{f}/{s}")
            notes += [f"{k} {tier}: {x}" for x in n]
        rows.append((kernel, feats, *cells))
    head = ("kernel", "tcp_send_reset features", "load p/f/s", "capture+lab p/f/s")
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
    for r in [head, tuple("-" * w for w in widths), *rows]:
        print("| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths)) + " |")
    for n in notes:
        print("  " + n)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
