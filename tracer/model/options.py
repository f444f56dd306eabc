"""The tracer's configuration as one frozen, validated object.

The CLI validates user input into Options; tracer/kernel/program.py turns Options into -D constants
and filter-map entries. Nothing else reads command-line flags.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

COMM_LEN = 16
# The ring buffer is locked kernel memory: 65536 pages (256 MiB with 4 KiB pages) is far past
# any need (the default 256 pages holds ~3,000 records) and below the kernel's 2**32-byte limit.
RINGBUF_PAGES_MAX = 65536
# Per CPU per second; judged in 100 ms windows, so at least 10. A consumer in Python explains
# at most some 10^4 events a second, so a limit past 10^6 only disables storm summaries.
STORM_LIMIT_MIN = 10
STORM_LIMIT_MAX = 1_000_000


@dataclass(frozen=True)
class Options:
    pids: frozenset[int] = frozenset()
    # With pids: also their descendants (a pre-forked server's workers), found at start-up and
    # refreshed every second; the holder of an accepted socket is checked when it is learnt.
    children: bool = False
    comms: frozenset[str] = frozenset()
    ports: frozenset[int] = frozenset()
    netns: frozenset[int] = frozenset()
    states: bool = False
    # None: use the per-I/O hooks only when BTF is missing (they cost on busy services).
    io_hooks: Optional[bool] = None
    ringbuf_pages: int = 256
    wakeup_every: int = 32
    max_socks: int = 65536
    max_closed: int = 16384
    max_inodes: int = 65536
    # Events per CPU per second sent in full; beyond it they are counted in the kernel and shown
    # as reset_storm summaries, and while a storm lasts only storm_sample per second go out in
    # full (so a storm costs a hash update per event, not Python work).
    storm_limit: int = 5000
    storm_sample: int = 50
    # Ignore the kernel's reset reason, to measure the inference on kernels that lack it.
    ignore_kernel_reason: bool = False

    def __post_init__(self) -> None:
        for p in self.ports:
            if not 0 < p < 65536:
                raise ValueError(f"port {p} is out of range 1-65535")
        for pid in self.pids:
            if pid <= 0:
                raise ValueError(f"pid {pid} must be positive")
        if self.children and not self.pids:
            raise ValueError("--children needs --pid: the processes whose children to trace")
        for c in self.comms:
            if not c or len(c.encode()) >= COMM_LEN:
                raise ValueError(f"process name {c!r} must be 1-15 bytes (the kernel's comm)")
        if not 0 < self.ringbuf_pages <= RINGBUF_PAGES_MAX or self.ringbuf_pages & (self.ringbuf_pages - 1):
            raise ValueError(f"ring buffer pages must be a power of two from 1 to {RINGBUF_PAGES_MAX}")
        if not STORM_LIMIT_MIN <= self.storm_limit <= STORM_LIMIT_MAX:
            # judged in 100 ms windows: below 10 per second a window's budget would be 0
            raise ValueError(f"storm limit must be {STORM_LIMIT_MIN} to {STORM_LIMIT_MAX} events per CPU per second")
        if self.wakeup_every < 1:
            raise ValueError("wakeup_every must be at least 1")
