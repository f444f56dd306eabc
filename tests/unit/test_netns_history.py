"""Namespace names over a run: an inode the kernel gave to a later namespace names each
event by the namespace it came from, live (NameCache) and in replay (the recorded history)."""

from __future__ import annotations

import io
import json

import pytest

from tests.unit.helpers import DATA
from tracer.replay import replay
from tracer.model.errors import RecordingInvalid
from tracer.model.netnames import MAX_NAMES_PER_INODE, NameHistory
from tracer.sinks import recording
from tracer.sinks.jsonl import JsonSink

pytestmark = pytest.mark.unit
UNREAD = f"{DATA}/filters/owners.jsonl"     # a live run with two named namespaces


def with_end(tmp_path, **end) -> str:
    lines = open(UNREAD, encoding="utf-8").read().splitlines()
    last = json.loads(lines[-1])
    last["end"].update(end)
    path = tmp_path / "run.jsonl"
    path.write_text("\n".join(lines[:-1] + [json.dumps(last)]) + "\n", encoding="utf-8")
    return str(path)


def events(path: str) -> list[dict]:
    out = io.StringIO()
    replay(path, JsonSink(out=out, err=io.StringIO()))
    return [json.loads(line) for line in out.getvalue().splitlines()]


def records() -> list:
    reader, fh = recording.open_reader(UNREAD)
    with fh:
        return list(reader.iter_records())


def test_replay_names_each_event_by_the_name_its_inode_had_then(tmp_path):
    plain = events(UNREAD)
    assert {e["netns_name"] for e in plain} == {"tte1ae71e-client", "tte1ae71e-server"}
    ino = next(e["netns"] for e in plain if e["netns_name"] == "tte1ae71e-client")
    ts = sorted(r.ts_ns for r in records() if r.netns == ino)
    assert len(ts) >= 2 and ts[0] < ts[-1]
    # The inode was "old-lab" until just after its first record, then "new-lab".
    renamed = with_end(tmp_path, netns_history={str(ino): [[0, "old-lab"], [ts[0] + 1, "new-lab"]]})
    got = [(e["netns"], e["netns_name"]) for e in events(renamed)]
    mine = [name for n, name in got if n == ino]
    assert mine[0] == "old-lab" and mine[-1] == "new-lab" and len(mine) == len(
        [e for e in plain if e["netns"] == ino])
    # the other namespace keeps its netns_names entry for the whole run
    assert {name for n, name in got if n != ino} == {"tte1ae71e-server"}


def test_replay_netns_resolves_a_name_whose_inode_went_to_a_later_namespace(tmp_path):
    ino = next(e["netns"] for e in events(UNREAD) if e["netns_name"] == "tte1ae71e-client")
    path = with_end(tmp_path, netns_history={str(ino): [[0, "old-lab"], [1, "new-lab"]]})
    known = recording.netns_history(recording.tail_end(path)).inodes_by_name()
    assert known["old-lab"] == known["new-lab"] == ino


def test_a_recording_without_history_names_by_its_table_for_the_whole_run():
    end = recording.tail_end(UNREAD)
    assert end is not None and "netns_history" not in end      # recorded before the history
    hist = recording.netns_history(end)
    for k, name in end["netns_names"].items():
        assert hist.at(int(k), 0) == hist.at(int(k), 10 ** 18) == name


def test_appended_runs_merge_their_histories_in_time_order():
    a = NameHistory.from_json({"7": [[100, "a"], [300, None]]})
    b = NameHistory.from_json({"7": [[200, "b"]], "8": [[5, "c"]]})
    m = a.merged(b)
    assert [m.at(7, t) for t in (150, 250, 350)] == ["a", "b", None]
    assert m.at(8, 0) == "c" and m.last() == {7: "b", 8: "c"}


def test_history_keeps_the_latest_names_of_an_inode_and_ignores_repeats():
    h = NameHistory()
    for i in range(3 * MAX_NAMES_PER_INODE):
        h.note(9, i * 10, f"n{i // 2}")      # each name twice: one entry per change
    assert len(h.entries[9]) == MAX_NAMES_PER_INODE
    assert h.at(9, 10 ** 9) == f"n{(3 * MAX_NAMES_PER_INODE - 1) // 2}"
    h.note(10, 0, None)                      # an inode that never had a name: no entry
    assert 10 not in h.entries


@pytest.mark.parametrize("history", [[1], {"x": []}, {"1": [[1]]}, {"1": [["t", "a"]]}, {"1": [[1, 2]]}])
def test_a_malformed_history_is_a_clear_error(history):
    text = open(UNREAD, encoding="utf-8").read().splitlines()
    last = json.loads(text[-1])
    last["end"]["netns_history"] = history
    body = "\n".join(text[:-1] + [json.dumps(last)]) + "\n"
    with pytest.raises(RecordingInvalid) as err:
        recording.read(io.BytesIO(body.encode()), "x.jsonl")
    assert "bad end line" in err.value.message and err.value.exit_code == 10
