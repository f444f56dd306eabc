"""The one sanitizer: hostile names and recording headers never reach a terminal or a scraper raw."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys

import pytest
from prometheus_client.core import CollectorRegistry
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import REPO
from tests.unit.helpers import DATA
from tracer.explain.pipeline import explain_stream
from tracer.explain.storm import StormCount
from tracer.model.record import RecordType
from tracer.model.safe import label_value, printable
from tracer.sinks import recording
from tracer.sinks.console import ConsoleSink
from tracer.sinks.exporter import Totals

# What any process can name itself, and what a recording's header can carry: an OSC 52 clipboard
# write, a screen clear and cursor home, a C1 CSI, BEL, CR, newline, quote and backslash.
OSC52 = "\x1b]52;c;cm0gLXJmIH4K\x07"
CLEAR = "\x1b[2J\x1b[H"
HOSTILE = f'ev{OSC52}il{CLEAR}\x9b31m\r\n"q\\'


def controls(text: str, allow: str = "\n") -> list[str]:
    return [c for c in text if (ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0) and c not in allow]


def test_printable_turns_every_control_character_into_a_visible_escape():
    out = printable(HOSTILE)
    assert controls(out, allow="") == []
    assert "\\x1b]52;c;" in out and "\\x9b" in out and "\\x0d\\x0a" in out
    assert printable("nginx: worker ü") == "nginx: worker ü"


def _hostile_explanation():
    recs, _ = recording.decoded(recording.load(os.path.join(DATA, "recordings", "closed_port.jsonl")))
    e = next(iter(explain_stream(recs, None)))
    import dataclasses

    return dataclasses.replace(e, comm=HOSTILE, thread=HOSTILE, state=HOSTILE, reason=HOSTILE, errno=HOSTILE,
                               explanation=HOSTILE, evidence=(HOSTILE,), fix=(HOSTILE,), host=HOSTILE)


@pytest.mark.parametrize("compact", [False, True])
def test_console_shows_no_control_character_from_any_string_field(compact):
    out = io.StringIO()
    sink = ConsoleSink(out=out, color=False, compact=compact)
    sink.event(_hostile_explanation())
    sink.storm([StormCount(type=RecordType.RESET_SENT, state=HOSTILE, reason=HOSTILE, errno=None, pid=7,
                           comm=HOSTILE, raddr="10.0.0.2", port=80, family=2, count=3)])
    text = out.getvalue()
    assert "ev\\x1b]52;c;" in text
    assert controls(text) == [], text


def _header_hostile(path: str, dest: str) -> None:
    with open(path, encoding="utf-8") as fh:
        lines = fh.readlines()
    head = json.loads(lines[0])
    ctx = head["context"]
    ctx["tcp_states"] = {k: f"{v}{OSC52}{CLEAR}" for k, v in ctx["tcp_states"].items()}
    ctx["reset_reasons"] = {k: f"{v}{OSC52}{CLEAR}" for k, v in ctx["reset_reasons"].items()}
    ctx["hostname"] = f"h{OSC52}"
    with open(dest, "w", encoding="utf-8") as fh:
        fh.write(json.dumps(head) + "\n")
        fh.writelines(lines[1:])


def test_replay_of_a_hostile_recording_header_writes_no_escape_to_the_terminal(tmp_path):
    """State and reason names come from the recording's header: an OSC 52 clipboard write and a
    screen clear in them reach the terminal only as visible text."""
    shown = 0
    for name in ("closed_port", "linger0", "unread_close"):
        dest = tmp_path / f"{name}.jsonl"
        _header_hostile(os.path.join(DATA, "recordings", f"{name}.jsonl"), str(dest))
        p = subprocess.run([sys.executable, "-m", "tracer.cli", "replay", "--color", str(dest)], cwd=REPO,
                           capture_output=True, timeout=60)
        assert p.returncode == 0, p.stderr
        out = p.stdout.decode()
        # rich's own colour sequences are ESC [ ... m; nothing else may carry an ESC, and no BEL at all
        assert "\x07" not in out and "\x1b]" not in out and "\x1b[2J" not in out and "\x1b[H" not in out
        shown += out.count("\\x1b]52;c;")
    assert shown > 0, "the hostile names must be shown, escaped"


def test_label_values_with_control_characters_parse_and_stay_distinct():
    assert controls(label_value(HOSTILE), allow="") == []
    totals = Totals(top_processes=10, endpoint_labels=False)
    e = _hostile_explanation()
    import dataclasses

    names = [HOSTILE, "a\rb", "a\nb", "a\x1bb", 'a"b', "a\\b", "plain"]
    for n in names:
        totals.add(dataclasses.replace(e, comm=n))

    class C:
        def collect(self):
            from prometheus_client.core import CounterMetricFamily

            m = CounterMetricFamily("t_events", "x", labels=["comm"])
            for (_, _, _, comm), v in totals.events.items():
                m.add_metric([comm], v)
            yield m

    reg = CollectorRegistry(auto_describe=False)
    reg.register(C())
    text = generate_latest(reg).decode()
    assert "\r" not in text and "\x1b" not in text and "\x07" not in text
    parsed = [s.labels["comm"] for f in text_string_to_metric_families(text) for s in f.samples]
    assert sorted(parsed) == sorted(label_value(n) for n in names)
    assert len(set(parsed)) == len(names)
