#!/usr/bin/env python3
"""Regenerate docs/examples/live-console.txt: the real live console, in tmux, during the lab's
NAT gateway story (story 2). Run as root: sudo .venv/bin/python scripts/example_transcript.py
"""

import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tests.lab.transcript import live_console  # noqa: E402

OUT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs", "examples")


def main() -> int:
    t = live_console("nat_idle")
    os.makedirs(OUT, exist_ok=True)
    text = re.sub(r"\n{3,}", "\n\n", t.final.rstrip() + "\n")
    with open(os.path.join(OUT, "live-console.txt"), "w", encoding="utf-8") as fh:
        fh.write("# sudo tcptrace-explain   (captured from tmux by scripts/example_transcript.py during\n"
                 "# the lab's nat_idle scenario: a NAT with a 2 s conntrack timeout, 4 s of idle)\n\n")
        fh.write(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
