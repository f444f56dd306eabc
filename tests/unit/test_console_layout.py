"""The console's layout on the recorded streams: one line per field (full) or per event
(compact) when piped, wrapping only on a terminal and never inside a token, and the status
line only when something changed."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import pytest

from tests.conftest import REPO
from tests.unit.helpers import RECORDINGS, name_of
from tracer.explain.pipeline import explain_stream
from tracer.explain.summary import Summary
from tracer.replay import replay
from tracer.model.counters import Counters
from tracer.sinks import recording
from tracer.sinks.console import ConsoleSink
from tracer.sinks.jsonl import JsonSink
from tracer.sinks.layout import Line, wrap
from rich.text import Text

pytestmark = pytest.mark.unit


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def events_of(path: str) -> list[dict]:
    out = io.StringIO()
    replay(path, JsonSink(out=out, err=io.StringIO()))
    return [json.loads(line) for line in out.getvalue().splitlines()]


def cli_pipe(shell: str) -> str:
    """A shell pipeline with the real CLI on its left (stdout is a pipe, not a terminal)."""
    cmd = f"{sys.executable} -m tracer.cli {shell}"
    r = subprocess.run(["bash", "-o", "pipefail", "-c", cmd], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert r.returncode in (0, 1), r.stderr      # grep -c exits 1 when it counts 0
    return r.stdout.strip()


@pytest.mark.parametrize("path", RECORDINGS, ids=name_of)
def test_piped_full_output_keeps_each_field_on_one_line(path):
    events = events_of(path)
    out = io.StringIO()
    replay(path, ConsoleSink(out=out, color=False))
    text = out.getvalue().split("\nSummary:")[0]
    for e in events:
        for key, needle in (("reason", f"  reason {e['reason']}"), ("verdict", f"    {e['verdict']}   reset by ")):
            if e[key]:
                want = sum(1 for o in events if o[key] == e[key])
                assert sum(needle in line for line in text.splitlines()) == want, (needle, text)
    for e in events:     # every explanation and every fix is whole on its own line
        assert f"  why: {e['explanation']}" in text.splitlines()
        for fx in e["fix"]:
            assert any(line.endswith(fx) for line in text.splitlines())


@pytest.mark.parametrize("path", RECORDINGS, ids=name_of)
def test_piped_compact_output_is_one_line_per_event(path):
    events = events_of(path)
    out = io.StringIO()
    replay(path, ConsoleSink(out=out, color=False, compact=True))
    lines = out.getvalue().split("\nSummary:")[0].strip("\n").splitlines()
    if not events:
        assert lines == []
        return
    assert lines[0].split() == ["TIME", "EVENT", "PROCESS[PID]", "LOCAL", "REMOTE", "STATE", "IDLE", "VERDICT", "WHO"]
    rows = [line.split() for line in lines[1:]]
    assert len(rows) == len(events)
    for e, row in zip(events, rows):
        assert row[0] == e["ts"][11:23] and row[-2] == e["verdict"] and row[-1] == e["who"]
        assert row[5] == (e["state"] or "-")
        assert row[6] == (f"{e['idle_s']:.1f}s" if e["idle_s"] is not None else "-")
        assert row[2] == (f"{e['comm']}[{e['pid']}]" if e["pid"] else "-")


def test_grep_counts_every_event_through_a_real_pipe():
    rec = f"{REPO}/tests/data/recordings/closed_port.jsonl"
    assert cli_pipe(f"replay {rec} | grep -c 'reason NO_SOCKET'") == "2"
    assert cli_pipe(f"replay --compact {rec} | grep -c -E ' (port_closed|connection_refused) +(local|peer)$'") == "2"
    nat = f"{REPO}/tests/data/recordings/nat_idle.jsonl"
    assert cli_pipe(f"replay --compact {nat} | grep -c ' stale_after_idle  *middlebox$'") == "1"
    # the longest line of the full output is far beyond 80 columns: nothing folded it
    longest = max(len(line) for line in cli_pipe(f"replay {nat}").splitlines())
    assert longest > 200


@pytest.mark.parametrize("compact", [False, True], ids=["full", "compact"])
@pytest.mark.parametrize("width", [40, 72, 100])
def test_terminal_wraps_at_spaces_never_inside_a_token(compact, width):
    path = f"{REPO}/tests/data/recordings/nat_idle.jsonl"
    flat = io.StringIO()
    replay(path, ConsoleSink(out=flat, color=False, compact=compact))
    term = Terminal()
    sink = ConsoleSink(out=term, color=False, compact=compact)
    sink.console.width = width
    replay(path, sink)
    wrapped = term.getvalue()
    assert wrapped.split() == flat.getvalue().split()       # the same tokens, none cut
    long_lines = [line for line in wrapped.splitlines() if len(line.rstrip()) > width]
    # a line may exceed the width only when it is a single token that does not fit
    assert all(len(line.split()) == 1 or len(max(line.split(), key=len)) > width - 13 for line in long_lines), long_lines
    assert len(wrapped.splitlines()) > len(flat.getvalue().splitlines())


def test_wrap_hangs_continuations_and_keeps_long_tokens_whole():
    t = Text("  why: " + "word " * 10 + "x" * 50 + " tail")
    lines = [p.plain for p in wrap(Line(t, 7), 30)]
    assert lines[0] == "  why: word word word word"
    assert all(p.startswith(" " * 7) and not p.startswith(" " * 8) for p in lines[1:])
    assert " " * 7 + "x" * 50 in lines
    assert wrap(Line(t, 7), None)[0].plain == t.plain        # not a terminal: one line


def _status_lines(sink: ConsoleSink, steps: list[tuple[int, int]]) -> None:
    s = Summary()
    rec = recording.load(f"{REPO}/tests/data/recordings/closed_port.jsonl")
    explained = explain_stream(recording.decoded(rec)[0], recording.peer_check(rec))
    for n_events, records in steps:
        while s.total < n_events:
            s.add(explained[s.total])
        sink.status("12:00:00", s, Counters.replayed(records, {}))


def test_status_line_only_when_something_changed_and_on_stderr_when_piped():
    out, err = io.StringIO(), io.StringIO()
    sink = ConsoleSink(out=out, err=err, color=False)
    _status_lines(sink, [(0, 0), (0, 0), (1, 1), (1, 1), (1, 1), (1, 3), (2, 3), (2, 3)])
    assert out.getvalue() == ""          # stdout stays events only
    lines = err.getvalue().splitlines()
    assert lines == ["[tracing since 12:00:00] reset_sent 1; records 1, summarized 0, lost 0",
                     "[tracing since 12:00:00] reset_sent 1; records 3, summarized 0, lost 0",
                     "[tracing since 12:00:00] reset_received 1, reset_sent 1; records 3, summarized 0, lost 0"]


def test_status_line_on_the_terminal_when_stdout_is_one():
    term, err = Terminal(), io.StringIO()
    sink = ConsoleSink(out=term, err=err, color=False)
    _status_lines(sink, [(0, 0), (0, 0)])
    assert term.getvalue() == ""             # nothing happened yet: no status line at all
    _status_lines(sink, [(0, 2), (0, 2)])
    assert err.getvalue() == "" and term.getvalue().count("[tracing since") == 1


def test_a_burst_is_cut_by_the_events_seconds_not_the_clock():
    """At most MAX_BLOCKS_PER_S blocks per second of the events' own time, the rest counted:
    a replay shows what the live run showed, the same on every replay, however fast it runs."""
    import time as clock

    from tracer.model.frozen import evolve
    from tracer.sinks.console import MAX_BLOCKS_PER_S

    rec = recording.load(RECORDINGS[0])
    one = explain_stream(recording.decoded(rec)[0], recording.peer_check(rec))[0]
    burst = [evolve(one, ts=f"2026-12-03T10:00:00.{i:03d}Z") for i in range(25)]
    after = [evolve(one, ts=f"2026-12-03T10:00:01.{i:03d}Z") for i in range(5)]
    outputs = []
    for pause in (0.0, 0.3):
        out = io.StringIO()
        sink = ConsoleSink(out=out, color=False, compact=True)
        for e in burst + after:
            sink.event(e)
            clock.sleep(pause / len(burst))   # the clock moves differently on each run
        sink.flush_storm()
        outputs.append(out.getvalue())
    assert outputs[0] == outputs[1]
    lines = outputs[0].splitlines()
    shown = [line for line in lines if line.startswith("10:00:")]
    assert len(shown) == MAX_BLOCKS_PER_S + 5
    assert f"reset_storm: {25 - MAX_BLOCKS_PER_S} more events in the last second" in outputs[0]


def test_an_event_released_late_counts_in_the_second_being_shown():
    """Events that waited for their partners come after later ones: the window only moves
    forward, so they neither reopen an earlier second nor print an extra storm line."""
    from tracer.model.frozen import evolve
    from tracer.sinks.console import MAX_BLOCKS_PER_S

    rec = recording.load(RECORDINGS[0])
    one = explain_stream(recording.decoded(rec)[0], recording.peer_check(rec))[0]
    now = [evolve(one, ts=f"2026-12-03T10:00:01.{i:03d}Z") for i in range(MAX_BLOCKS_PER_S)]
    late = [evolve(one, ts="2026-12-03T10:00:00.900Z")] * 3
    out = io.StringIO()
    sink = ConsoleSink(out=out, color=False, compact=True)
    for e in now + late + now[:1]:
        sink.event(e)
    sink.flush_storm()
    text = out.getvalue()
    assert len([line for line in text.splitlines() if line.startswith("10:00:")]) == MAX_BLOCKS_PER_S
    assert text.count("reset_storm:") == 1 and "4 more events" in text
