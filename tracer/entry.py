"""The console script `tcptrace-explain`: a Ctrl-C while the CLI's modules load (the first
tenths of a second) ends the process quietly instead of printing a KeyboardInterrupt
traceback; once tracer.cli.main runs, its error boundary handles Ctrl-C (exit 130)."""

from __future__ import annotations

import signal
import sys


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    from tracer.cli import main as cli_main

    sys.exit(cli_main(interruptible=True))
