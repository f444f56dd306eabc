"""Replay in two processes (--processes 2: this one reads and correlates, a forked child
explains and prints) prints what one process prints, byte for byte, and fails as one process
fails: a closed stdout, a bad line, Ctrl-C, a killed child or a killed parent, with no process
left behind and no traceback."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import REPO
from tests.unit.helpers import RECORDINGS
from tracer import forked
from tracer.cli import main
from tracer.explain.storm import join
from tests.unit.test_storm_join import REFUSED

pytestmark = pytest.mark.unit
CLI = [sys.executable, "-m", "tracer.cli", "replay"]


def run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], cwd=REPO, capture_output=True, timeout=timeout)


@pytest.fixture(scope="module")
def big(tmp_path_factory) -> str:
    """About 30,000 records (many replay chunks) with storm lines among them."""
    d = tmp_path_factory.mktemp("big")
    plain = str(d / "plain.jsonl")
    subprocess.run([sys.executable, os.path.join(REPO, "scripts", "big_recording.py"), "--count", "30000", plain],
                   check=True, capture_output=True, timeout=120)
    lines = open(plain, encoding="utf-8").read().splitlines(keepends=True)
    storm = json.dumps({"storm": [b.to_record() for b in join(REFUSED)]}) + "\n"
    out = []
    for i, line in enumerate(lines):
        out.append(line)
        if i and i % 7000 == 0 and line.startswith('{"r"'):
            out.append(storm)
    path = str(d / "big.jsonl")
    with open(path, "w", encoding="utf-8") as fh:
        fh.writelines(out)
    return path


def test_two_processes_print_what_one_prints_byte_for_byte(big):
    one, two = run("--json", "--processes", "1", big), run("--json", "--processes", "2", big)
    assert one.returncode == two.returncode == 0, two.stderr
    assert two.stdout == one.stdout
    assert two.stderr == one.stderr
    assert len(one.stdout.splitlines()) > 10_000          # many chunks, not one
    assert one.stderr.count(b'"insight": "reset_storm"') == 4   # the storm lines, in their place


@pytest.mark.parametrize("path", RECORDINGS, ids=lambda p: os.path.basename(p))
def test_each_recorded_scene_is_the_same_in_two_processes(path):
    one, two = run("--json", "--processes", "1", path), run("--json", "--processes", "2", path)
    assert (two.returncode, two.stdout, two.stderr) == (one.returncode, one.stdout, one.stderr)


@pytest.mark.parametrize("mode", [["--no-color"], ["--compact", "--no-color"]], ids=["full", "compact"])
def test_the_console_is_the_same_in_two_processes(mode, big):
    """Storms of blocks too: the console's rate limit goes by the events' time, not the clock."""
    for path in (RECORDINGS[0], big):
        one, two = run(*mode, "--processes", "1", path), run(*mode, "--processes", "2", path)
        assert one.returncode == two.returncode == 0
        assert one.stdout.strip()
        assert (two.stdout, two.stderr) == (one.stdout, one.stderr)
    assert b"more events in the last second not shown one by one" in one.stdout


def test_a_bad_line_midway_stops_both_alike_after_the_same_events(big, tmp_path):
    lines = open(big, encoding="utf-8").read().splitlines(keepends=True)
    lines[len(lines) // 2] = '{"r": "not base64 at all!"}\n'
    bad = str(tmp_path / "bad.jsonl")
    open(bad, "w", encoding="utf-8").writelines(lines)
    one, two = run("--json", "--processes", "1", bad), run("--json", "--processes", "2", bad)
    assert one.returncode == 10, one.stderr
    assert (two.returncode, two.stdout, two.stderr) == (one.returncode, one.stdout, one.stderr)
    assert one.stdout and b"Traceback" not in two.stderr


def replays_of(path: str) -> list[int]:
    out = subprocess.run(["pgrep", "-f", f"tracer.cli replay .*{path}"], capture_output=True, text=True).stdout
    return [int(x) for x in out.split()]


def test_the_reader_going_away_ends_both_processes_quietly(big):
    p = subprocess.run(["bash", "-c", '"$@" | head -c 1 >/dev/null; echo "${PIPESTATUS[0]}" >&2', "sh",
                        *CLI, "--json", "--processes", "2", big], cwd=REPO, capture_output=True, text=True, timeout=60)
    *said, rc = p.stderr.strip().splitlines()
    assert rc == "0", p.stderr
    assert not any("error" in line or "Traceback" in line for line in said), p.stderr
    assert replays_of(big) == []                  # the child went with it


def start(big: str, new_group: bool = False) -> tuple[subprocess.Popen, int]:
    """A two-process replay under way, and its child's pid."""
    p = subprocess.Popen([*CLI, "--json", "--processes", "2", big], cwd=REPO, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, start_new_session=new_group)
    assert p.stdout is not None
    p.stdout.readline()           # the child prints: both processes run
    with open(f"/proc/{p.pid}/task/{p.pid}/children") as fh:
        children = [int(c) for c in fh.read().split()]
    assert len(children) == 1
    return p, children[0]


