"""The recording writer: bounded delay to the file, a write error stops only the recording."""

from __future__ import annotations

import errno
import os

import pytest

from tests.unit.helpers import RECORDINGS
from tracer.model.errors import OutputUnwritable
from tracer.sinks import recording


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def lines(path) -> list[str]:
    return path.read_text().splitlines()


def test_records_reach_the_file_within_the_flush_interval(tmp_path):
    src = recording.load(RECORDINGS[0])
    p = tmp_path / "rec.jsonl"
    clock = Clock()
    fd = os.open(p, os.O_WRONLY | os.O_CREAT, 0o600)
    w = recording.RecordingWriter(fd, src.context, clock=clock)
    assert len(lines(p)) == 1            # the header at once
    w.write(src.raw[0])
    w.tick()
    assert len(lines(p)) == 1            # buffered ...
    clock.t += recording.FLUSH_EVERY_S
    w.tick()
    assert len(lines(p)) == 2 and w.written == 1   # ... for at most FLUSH_EVERY_S
    w.write(src.raw[1])
    w.close()                            # and every exit path flushes
    assert len(lines(p)) == 3 and recording.load(str(p)).raw == src.raw[:2]


def test_a_write_error_stops_the_recording_and_says_why(tmp_path):
    src = recording.load(RECORDINGS[0])
    fd = os.open("/dev/full", os.O_WRONLY)
    w = recording.RecordingWriter(fd, src.context)
    assert w.stopped and w.error is not None and w.error.errno == errno.ENOSPC
    for b in src.raw:
        w.write(b)                       # the run goes on; nothing more is attempted
    w.close()
    assert w.written == 0 and w.count == len(src.raw)


def test_append_cuts_a_partial_last_line_first(tmp_path):
    src = open(RECORDINGS[0]).read()
    p = tmp_path / "rec.jsonl"
    p.write_text(src + '{"r":"AAAA')
    fd = os.open(p, os.O_RDWR | os.O_APPEND)
    recording.prepare_append(fd, str(p))
    os.close(fd)
    assert p.read_text() == src


def test_append_refuses_a_file_that_is_not_a_recording(tmp_path):
    p = tmp_path / "notes.txt"
    p.write_text("my notes\n")
    fd = os.open(p, os.O_RDWR | os.O_APPEND)
    with pytest.raises(OutputUnwritable) as err:
        recording.prepare_append(fd, str(p))
    os.close(fd)
    assert "not a tcptrace-explain recording" in err.value.message and p.read_text() == "my notes\n"
