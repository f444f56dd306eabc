"""How the console lays out an event: the full block (one field per line) and the compact line.

The console prints logical lines. On a terminal a line longer than the terminal is wrapped at
spaces, never inside a token, with its continuation indented under the line's text; anywhere
else (a pipe, a file) a logical line stays one physical line, whatever its length, so that
`replay rec.jsonl | grep -c 'reason NO_SOCKET'` counts every event once. A single token longer
than the terminal is left whole (the terminal folds it) rather than cut.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

from rich.text import Text

from tracer.explain.explanation import Explanation, endpoint
from tracer.model.safe import printable
from tracer.model.verdicts import Who

WHO_STYLE = {Who.LOCAL: "bold yellow", Who.PEER: "bold cyan", Who.MIDDLEBOX: "bold magenta",
             Who.UNKNOWN: "bold white"}


@dataclass(frozen=True)
class Line:
    """One logical line and the indent of its continuation lines when wrapped."""

    text: Text
    hang: int = 0


def _breaks(plain: str, width: int, hang: int) -> list[int]:
    """Offsets of the spaces to break at: greedy, a token is never split."""
    out: list[int] = []
    start, avail = 0, width
    while len(plain) - start > avail:
        cut = plain.rfind(" ", start + 1, start + avail + 1)
        if cut <= start:
            # no space within the line: this token alone is wider; break after it
            cut = plain.find(" ", start + avail)
            if cut == -1:
                break
        out.append(cut)
        start = cut
        while start < len(plain) and plain[start] == " ":
            start += 1
        avail = max(width - hang, 1)
    return out


def wrap(line: Line, width: Optional[int]) -> list[Text]:
    """The physical lines of `line`: itself when width is None (not a terminal) or it fits."""
    t = line.text
    if width is None or len(t.plain) <= width:
        return [t]
    cuts = _breaks(t.plain, width, line.hang)
    if not cuts:
        return [t]
    pieces = list(t.divide(cuts))
    for p in pieces:
        p.rstrip()
    out = [pieces[0]]
    for p in pieces[1:]:
        lead = len(p.plain) - len(p.plain.lstrip(" "))
        rest = p[lead:]
        cont = Text(" " * line.hang)
        cont.append_text(rest)
        out.append(cont)
    return out


def join(lines: Sequence[Line], width: Optional[int]) -> Text:
    """Every line, wrapped for `width`, as one Text (without a final newline)."""
    return Text("\n").join(p for line in lines for p in wrap(line, width))


def process(e: Explanation) -> str:
    if not e.pid:
        return "unknown process"
    s = f"{printable(e.comm or '?')} (pid {e.pid})"
    if e.thread:
        s += f" thread {printable(e.thread)}"
    return s


def where(e: Explanation) -> str:
    """The owner's workload (unit, container, pod) and named network namespace, if known."""
    parts = []
    if e.cgroup is not None and e.cgroup.workload is not None:
        if e.cgroup.workload.cgroup != "/":   # the root cgroup names nothing worth a line
            parts.append(printable(e.cgroup.workload.describe()))
    elif e.cgroup is not None and e.cgroup.status != "no_owner":
        parts.append(f"cgroup unknown ({e.cgroup.status.replace('_', ' ')})")
    if e.netns_name:
        parts.append(f"netns {printable(e.netns_name)}")
    return ", ".join(parts)


def full(e: Explanation) -> list[Line]:
    """The full block: a header, the connection, the verdict, why, evidence, fixes."""
    head = Text()
    head.append(e.ts[11:23] + "  ", style="dim")
    head.append(e.event.replace("_", " ").upper(), style="bold")
    head.append("  " + process(e))
    if e.host:
        head.append(f"  on {printable(e.host)}", style="bold")
    conn = Text(f"  {endpoint(e.laddr, e.lport)} -> {endpoint(e.raddr, e.rport)}")
    conn.append(f"  {printable(e.state or 'no socket')}")
    if e.idle_s is not None:
        conn.append(f"  idle {e.idle_s:.1f} s", style="bold")
    if e.age_s is not None:
        conn.append(f"  age {e.age_s:.1f} s")
    if e.errno:
        conn.append(f"  {printable(e.errno)}", style="bold red")
    if e.reason:
        conn.append(f"  reason {printable(e.reason)}", style="dim")
    verdict = Text("   ")
    verdict.append(f" {e.verdict.value} ", style="reverse " + WHO_STYLE[e.who])
    verdict.append(f"  reset by {e.who.value}, {e.confidence.value} confidence")
    why = Text("  why: ", style="bold")
    why.append(printable(e.explanation))
    lines = [Line(head, 2), Line(conn, 4)]
    place = where(e)
    if place:
        lines.append(Line(Text(f"  in {place}", style="dim"), 5))
    lines += [Line(verdict, 4), Line(why, 7)]
    lines += [Line(Text("    - " + printable(ev), style="dim"), 6) for ev in e.evidence]
    for n, fx in enumerate(e.fix):
        t = Text("  fix: " if n == 0 else "       ", style="bold green")
        t.append(printable(fx))
        lines.append(Line(t, 7))
    return lines


# The compact line's columns: (header, width). Values wider than their column push the rest
# right rather than being cut; "-" stands for a value the event does not have.
COLUMNS = (("TIME", 12), ("EVENT", 8), ("PROCESS[PID]", 20), ("LOCAL", 21), ("REMOTE", 21),
           ("STATE", 11), ("IDLE", 6), ("VERDICT", 22), ("WHO", 0))
EVENT_SHORT = {"reset_sent": "rst-sent", "reset_received": "rst-recv", "abort": "abort"}


def compact_process(e: Explanation) -> str:
    if e.pid:
        return f"{printable(e.comm or '?')}[{e.pid}]"
    if e.owner_candidates:
        shown = ",".join(map(str, e.owner_candidates[:3]))
        more = f",+{len(e.owner_candidates) - 3}" if len(e.owner_candidates) > 3 else ""
        return f"?[{shown}{more}]"
    return "-"


def compact_header() -> Text:
    return Text(" ".join(f"{h:<{w}}" if w else h for h, w in COLUMNS).rstrip(), style="bold")


def compact(e: Explanation) -> Line:
    """One line per event: time, event, process and pid, both endpoints, state, idle, verdict, who."""
    values = [
        (e.ts[11:23], "dim"),
        (EVENT_SHORT.get(e.event, e.event), "bold"),
        (compact_process(e) + (f"@{printable(e.host)}" if e.host else ""), ""),
        (endpoint(e.laddr, e.lport), ""),
        (endpoint(e.raddr, e.rport), ""),
        (printable(e.state or "-"), ""),
        (f"{e.idle_s:.1f}s" if e.idle_s is not None else "-", "bold"),
        (e.verdict.value, WHO_STYLE[e.who]),
        (e.who.value, ""),
    ]
    t = Text()
    for n, ((value, style), (_, w)) in enumerate(zip(values, COLUMNS)):
        if n:
            t.append(" ")
        # right-align the idle time so the numbers line up
        cell = value.rjust(w) if n == 6 else value.ljust(w) if w else value
        t.append(cell, style=style or None)
    return Line(t, 13)
