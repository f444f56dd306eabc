#!/usr/bin/env python3
"""Regenerate docs/examples/live-console.txt and live-compact.txt: the real live console, full
and --compact, in tmux, during the lab's NAT gateway story (story 2).
Run as root: sudo .venv/bin/python scripts/example_transcript.py

The full transcript traces the whole host, unfiltered (a namespace filter would hide the
peer's kernel and with it the proof that a middlebox reset), so a capture that caught another
program's resets is taken again; the compact one traces the lab's namespaces only.
"""

import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tests.lab.transcript import live_console  # noqa: E402

OUT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs", "examples")
SCENARIO = "the lab's nat_idle scenario: a NAT with a 2 s conntrack timeout, 4 s of idle"
ATTEMPTS = 8


def only_the_lab(text: str) -> bool:
    """The scenario's events alone: its processes (tte-*, or the unowned reset), its one service
    endpoint, and no insight about other programs' connections."""
    if "by process" not in text or "time_wait_pileup" in text or "reset_storm" in text:
        return False
    table = text.split("by process", 1)[1].split("by service endpoint", 1)
    names = [line.split()[0] for line in table[0].strip().splitlines()]
    endpoints = [line for line in table[1].split("\n\n", 1)[0].strip().splitlines() if line.strip()]
    return all(n.startswith("tte-") or n == "unknown" for n in names) and len(endpoints) == 1


def capture(name: str, command: str, width: int, extra_args: str = "", own_netns: bool = False) -> str:
    for _ in range(ATTEMPTS):
        t = live_console("nat_idle", width=width, extra_args=extra_args, own_netns=own_netns)
        text = re.sub(r"\n{3,}", "\n\n", t.final.rstrip() + "\n")
        text = re.sub(r"\nPane is dead \(.*\)\n$", "\n", text)      # tmux's own line
        if only_the_lab(text):
            break
    else:
        raise SystemExit(f"other programs' resets in every capture of {name}: run it on a quieter machine")
    with open(os.path.join(OUT, name), "w", encoding="utf-8") as fh:
        fh.write(f"# sudo {command}   (captured from a {width}-column tmux by scripts/example_transcript.py\n"
                 f"# during {SCENARIO})\n\n")
        fh.write(text)
    return text


def main() -> int:
    os.makedirs(OUT, exist_ok=True)
    print(capture("live-console.txt", "tcptrace-explain", 110))
    # One line per event is what a busy host needs: limited to the lab's namespaces so that the
    # machine's other work stays out (the middlebox is then inferred from timing, not proven).
    print(capture("live-compact.txt", "tcptrace-explain --compact --netns <the lab's namespaces>", 140,
                  "--compact", own_netns=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
