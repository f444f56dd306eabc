"""Bad input to `tcptrace-explain merge`: one clear line (and its fix), exit status 10."""

from __future__ import annotations

import json
import os

import pytest

from tests.unit.helpers import DATA
from tracer.cli import main

pytestmark = pytest.mark.unit
NAT = os.path.join(DATA, "recordings", "nat_idle.jsonl")
UNREAD = os.path.join(DATA, "recordings", "unread_close.jsonl")


def _lines(path: str) -> list[str]:
    with open(path, encoding="utf-8") as fh:
        return fh.read().splitlines(keepends=True)


def _write(tmp_path, name: str, lines: list[str]) -> str:
    p = tmp_path / name
    p.write_text("".join(lines), encoding="utf-8")
    return str(p)


def _as_host(tmp_path, name: str, src: str, hostname: str) -> str:
    lines = _lines(src)
    header = json.loads(lines[0])
    header["context"]["hostname"] = hostname
    return _write(tmp_path, name, [json.dumps(header) + "\n"] + lines[1:])


def _run(capsys, *paths: str) -> tuple[int, list[str]]:
    rc = main(["merge", *paths])
    err = capsys.readouterr().err.strip().splitlines()
    return rc, err


def test_unknown_version(tmp_path, capsys):
    lines = _lines(NAT)
    header = json.loads(lines[0])
    header["version"] = 99
    future = _write(tmp_path, "future.jsonl", [json.dumps(header) + "\n"] + lines[1:])
    rc, err = _run(capsys, _as_host(tmp_path, "a.jsonl", UNREAD, "host-a"), future)
    assert rc == 10
    # (the wording of tracer/sinks/recording.py, which names the line in newer versions)
    assert err[0] in (f"tcptrace-explain: error: {future}:1: recording version 99, this tool reads 1",
                      f"tcptrace-explain: error: {future} is recording version 99, this tool reads 1")
    assert err[1].startswith("  fix: ") and len(err) == 2


def test_two_recordings_of_one_host(tmp_path, capsys):
    a = _as_host(tmp_path, "a.jsonl", NAT, "host-a")
    b = _as_host(tmp_path, "b.jsonl", UNREAD, "host-a")
    rc, err = _run(capsys, a, b)
    assert rc == 10 and len(err) == 2
    assert err[0] == (f"tcptrace-explain: error: {a} and {b} are recordings of the same host (host-a, same host id): "
                      "a merge needs one recording per host")
    assert "different --netns" in err[1]


def test_truncated_file(tmp_path, capsys):
    lines = _lines(NAT)
    cut = "".join(lines)[:-40]
    t = tmp_path / "cut.jsonl"
    t.write_text(cut, encoding="utf-8")
    rc, err = _run(capsys, _as_host(tmp_path, "a.jsonl", UNREAD, "host-a"), str(t))
    assert rc == 10 and len(err) == 2
    assert err[0] == f"tcptrace-explain: error: {t} is truncated: its last line is cut off at byte {len(cut.encode())}"
    assert "Ctrl-C" in err[1]


def test_a_single_recording_is_not_a_merge(capsys):
    rc, err = _run(capsys, NAT)
    assert rc == 10 and err[0] == "tcptrace-explain: error: a merge needs the recordings of at least two hosts"


def test_old_recordings_merge_one_sided_and_say_why(tmp_path, capsys):
    """Recordings made before sequence numbers were recorded: every event is its one-sided
    explanation, with the reason it was not paired."""
    a = _as_host(tmp_path, "a.jsonl", NAT, "host-a")
    b = _as_host(tmp_path, "b.jsonl", UNREAD, "host-b")
    assert main(["merge", "--json", a, b]) == 0
    out = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert out and all(e["pairing"]["paired"] is False for e in out)
    whys = {e["pairing"]["why"] for e in out}
    assert any("did not record them" in w for w in whys)
    assert whys <= {w for w in whys if "did not record them" in w or w.startswith("both ends were on this host")}
    assert {e["host"] for e in out} == {"host-a", "host-b"}
