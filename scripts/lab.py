#!/usr/bin/env python3
"""The lab: replay the user stories and kernel reset kinds in throwaway network namespaces and
show what tcptrace-explain concludes, next to the ground truth.

    sudo .venv/bin/python scripts/lab.py --list
    sudo .venv/bin/python scripts/lab.py                      # every scenario
    sudo .venv/bin/python scripts/lab.py nat_idle pool_keepalive
    sudo .venv/bin/python scripts/lab.py --record-dir tests/data/recordings --golden-dir tests/data/golden

Exit status 1 if an explanation differs from what the scenario expects.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tracer.kernel.capture import Capture  # noqa: E402
from tests.lab import runner  # noqa: E402
from tests.lab.scenarios import BY_NAME, SCENARIOS  # noqa: E402
from tracer.model.options import Options  # noqa: E402
from tracer.sinks.recording import RecordingWriter  # noqa: E402


def describe(x) -> str:
    inferred = "".join(f" {k}={v}" for k, v in x.inferred.items())
    idle = f" idle={x.idle_s:.2f}s" if x.idle_s is not None else ""
    return (f"{x.event:<15} {x.verdict.value:<24} who={x.who.value:<9} {x.comm or '-'}"
            f"{' ' + x.errno if x.errno else ''}{idle}{inferred}")


def save(result: runner.RunResult, ctx, record_dir: str | None, golden_dir: str | None) -> None:
    name = result.scenario.name
    if record_dir:
        os.makedirs(record_dir, exist_ok=True)
        with open(os.path.join(record_dir, f"{name}.jsonl"), "w", encoding="utf-8") as fh:
            w = RecordingWriter(fh, ctx, meta={"scenario": name, "netns": result.netns, "truth": result.truth})
            for raw in result.raw:
                w.write(raw)
            w.finish(end={"local_addrs": result.local_addrs, "nstat": result.nstat})
    if golden_dir:
        os.makedirs(golden_dir, exist_ok=True)
        with open(os.path.join(golden_dir, f"{name}.json"), "w", encoding="utf-8") as fh:
            json.dump([x.to_json() for x in result.explanations], fh, indent=1, ensure_ascii=True)
            fh.write("\n")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("names", nargs="*", help="scenarios to run (default: all)")
    ap.add_argument("--list", action="store_true", help="list the scenarios")
    ap.add_argument("--record-dir", help="write one recording per scenario here")
    ap.add_argument("--golden-dir", help="write the explanations of each scenario here (JSON)")
    ap.add_argument("--wire", action="store_true", help="also count RST segments on the wire with tshark")
    ap.add_argument("--ignore-kernel-reason", action="store_true", help="infer reasons instead of reading them")
    args = ap.parse_args()
    if args.list:
        for s in SCENARIOS:
            story = f" (story {s.story})" if s.story else ""
            print(f"{s.name:<26} {s.title}{story}")
        return 0
    unknown = [n for n in args.names if n not in BY_NAME]
    if unknown:
        print(f"lab: unknown scenario(s) {', '.join(unknown)}; see --list", file=sys.stderr)
        return 2
    chosen = [BY_NAME[n] for n in args.names] if args.names else list(SCENARIOS)

    cap = Capture(Options(ignore_kernel_reason=args.ignore_kernel_reason))
    collector = None

    def sink(data: bytes) -> None:
        collector.raw_sink(data)

    cap.start(raw_sink=sink)
    collector = runner.Collector(cap)
    failed = 0
    try:
        for sc in chosen:
            story = f" - story {sc.story}" if sc.story else ""
            print(f"\n== {sc.name}: {sc.title}{story}")
            if sc.truth:
                print(f"   does:     {sc.truth}")
            result = runner.run(sc, collector, wire=args.wire)
            print(f"   saw:      {json.dumps(result.truth)}")
            print("   kernel:   " + "; ".join(f"{role} OutRsts+{d['TcpOutRsts']}" for role, d in result.nstat.items()))
            if result.wire_rsts is not None:
                print("   wire:     " + "; ".join(f"{role} {n} RST" for role, n in result.wire_rsts.items()))
            for x in result.explanations:
                print(f"   {result.side_of(x.netns) or '?':<7}  {describe(x)}")
            problems = runner.check(result)
            for p in problems:
                print(f"   MISMATCH  {p}")
            print("   result:   " + ("as expected" if not problems else "DIFFERS from the expectation"))
            failed += bool(problems)
            save(result, cap.context, args.record_dir, args.golden_dir)
    finally:
        collector.stop()
        cap.close()
    print(f"\n{len(chosen) - failed} of {len(chosen)} scenarios explained as expected")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
