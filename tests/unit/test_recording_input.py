"""Replay input: a partial last line is skipped and counted; every malformed field is a
RecordingInvalid (rc 10) naming its line, never an internal error."""

from __future__ import annotations

import io
import json

import pytest

from tests.unit.helpers import RECORDINGS
from tracer.model.errors import RecordingInvalid
from tracer.sinks import recording

REAL = open(RECORDINGS[0], encoding="utf-8").read()
HEADER, *BODY = REAL.splitlines(keepends=True)


def read(text: str) -> recording.Recording:
    return recording.read(io.BytesIO(text.encode()), "x.jsonl")


def test_a_partial_last_line_is_ignored_and_counted():
    whole = read(REAL)
    cut = REAL[:-40]                        # kill -9 in the middle of the last line
    rec = read(cut)
    assert rec.raw == whole.raw[:len(rec.raw)] and len(rec.raw) >= len(whole.raw) - 1
    assert rec.ignored_bytes == len(cut) - cut.rfind("\n") - 1


def test_a_last_line_missing_only_its_newline_is_kept():
    rec = read(REAL.rstrip("\n"))
    assert rec.raw == read(REAL).raw and rec.ignored_bytes == 0


def test_a_record_line_in_any_json_spelling_gives_the_same_bytes():
    """The writer's `{"r":"..."}` lines skip the JSON parser; any other spelling of the same
    object (spaces, an escaped character, another key first) goes through it, to the same bytes."""
    records = [line for line in BODY if line.startswith('{"r":"')]
    assert len(records) >= 5
    spelled = []
    for i, line in enumerate(records):
        b64 = json.loads(line)["r"]
        spelled.append([f'{{"r": "{b64}"}}\n', '{"r":"\\u%04x%s"}\n' % (ord(b64[0]), b64[1:]),
                        f'{{"x": 1, "r":"{b64}"}}\n', line][i % 4])
    assert read(HEADER + "".join(spelled)).raw == read(HEADER + "".join(records)).raw


def header_with(**context) -> str:
    h = json.loads(HEADER)
    h["context"].update(context)
    return json.dumps(h) + "\n"


@pytest.mark.parametrize("text, line, message", [
    (HEADER + "[" * 100_000 + "]" * 100_000 + "\n", 2, "nested too deeply"),
    (HEADER + '{"r": ' + "7" * 5000 + "}\n" + BODY[0], 2, "not a JSON line"),
    (header_with(mono_to_wall_ns=10 ** 30), 1, "clock offset"),
    (header_with(mono_to_wall_ns="soon"), 1, "bad header"),
    (header_with(tcp_states=[1, 2]), 1, "bad header"),
    (json.dumps({**json.loads(HEADER), "meta": [1]}) + "\n", 1, "bad header"),
    (HEADER + '{"r": 12}\n', 2, "bad record encoding"),
    (HEADER + '{"r": ["a"]}\n', 2, "bad record encoding"),
    (HEADER + '{"r":"AAA*"}\n', 2, "bad record encoding"),       # the writer's own shape
    (HEADER + '{"r":"AAAA"x}\n', 2, "not a JSON line"),
    (HEADER + '"just a string"\n', 2, "expected an object"),
    (HEADER + '{"end": [1]}\n', 2, "bad end line"),
    (HEADER + '{"end": {"counters": {"lost": "many"}}}\n', 2, "not a count"),
    (HEADER + '{"end": {"counters": {"lost": 1e400}}}\n', 2, "not a count"),
    (HEADER + '{"end": {"counters": {"missed": -1}}}\n', 2, "counter missed is not a count"),
    (HEADER + '{"end": {"counters": {"missed": "some"}}}\n', 2, "counter missed is not a count"),
    (HEADER + '{"end": {"local_addrs": "10.0.0.1"}}\n', 2, "wrong type"),
    (HEADER + '{"end": {"netns_names": {"1": 2}}}\n', 2, "wrong type"),
    (HEADER + '{"end": {"cgroups": {"42": 7}}}\n', 2, "bad end line"),
    (HEADER + '{"end": {"cgroups": [1]}}\n', 2, "not an object"),
    (HEADER + '{"end": {"uids": {"42": 0, "x": 1}}}\n', 2, "bad end line"),
    (HEADER + '{"end": {"uid_history": {"42": [[1, "root"]]}}}\n', 2, "uid_history entry '42'"),
    (HEADER + '{"end": {"cgroup_history": {"42": [[1.5, "/a"]]}}}\n', 2, "cgroup_history entry '42'"),
    (HEADER + "\xff\xfe\n" + BODY[0], 2, "not a JSON line"),
    (HEADER + "x" * (recording.MAX_LINE + 10) + "\n", 2, "longer than"),
])
def test_malformed_fields_name_their_line(text, line, message):
    with pytest.raises(RecordingInvalid) as err:
        read(text)
    assert message in err.value.message and f"x.jsonl:{line}" in err.value.message, err.value.message
    assert err.value.exit_code == 10


