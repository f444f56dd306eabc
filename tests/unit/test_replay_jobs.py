"""Replay on several processes (tracer/jobs.py): the output is byte for byte that of one
process, whatever the helpers do, and no helper outlives the replay."""

from __future__ import annotations

import collections
import io
import os
import pickle
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import REPO
from tests.unit.helpers import RECORDINGS
from tracer import jobs, live
from tracer.explain.owners import OwnerResolver
from tracer.explain.pipeline import Pipeline
from tracer.explain.procinfo import RecordedFacts
from tracer.sinks import recording
from tracer.sinks.console import ConsoleSink
from tracer.sinks.jsonl import JsonSink


def test_every_incident_has_exactly_one_explainer_in_fixed_shares():
    for helpers in (1, 2, 3):
        cycle = jobs.MAIN_SLOTS + jobs.HELPER_SLOTS * helpers
        owners = collections.Counter(jobs.slot(n, helpers) for n in range(cycle * 100))
        assert owners == {0: jobs.MAIN_SLOTS * 100, **{k: jobs.HELPER_SLOTS * 100 for k in range(1, helpers + 1)}}
    assert {jobs.slot(n, 0) for n in range(50)} == {0}


def replayed(path: str, helpers: int) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    live.replay(path, JsonSink(out, err), helpers=helpers)
    return out.getvalue(), err.getvalue()


def repeated(tmp_path_factory, count: int) -> str:
    """The real recordings repeated to `count` records (scripts/big_recording.py)."""
    path = str(tmp_path_factory.mktemp("jobs") / f"r{count}.jsonl")
    subprocess.run([sys.executable, os.path.join(REPO, "scripts", "big_recording.py"), "--count", str(count), path],
                   check=True, capture_output=True)
    return path


@pytest.fixture(scope="module")
def big(tmp_path_factory) -> str:
    """Past several releases and the peer index (about 8 MB)."""
    return repeated(tmp_path_factory, 20_000)


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> str:
    return repeated(tmp_path_factory, 400)


def test_one_two_and_three_processes_write_the_same_bytes(big):
    alone = replayed(big, 0)
    assert alone[0].count("\n") > 10_000
    assert replayed(big, 1) == alone
    assert replayed(big, 2) == alone


@pytest.mark.parametrize("path", RECORDINGS, ids=lambda p: os.path.basename(p))
def test_each_real_recording_is_the_same_with_a_helper(path):
    assert replayed(path, 1) == replayed(path, 0)


def test_the_console_is_the_same_with_helpers():
    """The console makes its lines itself (a helper sends explanations, not lines). It shows at
    most 10 events per second of the wall clock, so only recordings of fewer compare."""
    def console(path: str, helpers: int) -> str:
        out = io.StringIO()
        live.replay(path, ConsoleSink(out, color=False, err=io.StringIO()), helpers=helpers)
        return out.getvalue()

    lines = 0
    for path in RECORDINGS:
        alone = console(path, 0)
        assert "not shown one by one" not in alone
        assert console(path, 1) == alone, path
        lines += alone.count("\n")
    assert lines > 300


def released(path: str):
    """The incidents of a recording in release order and the function that explains one."""
    end = recording.tail_end(path)
    reader, fh = recording.open_reader(path)
    with fh:
        records = list(reader.iter_records())
    captured = []

    class Capture:
        def explain(self, incidents, one):
            captured.append((incidents, one))
            return [(inc, one(inc)) for inc in incidents]

    pipe = Pipeline(recording.peer_check(end), OwnerResolver(drop=False), live.recorded_attribution(end),
                    RecordedFacts.from_end(recording.end_of(end).get("runtimes")), Capture())
    pipe.feed(records)
    pipe.release(None)
    ((incidents, one),) = captured
    return incidents, one


def framed(items) -> bytes:
    body = pickle.dumps(items)
    return len(body).to_bytes(4, "little") + body


def helper_stream(incidents, one, cut=None, damage=None) -> io.BytesIO:
    """What helper 1 of 1 sends for these incidents, cut short or damaged at one of its items."""
    mine = [(n, inc.ts_ns, inc.event, one(inc), None) for n, inc in enumerate(incidents) if jobs.slot(n, 1) == 1]
    if cut is not None:
        mine = mine[:cut]
    if damage is not None:
        mine[damage] = damage_item(mine[damage])
    return io.BytesIO(b"".join(framed(mine[i:i + 5]) for i in range(0, len(mine), 5)))


def damage_item(item):
    n, ts, event, e, line = item
    return (n + 1, ts, event, e, line)


@pytest.mark.parametrize("how", ["complete", "cut", "wrong_number", "garbage"])
def test_what_a_helper_fails_to_deliver_is_explained_here(small, how):
    incidents, one = released(small)
    assert len(incidents) >= 100
    expected = [one(inc) for inc in incidents]
    if how == "garbage":
        stream = io.BytesIO(helper_stream(incidents, one).getvalue()[:40] + b"\x00not a pickle" * 50)
    else:
        stream = helper_stream(incidents, one, cut=2 if how == "cut" else None,
                               damage=1 if how == "wrong_number" else None)
    share = jobs.MainShare([jobs.Received(stream)])
    got = share.explain(incidents[:70], one) + share.explain(incidents[70:], one)
    assert [e for _, e in got] == expected
    assert [inc for inc, _ in got] == incidents
    assert share.dropped == (0 if how == "complete" else 1)


def children(pid: int) -> set[int]:
    out: set[int] = set()
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/children") as fh:
            out.update(int(x) for x in fh.read().split())
    return out


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def gone_within(pids: set[int], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not any(alive(p) for p in pids):
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize("end", ["SIGTERM", "SIGINT", "SIGKILL", "reader_closes", "finished"])
def test_no_helper_outlives_its_replay(big, end):
    p = subprocess.Popen([sys.executable, "-m", "tracer.cli", "replay", "--json", "--jobs", "3", big], cwd=REPO,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert p.stdout is not None
    first = p.stdout.readline()
    assert first.startswith(b"{")
    helpers = children(p.pid)
    assert len(helpers) == 2
    if end == "SIGTERM":
        p.send_signal(signal.SIGTERM)
    elif end == "SIGINT":
        p.send_signal(signal.SIGINT)
    elif end == "SIGKILL":        # nothing of the main process runs: the kernel ends the helpers
        p.kill()
    elif end == "reader_closes":
        p.stdout.close()
    else:
        p.stdout.read()
    p.wait(timeout=120)
    err = p.stderr.read().decode() if p.stderr else ""
    assert "Traceback" not in err
    if end == "finished":
        assert p.returncode == 0 and '"summary"' in err
    assert gone_within(helpers, 5), f"helpers {helpers} still running after the replay ended"
