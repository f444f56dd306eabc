"""How long the tests WAIT for something, scaled for slow machines.

`TTE_TEST_WAIT_SCALE` (a number >= 1, default 1) multiplies the budgets the tests give a step
to finish: a BPF compile, a tracer to attach, a peer to reach a step, a record to arrive.
scripts/kernel-matrix.sh sets it inside qemu guests, which emulate the CPU (TCG) and run
everything 5 to 20 times slower. It never changes what a scenario does (the peers' socket
timeouts and sleeps) nor what a test asserts about verdicts, counts or measured times.
"""

from __future__ import annotations

import os


def _scale() -> float:
    raw = os.environ.get("TTE_TEST_WAIT_SCALE", "1")
    try:
        value = float(raw)
    except ValueError:
        raise SystemExit(f"TTE_TEST_WAIT_SCALE must be a number, got {raw!r}") from None
    if value < 1:
        raise SystemExit(f"TTE_TEST_WAIT_SCALE must be >= 1, got {raw!r}")
    return value


SCALE = _scale()


def wait(seconds: float) -> float:
    """A waiting budget of `seconds` on a normal machine, scaled for this one."""
    return seconds * SCALE
