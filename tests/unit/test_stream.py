"""Output written whole: a signal that interrupts a write blocked on a full pipe (the reader
is slower than the tracer) must not cut the line; CPython's own streams drop the rest."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.unit

WRITER = textwrap.dedent("""
    import signal, sys
    sys.path.insert(0, {repo!r})
    from tracer.sinks.stream import whole
    signal.signal(signal.SIGTERM, lambda *a: None)   # the tracer's stop handler returns too
    out = whole(sys.{stream}) if {wrapped} else sys.{stream}
    out.write("x" * 200000 + "\\n")
    out.write("END\\n")
""")


def lines_after_a_signal(stream: str, wrapped: bool) -> list[int]:
    code = WRITER.format(repo=REPO, stream=stream, wrapped=wrapped)
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1.0)          # it is blocked on the full pipe by now
    p.terminate()
    out, err = p.communicate(timeout=30)
    assert p.returncode == 0, err
    return [len(line) for line in (out if stream == "stdout" else err).splitlines()]


@pytest.mark.parametrize("stream", ["stdout", "stderr"])
def test_a_line_interrupted_by_a_signal_arrives_whole(stream):
    assert lines_after_a_signal(stream, wrapped=True) == [200000, 3]



def test_a_full_disk_is_an_output_error_and_a_gone_reader_a_broken_pipe():
    import os

    from tracer.model.errors import OutputFailed
    from tracer.sinks.stream import FdWriter

    fd = os.open("/dev/full", os.O_WRONLY)
    try:
        with pytest.raises(OutputFailed, match="No space left on device"):
            FdWriter(fd).write("event\n")
    finally:
        os.close(fd)
    r, w = os.pipe()
    os.close(r)
    try:
        with pytest.raises(BrokenPipeError):
            FdWriter(w).write("event\n")
    finally:
        os.close(w)


@pytest.mark.parametrize("mode", [["--json"], []], ids=["json", "console"])
@pytest.mark.parametrize("processes", ["1", "2"])
def test_replay_onto_a_full_disk_blames_the_output_not_the_recording(mode, processes):
    from tests.unit.helpers import RECORDINGS

    with open("/dev/full", "w") as full:
        p = subprocess.run([sys.executable, "-m", "tracer.cli", "replay", *mode, "--processes", processes, RECORDINGS[0]],
                           cwd=REPO, stdout=full, stderr=subprocess.PIPE, text=True, timeout=60)
    assert p.returncode == 14, p.stderr
    assert "cannot write standard output: No space left on device" in p.stderr
    assert "cannot read" not in p.stderr and "Traceback" not in p.stderr