def gone(pid: int, within_s: float = 10.0) -> bool:
    end = time.monotonic() + within_s
    while time.monotonic() < end:
        try:
            with open(f"/proc/{pid}/stat") as fh:
                if fh.read().rsplit(")", 1)[1].split()[0] == "Z":
                    return True
        except FileNotFoundError:
            return True
        time.sleep(0.05)
    return False


def finish(p: subprocess.Popen) -> tuple[int, str]:
    _, err = p.communicate(timeout=60)
    return p.returncode, err.decode()


def full_run_lines(big: str) -> int:
    return len(run("--json", "--processes", "1", big).stdout.splitlines())


@pytest.mark.parametrize("to_group", [False, True], ids=["kill -INT", "Ctrl-C (the process group)"])
def test_ctrl_c_stops_both_processes_with_130(big, to_group):
    total = full_run_lines(big)
    p, child = start(big, new_group=to_group)
    if to_group:
        os.killpg(p.pid, signal.SIGINT)
    else:
        p.send_signal(signal.SIGINT)
    assert gone(child, within_s=5.0)             # stopped, not left to finish the recording
    out, err = p.communicate(timeout=60)
    assert p.returncode == 130 and b"Traceback" not in err, err
    assert len(out.splitlines()) + 1 < total      # it stopped early: not every event was printed


def test_a_killed_child_is_an_error_that_says_so(big):
    p, child = start(big)
    os.kill(child, signal.SIGKILL)
    rc, err = finish(p)
    assert rc == 1, err
    assert f"replay's explaining process (pid {child})" in err and "--processes 1" in err
    assert "Traceback" not in err and "internal error" not in err


def test_a_killed_parent_leaves_no_child(big):
    p, child = start(big)
    p.kill()
    p.wait(timeout=10)
    assert gone(child)
    p.stdout.close()
    p.stderr.close()


def test_output_without_a_file_descriptor_stays_in_one_process(big, capsys, tmp_path, monkeypatch):
    """A captured sys.stdout has no file descriptor: a child's output would be lost."""
    from tracer.replay import default_processes
    assert default_processes(big) == 1                     # capsys: sys.stdout is not a descriptor
    assert main(["replay", "--json", "--processes", "2", RECORDINGS[0]]) == 0
    assert capsys.readouterr().out.strip()                 # printed here, not lost in a child
    with open(tmp_path / "out", "w") as out, open(tmp_path / "err", "w") as err:
        monkeypatch.setattr(sys, "stdout", out)
        monkeypatch.setattr(sys, "stderr", err)
        assert default_processes(big) == (2 if len(os.sched_getaffinity(0)) >= 2 else 1)
        assert default_processes(RECORDINGS[0]) == 1        # small: not worth a fork


def test_the_child_answers_in_order_and_its_errors_come_back():
    seen = []

    def handler(kind, payload):
        seen.append(payload)
        if kind == forked.END:
            return sum(seen[:-1]) * payload
        return None

    f = forked.start(handler)
    for i in range(1000):
        f.send("n", i)
    assert f.finish(2) == 2 * sum(range(1000))
    assert seen == []           # the handler ran in the child, not here

    def failing(kind, payload):
        raise ValueError(f"bad {kind} {payload}")

    f = forked.start(failing)
    with pytest.raises(ValueError, match="bad n 1"):
        f.send("n", 1)
        for _ in range(100_000):      # the child's failure surfaces at the next send or the end
            f.send("n", 2)
        f.finish(0)


