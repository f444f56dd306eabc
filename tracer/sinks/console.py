"""The human console sink (rich): one block per explained event, counted storms, a summary.

Every piece of untrusted text goes through tracer.model.safe.printable and into rich Text objects
(never markup strings), so process names cannot change the terminal or the layout.
Under a storm the console prints at most MAX_BLOCKS_PER_S explanations per second of the events'
time and summarizes the rest, counted, once per second; JSON mode prints every event.
"""

from __future__ import annotations

import sys
from collections import Counter
from typing import Any, IO, Optional, Sequence

from rich.console import Console
from rich.table import Table
from rich.text import Text

from tracer.model.counters import Counters
from tracer.sinks.base import TableUsage
from tracer.explain.insights import Insight
from tracer.explain.rules import Explanation
from tracer.explain.storm import StormCount
from tracer.model.safe import printable
from tracer.sinks.stream import whole
from tracer.explain.summary import Summary, count_text, service_endpoint
from tracer.sinks import layout

MAX_BLOCKS_PER_S = 10
UNWRAPPED = 100_000    # rich's width when not a terminal: tables and lines are never wrapped
LOSS_HINT = "raise --ringbuf-pages"
# tracer/kernel/proginfo.py: the kernel did not run a program because a BPF program was running
MISSED_HINT = ("the kernel skipped them because a BPF program (this one's or another tool's) was already "
               "running on that CPU; no option raises this")


def _isatty(f: IO[str]) -> bool:
    try:
        return f.isatty()
    except (AttributeError, ValueError):
        return False



class _Console(Console):
    """rich ends the process with status 1 when its output is closed; we want BrokenPipeError,
    which the CLI turns into a quiet end (`replay rec.jsonl | head -1`)."""

    def on_broken_pipe(self) -> None:
        raise BrokenPipeError("the output was closed")


