"""The human console sink (rich): one block per explained event, counted storms, a summary.

Every piece of untrusted text goes through tracer.model.safe.printable and into rich Text objects
(never markup strings), so process names cannot change the terminal or the layout.
Under a storm the console prints at most MAX_BLOCKS_PER_S explanations each second and
summarizes the rest, counted, once per second; JSON mode prints every event.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from typing import Any, IO, Optional, Sequence

from rich.console import Console
from rich.table import Table
from rich.text import Text

from tracer.model.counters import Counters
from tracer.sinks.base import TableUsage
from tracer.explain.insights import Insight
from tracer.explain.rules import Explanation, endpoint
from tracer.explain.storm import StormCount
from tracer.model.safe import printable
from tracer.explain.summary import Summary, count_text, service_endpoint
from tracer.model.verdicts import Who

MAX_BLOCKS_PER_S = 10
WHO_STYLE = {Who.LOCAL: "bold yellow", Who.PEER: "bold cyan", Who.MIDDLEBOX: "bold magenta",
             Who.UNKNOWN: "bold white"}
LOSS_HINT = "raise --ringbuf-pages"


def _proc(e: Explanation) -> str:
    if not e.pid:
        return "unknown process"
    s = f"{printable(e.comm or '?')} (pid {e.pid})"
    if e.thread:
        s += f" thread {printable(e.thread)}"
    return s


def _where(e: Explanation) -> str:
    """The owner's workload (unit, container, pod) and named network namespace, if known."""
    parts = []
    if e.cgroup is not None and e.cgroup.workload is not None:
        parts.append(printable(e.cgroup.workload.describe()))
    elif e.cgroup is not None and e.cgroup.status != "no_owner":
        parts.append(f"cgroup unknown ({e.cgroup.status.replace('_', ' ')})")
    if e.netns_name:
        parts.append(f"netns {printable(e.netns_name)}")
    return ", ".join(parts)


class ConsoleSink:
    def __init__(self, out: Optional[IO[str]] = None, color: Optional[bool] = None) -> None:
        self.console = Console(file=out or sys.stdout, highlight=False, soft_wrap=False,
                               force_terminal=color, no_color=color is False)
        self._window = int(time.monotonic())
        self._shown = 0
        self._held: Counter[Any] = Counter()

    # -- events ------------------------------------------------------------------------
    def event(self, e: Explanation) -> None:
        now = int(time.monotonic())
        if now != self._window:
            self.flush_storm()
            self._window = now
        if self._shown >= MAX_BLOCKS_PER_S:
            self._held[(e.verdict.value, printable(e.comm or "?"), service_endpoint(e))] += 1
            return
        self._shown += 1
        self.console.print(self.render(e))

    def render(self, e: Explanation) -> Text:
        t = Text()
        t.append(e.ts[11:23] + "  ", style="dim")
        t.append(e.event.replace("_", " ").upper(), style="bold")
        t.append("  " + _proc(e))
        if e.host:
            t.append(f"  on {printable(e.host)}", style="bold")
        t.append("\n")
        t.append(f"  {endpoint(e.laddr, e.lport)} -> {endpoint(e.raddr, e.rport)}")
        t.append(f"  {printable(e.state or 'no socket')}")
        if e.idle_s is not None:
            t.append(f"  idle {e.idle_s:.1f} s", style="bold")
        if e.age_s is not None:
            t.append(f"  age {e.age_s:.1f} s")
        if e.errno:
            t.append(f"  {printable(e.errno)}", style="bold red")
        if e.reason:
            t.append(f"  reason {printable(e.reason)}", style="dim")
        where = _where(e)
        if where:
            t.append(f"\n  in {where}", style="dim")
        t.append("\n  ")
        t.append(f" {e.verdict.value} ", style="reverse " + WHO_STYLE[e.who])
        t.append(f"  reset by {e.who.value}, {e.confidence.value} confidence\n")
        t.append("  why: ", style="bold")
        t.append(printable(e.explanation) + "\n")
        for ev in e.evidence:
            t.append("    - " + printable(ev) + "\n", style="dim")
        for n, fx in enumerate(e.fix):
            t.append("  fix: " if n == 0 else "       ", style="bold green")
            t.append(printable(fx) + "\n")
        return t

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
        self.console.print(t)
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
        self.console.print(t)

    def insight(self, ins: Insight) -> None:
        t = Text()
        t.append(f" {ins.kind} ", style="reverse bold red")
        t.append("  " + printable(ins.text) + "\n")
        for n, fx in enumerate(ins.fix):
            t.append("  fix: " if n == 0 else "       ", style="bold green")
            t.append(printable(fx) + "\n")
        self.console.print(t)

    # -- status and end ---------------------------------------------------------------
    def notice(self, message: str) -> None:
        self.console.print(Text(printable(message), style="bold"))

    def status(self, since: str, summary: Summary, counters: Counters) -> None:
        kinds = ", ".join(f"{k} {v}" for k, v in sorted(summary.by_event.items())) or "no events yet"
        t = Text(f"[tracing since {since}] {kinds}; records {counters.records}, summarized "
                 f"{counters.summarized}, lost {counters.lost}", style="dim")
        if counters.lost:
            t.append(f" ({LOSS_HINT})", style="bold red")
        self.console.print(t)

    def summary(self, summary: Summary, counters: Counters, seconds: float,
                tables: Optional[TableUsage] = None) -> None:
        self.flush_storm()
        c = self.console
        c.print(Text(f"\nSummary: {summary.total} resets and aborts explained in {seconds:.0f} s "
                     f"({summary.summarized} of them in storm summaries); records {counters.records}, "
                     f"lost {counters.lost}, filtered {counters.filtered}", style="bold"))
        if tables:
            c.print(Text("kernel tables: " + ", ".join(f"{k} {u}/{m}" for k, (u, m) in tables.items()),
                         style="dim"))
        if counters.lost:
            c.print(Text(f"  {counters.lost} records were lost: {LOSS_HINT}", style="bold red"))
        if counters.storm_full:
            c.print(Text(f"  {counters.storm_full} storm events were counted only in the kernel totals (the storm "
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
            c.print(Text(f"\n{ins.kind}: " + printable(ins.text), style="bold red"))
        top = summary.top_fix()
        if top is not None:
            t = Text("\nThe one fix that would remove most of them ", style="bold")
            t.append(f"({top.events} x {top.verdict}, {printable(top.processes_text())} -> {top.endpoint}):\n  ")
            t.append(printable(top.fix), style="bold green")
            c.print(t)
