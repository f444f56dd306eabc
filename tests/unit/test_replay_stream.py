"""Replay streams: a long recording (the real ones repeated by scripts/big_recording.py, each
copy on its own sockets, ports and time) is explained copy by copy exactly as the originals
are, with memory for a window of records, not for the file."""

from __future__ import annotations

import collections
import io
import json
import os
import subprocess
import sys

from tests.conftest import REPO
from tests.unit.helpers import RECORDINGS
from tracer.cli import main
from tracer.sinks import recording

COPIES = 6000    # past the correlator's peer index (4096 incidents): one batch would lose links


def verdicts(lines: list[str]) -> collections.Counter:
    out: collections.Counter = collections.Counter()
    for line in lines:
        e = json.loads(line)
        out[(e["event"], e["verdict"], e["reason"], e["who"])] += 1
    return out


def replay_lines(capsys, path: str) -> list[str]:
    assert main(["replay", "--json", path]) == 0
    return capsys.readouterr().out.splitlines()


def test_a_long_recording_is_explained_copy_by_copy_like_its_scenes(tmp_path, capsys):
    scenes = [p for p in RECORDINGS if recording.load(p).raw]
    per_scene = {p: verdicts(replay_lines(capsys, p)) for p in scenes}
    records = sum(len(recording.load(p).raw) for p in scenes) * (COPIES // len(scenes))
    big = str(tmp_path / "big.jsonl")
    subprocess.run([sys.executable, os.path.join(REPO, "scripts", "big_recording.py"), "--count", str(records), big],
                   check=True, capture_output=True)
    expected: collections.Counter = collections.Counter()
    for _ in range(COPIES // len(scenes)):
        for p in scenes:
            expected.update(per_scene[p])
    assert verdicts(replay_lines(capsys, big)) == expected


def test_replay_reads_the_file_once_front_to_back(tmp_path, capsys):
    """No second pass and no list of the file's lines: a recording read from a pipe replays."""
    text = open(RECORDINGS[0], encoding="utf-8").read()
    r, w = os.pipe()
    os.write(w, text.encode())
    os.close(w)
    reader = recording.Reader(io.open(r, "rb"), "pipe")
    assert sum(1 for _ in reader.iter_records()) == len(recording.load(RECORDINGS[0]).raw)
