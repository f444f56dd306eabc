"""A recording survives how live runs really end: kill -9 loses at most the last second,
SIGHUP (terminal closed, ssh dropped) ends cleanly with the recording whole, and a reader
that goes away (`| head -1`) is a clean exit. Real tracer, real refused connections."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import REPO
from tests.lab.driver import Tracer
from tests.lab.loopback import closed_port, refused
from tracer.sinks import recording

pytestmark = pytest.mark.scenario


def recorded_ports(path) -> tuple[set[int], bool]:
    """Ports in the whole lines of a recording, and whether it has its end line."""
    data = open(path, "rb").read()
    whole = data[:data.rfind(b"\n") + 1].decode()
    rec = recording.read(io.StringIO(whole), str(path))
    ports = set()
    for raw in rec.raw:
        r = recording.decode(raw, rec.context)
        ports.update((r.lport, r.rport))
    return ports, rec.end is not None


def connects(port: int, seconds: float, every: float) -> list[tuple[float, int]]:
    out = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        out.append((time.monotonic(), refused(port)))
        time.sleep(every)
    return out


def test_kill_9_loses_at_most_the_last_second(tmp_path):
    rec = tmp_path / "rec.jsonl"
    port = closed_port()
    ready = tmp_path / "ready"
    # Output to /dev/null: a full stdout pipe nobody reads would stall the run itself.
    p = subprocess.Popen([sys.executable, "-m", "tracer.cli", "--record", str(rec), "--json", "--port", str(port),
                          "--ready-file", str(ready)], cwd=REPO, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not ready.exists():
        assert p.poll() is None and time.monotonic() < deadline
        time.sleep(0.1)
    made = connects(port, 2.0, 0.05)
    made.append((time.monotonic(), refused(port)))   # then a quiet tail, as a crash often has
    time.sleep(1.6)
    killed = time.monotonic()
    p.send_signal(signal.SIGKILL)
    p.wait(timeout=30)
    ports, _ = recorded_ports(rec)
    due = [lp for when, lp in made if when < killed - 1.2]
    assert due and not [lp for lp in due if lp not in ports], f"{len(due)} due, missing some"


def test_sighup_ends_cleanly_with_the_recording_whole(tmp_path):
    rec = tmp_path / "rec.jsonl"
    port = closed_port()
    t = Tracer(tmp_path, "--record", str(rec), "--json", "--port", str(port))
    t.wait_ready(time.monotonic() + 120)
    made = connects(port, 1.0, 0.05)
    time.sleep(0.3)
    t.p.send_signal(signal.SIGHUP)
    out, err = t.p.communicate(timeout=60)
    assert t.p.returncode == 0, err
    assert '{"summary"' in err and "Traceback" not in err
    ports, ended = recorded_ports(rec)
    assert ended and {lp for _, lp in made} <= ports
    assert {lp for _, lp in made} <= {json.loads(x)["lport"] for x in out.splitlines()}


def test_a_reader_that_goes_away_is_a_clean_exit(tmp_path):
    rec = tmp_path / "rec.jsonl"
    ready = tmp_path / "ready"
    port = closed_port()
    cmd = (f"{sys.executable} -m tracer.cli --json --port {port} --record {rec} --ready-file {ready} "
           f"2>{tmp_path}/err | head -1; echo $" + "{PIPESTATUS[0]}")
    sh = subprocess.Popen(["bash", "-c", cmd], cwd=REPO, stdout=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not ready.exists():
        assert sh.poll() is None and time.monotonic() < deadline
        time.sleep(0.1)
    made = []
    while sh.poll() is None and len(made) < 100:     # an event after the first breaks the pipe
        made.append(refused(port))
        time.sleep(0.1)
    out, _ = sh.communicate(timeout=60)
    first, rc = out.splitlines()
    err = (tmp_path / "err").read_text()
    assert rc == "0" and json.loads(first)["verdict"] and "Traceback" not in err and "error" not in err
    ports, ended = recorded_ports(rec)
    assert ended and made[0] in ports


def test_an_output_that_cannot_be_written_is_exit_14_with_the_recording_whole(tmp_path):
    # stdout on a full disk (here /dev/full: every write is ENOSPC): the events cannot be
    # printed, but the recording holds them and its end line (the counters) all the same.
    rec = tmp_path / "rec.jsonl"
    port = closed_port()
    ready = tmp_path / "ready"
    with open("/dev/full", "w") as full:
        p = subprocess.Popen([sys.executable, "-m", "tracer.cli", "--json", "--port", str(port), "--record", str(rec),
                              "--ready-file", str(ready)], cwd=REPO, stdout=full, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not ready.exists():
        assert p.poll() is None and time.monotonic() < deadline, p.communicate()
        time.sleep(0.1)
    made = [refused(port) for _ in range(3)]
    _, err = p.communicate(timeout=60)
    assert p.returncode == 14, err
    assert "cannot write standard output" in err and "Traceback" not in err, err
    ports, ended = recorded_ports(rec)
    assert ended and set(made) <= ports


@pytest.mark.parametrize("delay", [0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0])
def test_ctrl_c_early_ends_without_a_traceback(delay):
    """The console script, interrupted while it loads, compiles or attaches. Python's own start
    (the site module, and pip's wrapper importing tracer.entry, before any line of this
    project's code runs) is outside reach: a traceback with no frame of ours is skipped."""
    script = os.path.join(os.path.dirname(sys.executable), "tcptrace-explain")
    p = subprocess.Popen([script, "--duration", "5"], cwd=REPO, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True)
    time.sleep(delay)
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=120)
    if "Traceback" in err and f"{os.sep}tracer{os.sep}" not in err:
        pytest.skip("interrupted inside the interpreter's own start-up, before tracer.entry ran")
    assert "Traceback" not in err and p.returncode in (0, 130, -signal.SIGINT), (p.returncode, err)