def test_a_childs_own_error_wins_over_a_later_one_here(big, tmp_path):
    """Output to a full disk and a bad line further on: one process fails writing first (14);
    so must two, though the reader here reaches the bad line before the child reports."""
    from tracer.replay import REPLAY_CHUNK
    lines = open(big, encoding="utf-8").read().splitlines(keepends=True)
    # In the second chunk: the reader fails before it sends that chunk, so before it can
    # hear that the child failed writing the first one.
    lines[REPLAY_CHUNK + 100] = '{"r": "not base64 at all!"}\n'
    bad = str(tmp_path / "bad.jsonl")
    open(bad, "w", encoding="utf-8").writelines(lines)
    rcs = []
    for processes in ("1", "2"):
        with open("/dev/full", "w") as full:
            p = subprocess.run([*CLI, "--json", "--processes", processes, bad], cwd=REPO, stdout=full,
                               stderr=subprocess.PIPE, text=True, timeout=60)
        rcs.append((p.returncode, "cannot write standard output" in p.stderr))
    assert rcs == [(14, True), (14, True)]


def test_every_error_comes_back_from_the_child_as_it_was():
    import inspect
    import pickle

    from tracer.model import errors
    seen = 0
    for _, cls in inspect.getmembers(errors, inspect.isclass):
        if not issubclass(cls, errors.TteError):
            continue
        required = [p for p in inspect.signature(cls.__init__).parameters.values()
                    if p.default is p.empty and p.name != "self"]
        err = cls(*["x"] * len(required))
        back = pickle.loads(pickle.dumps(err))
        assert (type(back), back.message, back.remedy, back.exit_code) == (cls, err.message, err.remedy, err.exit_code)
        seen += 1
    assert seen >= 10


class _Stream:
    """A recording reader's face, over records already made (pre-forked server: the holders
    are the master's children, learnt from OWNER records as replay goes)."""

    def __init__(self, records):
        self._records = records
        self.on_storm = None
        self.count, self.bad, self.ignored_bytes, self.name, self.end = len(records), 0, 0, "stub", None

    def iter_records(self):
        return iter(self._records)


def test_pids_learnt_for_children_filter_the_same_in_two_processes(tmp_path):
    from tests.unit.test_owners import MASTER, W1, W2, accepted, owner
    from tracer.explain.filters import EventFilter
    from tracer.replay import _replay
    from tracer.sinks.jsonl import JsonSink

    one, two = accepted(0x1000, 40000), accepted(0x2000, 40001, ts=accepted(0, 0).ts_ns + 3_000_000_000)
    records = [one, owner(one, W1), two, owner(two, W2, ts=two.ts_ns + 1_000_000)]
    got = []
    for processes in (1, 2):
        path = tmp_path / f"out{processes}"
        with open(path, "w", buffering=1) as out, open(tmp_path / f"err{processes}", "w", buffering=1) as err:
            flt = EventFilter(pids=frozenset({MASTER}), children=True)
            _replay(_Stream(records), None, JsonSink(out=out, err=err), flt, processes)
        got.append([(e["pid"], e["comm"]) for e in map(json.loads, open(path).read().splitlines())])
    assert got[0] == [(W1, "nginx"), (W2, "nginx")]
    assert got[1] == got[0]


def test_no_second_process_at_the_process_limit_replays_in_one(big):
    """At RLIMIT_NPROC (or a full pids cgroup) fork() fails with EAGAIN: the replay says so
    and explains in its own process, printing what one process prints."""
    if os.geteuid() != 0:
        pytest.skip("needs root to run as another user with a process limit")
    import shutil
    import tempfile
    shared = tempfile.mkdtemp(prefix="tte-nproc-", dir="/tmp")     # pytest's own is root's alone
    try:
        os.chmod(shared, 0o755)
        path = os.path.join(shared, "big.jsonl")
        shutil.copyfile(big, path)
        os.chmod(path, 0o644)
        as_nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "prlimit", "--nproc=1:1"]
        two = subprocess.run([*as_nobody, *CLI, "--json", "--processes", "2", path], cwd=REPO,
                             capture_output=True, timeout=120)
        one = run("--json", "--processes", "1", path)
    finally:
        shutil.rmtree(shared)
    assert two.returncode == 0, two.stderr[-2000:]
    assert b"replay: no second process (Resource temporarily unavailable); explaining in this one" in two.stderr
    assert two.stdout == one.stdout and len(one.stdout.splitlines()) > 10_000
    assert b"Traceback" not in two.stderr