def test_a_file_of_zeros_stops_at_the_line_limit():
    with pytest.raises(RecordingInvalid) as err:
        recording.read(io.BytesIO(b"\0" * (3 * recording.MAX_LINE)), "zeros")
    assert "zeros:1" in err.value.message and "longer than" in err.value.message


def test_appended_runs_read_as_one_recording_with_their_counts_added():
    end = '{"end": {"counters": {"lost": 2, "filtered": 1}, "local_addrs": ["10.0.0.1"]}}\n'
    one = HEADER + "".join(b for b in BODY if not b.startswith('{"end"')) + end
    rec = read(one + one)
    single = read(one)
    assert rec.raw == single.raw * 2 and rec.end["counters"]["lost"] == 4
    assert len(recording.decoded(rec)[0]) == 2 * len(recording.decoded(single)[0])


def test_appended_runs_add_their_missed_events_unless_one_run_could_not_count_them():
    def run(missed) -> str:
        end = {"counters": {"lost": 0, **({} if missed is False else {"missed": missed})}, "local_addrs": []}
        return HEADER + "".join(b for b in BODY if not b.startswith('{"end"')) + json.dumps({"end": end}) + "\n"
    assert read(run(3) + run(4)).end["counters"]["missed"] == 7
    assert read(run(3) + run(None)).end["counters"]["missed"] is None     # a kernel without the counter
    assert read(run(3) + run(False)).end["counters"]["missed"] is None    # a run from before the counter
    from tracer.model.counters import Counters
    assert Counters.replayed(2, read(run(3) + run(4)).end["counters"]).missed == 7


def test_appended_runs_keep_both_runs_owners_of_a_reused_pid():
    """Run 1's pid 7 was uid 1000 in a service; run 2's pid 7 (reused) is uid 33 in another."""
    def run(ts: int, uid: int, cg: str) -> str:
        end = {"counters": {}, "local_addrs": [], "uids": {"7": uid}, "uid_history": {"7": [[ts, uid]]},
               "cgroups": {"7": cg}, "cgroup_history": {"7": [[ts, cg]]}}
        return HEADER + "".join(b for b in BODY if not b.startswith('{"end"')) + json.dumps({"end": end}) + "\n"
    rec = read(run(100, 1000, "/a.slice/a.service") + run(5_000, 33, "/b.slice/b.service"))
    cgroups, uids = recording.pid_histories(rec.end)
    assert (uids.at(7, 200), uids.at(7, 6_000)) == (1000, 33)
    assert (cgroups.at(7, 200), cgroups.at(7, 6_000)) == ("/a.slice/a.service", "/b.slice/b.service")
    assert rec.end["uids"] == {"7": 33}
    # A second run recorded before the histories were kept: its flat table, from time 0.
    old = HEADER + "".join(b for b in BODY if not b.startswith('{"end"')) + json.dumps(
        {"end": {"counters": {}, "local_addrs": [], "uids": {"8": 5}}}) + "\n"
    _, uids = recording.pid_histories(read(run(100, 1000, "/a.slice/a.service") + old).end)
    assert (uids.at(7, 200), uids.at(8, 200)) == (1000, 5)


def replay(capsys, path) -> tuple[int, list[str], str]:
    from tracer.cli import main

    rc = main(["replay", "--json", str(path)])
    out, err = capsys.readouterr()
    return rc, out.splitlines(), err


def test_replay_of_a_truncated_recording_shows_the_rest_and_says_what_it_ignored(tmp_path, capsys):
    full = tmp_path / "full.jsonl"
    full.write_text(REAL)
    rc, events, _ = replay(capsys, full)
    assert rc == 0 and events
    cut = tmp_path / "cut.jsonl"
    body = REAL[:REAL.rfind('{"end"')]              # a run killed before its end line ...
    cut.write_text(body + body.splitlines(keepends=True)[-1][:50])   # ... in the middle of a record
    rc, cut_events, err = replay(capsys, cut)
    assert rc == 0 and cut_events == events and "its last 50 bytes were ignored" in err


def test_replay_of_a_malformed_recording_is_rc_10_with_the_line(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(HEADER + BODY[0] + '{"r": ' + "9" * 5000 + "}\n")
    rc, events, err = replay(capsys, bad)
    assert rc == 10 and f"{bad}:3: not a JSON line" in err and "internal error" not in err