class ConsoleSink:
    """`compact`: one line per event (under a column header) instead of the full block.

    Lines wrap (at spaces, with a hanging indent) only when the output is a terminal; piped
    or redirected, each logical line stays whole. The periodic status line goes to the
    terminal, or to stderr when stdout is not one, and only when something changed since the
    last one."""

    def __init__(self, out: Optional[IO[str]] = None, color: Optional[bool] = None, compact: bool = False,
                 err: Optional[IO[str]] = None) -> None:
        f = whole(out or sys.stdout)
        self.tty = _isatty(f)
        # soft_wrap: rich never wraps or crops by itself; layout.wrap decides (terminal only)
        self.console = _Console(file=f, highlight=False, soft_wrap=True, force_terminal=color,
                               no_color=color is False, width=None if self.tty else UNWRAPPED)
        self.compact = compact
        self._status_console = self.console if self.tty else _Console(
            file=whole(err or sys.stderr), highlight=False, soft_wrap=True, force_terminal=color, no_color=color is False)
        # what the status line said last; at the start: nothing yet (so a quiet run prints none)
        self._last_status: tuple[Any, ...] = ((), 0, 0, 0, 0)
        self._header_done = False
        self._window = ""
        self._shown = 0
        self._held: Counter[Any] = Counter()

    @property
    def width(self) -> Optional[int]:
        """Wrap width: the terminal's, or None (never wrap) when not a terminal."""
        return self.console.width if self.tty else None

    def _print(self, lines: Sequence[layout.Line]) -> None:
        self.console.print(layout.join(lines, self.width))

    def _say(self, t: Text, hang: int = 4, console: Optional[Console] = None) -> None:
        """A message of one or more lines (split at newlines), wrapped like the events."""
        c = console or self.console
        width = (c.width if self.tty else None)
        c.print(layout.join([layout.Line(p, hang) for p in t.split("\n", allow_blank=True)], width))

    # -- events ------------------------------------------------------------------------
    def event(self, e: Explanation) -> None:
        # The second of the event's own time ("YYYY-MM-DDTHH:MM:SS"), not of the clock: a live
        # run prints within a second of it, and a replay then shows the blocks that run showed,
        # the same on every replay, however fast it goes.
        # Only forward: an event released late (one that waited for its partners) counts in
        # the second being shown, never reopens an earlier one.
        now = e.ts[:19]
        if now > self._window:
            self.flush_storm()
            self._window = now
        if self._shown >= MAX_BLOCKS_PER_S:
            self._held[(e.verdict.value, printable(e.comm or "?"), service_endpoint(e))] += 1
            return
        self._shown += 1
        if self.compact:
            if not self._header_done:
                self._header_done = True
                self._print([layout.Line(layout.compact_header(), 13)])
            self._print([layout.compact(e)])
        else:
            self._print(layout.full(e))
            self.console.print()

    def events(self, es: Sequence[Explanation]) -> None:
        for e in es:
            self.event(e)

    def render(self, e: Explanation) -> Text:
        """The full block, unwrapped."""
        return layout.join(layout.full(e), None)

    def flush_storm(self) -> None:
        if not self._held:
            self._shown = 0
            return
        total = sum(self._held.values())
        t = Text()
        t.append(f"  reset_storm: {total} more events in the last second not shown one by one:",
                 style="bold red")
        for (verdict, comm, remote), n in self._held.most_common(5):
            t.append(f"\n    {n} x {verdict}  {comm} -> {remote}")
        self._say(t)
        self._held.clear()
        self._shown = 0

    def storm(self, buckets: Sequence[StormCount]) -> None:
        self.flush_storm()
        total = sum(b.count for b in buckets)
        t = Text()
        t.append(f"  reset_storm: {total} more events in the last second were counted by the kernel, "
                 "not sent one by one (over --storm-limit):", style="bold red")
        for b in sorted(buckets, key=lambda b: -b.count)[:5]:
            t.append("\n    " + b.describe())
        self._say(t)

    def insight(self, ins: Insight) -> None:
        t = Text()
        t.append(f" {ins.kind} ", style="reverse bold red")
        t.append("  " + printable(ins.text) + "\n")
        for n, fx in enumerate(ins.fix):
            t.append("  fix: " if n == 0 else "       ", style="bold green")
            t.append(printable(fx) + "\n")
        self._say(t)

    # -- status and end ---------------------------------------------------------------
    def notice(self, message: str) -> None:
        self._say(Text(printable(message), style="bold"))

    def status(self, since: str, summary: Summary, counters: Counters) -> None:
        """On the terminal (else on stderr), and only when a number in it changed since the
        last one (or since the start)."""
        key = (tuple(sorted(summary.by_event.items())), counters.records, counters.summarized, counters.lost,
               counters.missed or 0)
        if key == self._last_status:
            return
        self._last_status = key
        kinds = ", ".join(f"{k} {v}" for k, v in sorted(summary.by_event.items())) or "no events yet"
        t = Text(f"[tracing since {since}] {kinds}; records {counters.records}, summarized "
                 f"{counters.summarized}, lost {counters.lost}", style="dim")
        if counters.lost:
            t.append(f" ({LOSS_HINT})", style="bold red")
        if counters.missed:
            t.append(f", kernel events missed {counters.missed}", style="bold red")
        self._say(t, console=self._status_console)

    def summary(self, summary: Summary, counters: Counters, seconds: float,
                tables: Optional[TableUsage] = None) -> None:
        self.flush_storm()
        c = self.console
        self._say(Text(f"\nSummary: {summary.total} resets and aborts explained in {seconds:.0f} s "
                     f"({summary.summarized} of them in storm summaries); records {counters.records}, "
                     f"lost {counters.lost}, filtered {counters.filtered}", style="bold"))
        if tables:
            self._say(Text("kernel tables: " + ", ".join(f"{k} {u}/{m}" for k, (u, m) in tables.items()),
                         style="dim"))
        if counters.lost:
            self._say(Text(f"  {counters.lost} records were lost: {LOSS_HINT}", style="bold red"))
        if counters.missed:
            by = ", ".join(f"{tp} {n}" for tp, n in sorted(counters.missed_by.items()) if n)
            self._say(Text(f"  {counters.missed} kernel events were not traced{f' ({by})' if by else ''}: {MISSED_HINT}",
                           style="bold red"))
        if counters.missed_uncounted:
            self._say(Text("  this kernel does not count the events it skips for tracepoints (Linux 6.7 and later "
                           f"do): missed events of {', '.join(counters.missed_uncounted)} would go unseen",
                           style="dim"))
        if counters.unread:
            self._say(Text(f"  {counters.unread} records were still in the ring buffer at exit (the load went on "
                           "while the tracer stopped): not explained", style="bold red"))
        if summary.evicted:
            self._say(Text("user-space tables: evicted " + ", ".join(f"{k} {n}" for k, n in sorted(summary.evicted.items())),
                           style="dim"))
        if counters.kernel_out_rsts is not None:
            self._say(Text(f"  resets sent in this network namespace: kernel OutRsts +{counters.kernel_out_rsts}, "
                           f"explained {counters.explained_sent_here}; this kernel (before 6.10) does not trace "
                           "resets sent with no socket or by TIME_WAIT sockets", style="bold"))
        if counters.storm_full:
            self._say(Text(f"  {counters.storm_full} storm events were counted only in the kernel totals (the storm "
                         "summary table was full: too many distinct processes/endpoints at once)", style="bold red"))
        for title, counter in (("verdict", summary.by_verdict), ("process", summary.by_process),
                               ("service endpoint", summary.by_endpoint)):
            if not counter:
                continue
            table = Table(title=f"by {title}", title_justify="left", show_header=False, box=None)
            for key, n in counter.most_common(5):
                label = printable(str(key))
                if counter is summary.by_process:
                    pids = summary.process_pids(key)
                    label += (f" (pid {pids[0]})" if len(pids) == 1 else
                              f" ({count_text(pids)} processes)" if pids else "")
                table.add_row(Text(label), str(n))
            c.print(table)
        for ins in summary.insights:
            self._say(Text(f"\n{ins.kind}: " + printable(ins.text), style="bold red"))
        top = summary.top_fix()
        if top is not None:
            t = Text("\nThe one fix that would remove most of them ", style="bold")
            t.append(f"({top.events} x {top.verdict}, {printable(top.processes_text())} -> {top.endpoint}):\n  ")
            t.append(printable(top.fix), style="bold green")
            self._say(t)
