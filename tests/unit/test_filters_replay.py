"""The bcc-style filters on recorded streams: the stream a live run recorded of two owners
that differ in uid, cgroup, family and port (tests/data/filters/owners.jsonl, recorded by
tests/scenario/test_filters.py with TTE_SAVE_RECORDINGS=1), and the lab's recordings."""

from __future__ import annotations

import io
import json
import os

import click
import pytest

from tests.unit.helpers import DATA, RECORDINGS, name_of
from tracer.cli import main
from tracer.cliparams import IntList, UidList, VerdictList, cgroup_paths
from tracer.explain.filters import EventFilter
from tracer.replay import replay
from tracer.model.errors import InvalidOption
from tracer.sinks.jsonl import JsonSink

pytestmark = pytest.mark.unit
OWNERS = os.path.join(DATA, "filters", "owners.jsonl")
with open(OWNERS.replace(".jsonl", ".truth.json"), encoding="utf-8") as _fh:
    TRUTH = json.load(_fh)
TOP = TRUTH["top"]
A, B = TRUTH["pids"]["tte-flt-a"], TRUTH["pids"]["tte-flt-b"]
A_REFUSED, A_CLOSED = ("tte-flt-a", "connection_refused", 9), (None, "port_closed", 9)
B_REFUSED, B_CLOSED = ("tte-flt-b", "connection_refused", 10), (None, "port_closed", 10)


def key(e: dict) -> tuple:
    return (e["comm"], e["verdict"], e["rport"] if e["event"] == "reset_received" else e["lport"])


def cli_replay(capsys, path: str, *args: str) -> list[dict]:
    assert main(["replay", path, "--json", *args]) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


@pytest.mark.parametrize("args, want", [
    ([], {A_REFUSED, A_CLOSED, B_REFUSED, B_CLOSED}),
    (["--uid", str(TRUTH["nobody"])], {A_REFUSED}),
    (["--uid", "0"], {B_REFUSED}),
    (["--uid", "4242"], set()),
    (["--cgroup", f"/{TOP}/x"], {A_REFUSED}),
    (["--cgroup", f"/{TOP}/"], {A_REFUSED, B_REFUSED}),     # a subtree; the trailing / does not matter
    (["--cgroup", f"/{TOP}/x", "--cgroup", f"/{TOP}/y"], {A_REFUSED, B_REFUSED}),
    (["--cgroup", f"/{TOP}/xy"], set()),                     # a sibling's prefix is not its subtree
    (["--cgroup", "/"], {A_REFUSED, B_REFUSED}),            # every known cgroup; no owner: no match
    (["-4"], {A_REFUSED, A_CLOSED}),
    (["-6"], {B_REFUSED, B_CLOSED}),
    (["-4", "-6"], {A_REFUSED, A_CLOSED, B_REFUSED, B_CLOSED}),
    (["--lport", "9,10"], {A_CLOSED, B_CLOSED}),
    (["--rport", "9", "--rport", "10"], {A_REFUSED, B_REFUSED}),
    (["--port", "9"], {A_REFUSED, A_CLOSED}),
    (["--verdict", "port_closed,connection_refused"], {A_REFUSED, A_CLOSED, B_REFUSED, B_CLOSED}),
    (["--verdict", "connection_refused", "-6"], {B_REFUSED}),
    (["-p", f"{A},{B}"], {A_REFUSED, B_REFUSED}),
    (["-p", str(B), "--uid", "nobody"], set()),              # different options must all hold
], ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_replay_filters_on_the_owners_recording(capsys, args, want):
    assert {key(e) for e in cli_replay(capsys, OWNERS, *args)} == want


@pytest.mark.parametrize("path", RECORDINGS, ids=name_of)
def test_filters_on_the_lab_recordings(path):
    out = io.StringIO()
    replay(path, JsonSink(out=out, err=io.StringIO()))
    events = [json.loads(line) for line in out.getvalue().splitlines()]

    def run(flt: EventFilter) -> list[dict]:
        o = io.StringIO()
        replay(path, JsonSink(out=o, err=io.StringIO()), event_filter=flt)
        return [json.loads(line) for line in o.getvalue().splitlines()]

    def ids(evs: list[dict]) -> list[tuple]:
        return [(e["ts"], e["event"], e["pid"], e["lport"], e["rport"]) for e in evs]

    pids = {e["pid"] for e in events if e["pid"]}
    for pid in pids:
        # the same events (a --pid replay drops the other processes' records before correlating,
        # as the kernel does live, so a verdict that needed the peer's record can differ)
        assert ids(run(EventFilter(pids=frozenset({pid})))) == ids([e for e in events if e["pid"] == pid])
    for e in events:
        assert run(EventFilter(lports=frozenset({e["lport"]}))) == [o for o in events if o["lport"] == e["lport"]]
        assert run(EventFilter(rports=frozenset({e["rport"]}))) == [o for o in events if o["rport"] == e["rport"]]
        assert run(EventFilter(verdicts=frozenset({e["verdict"]}))) == [o for o in events if o["verdict"] == e["verdict"]]
    assert run(EventFilter(families=frozenset({"ipv4"}))) == events        # the lab's recordings are IPv4
    assert run(EventFilter(families=frozenset({"ipv6"}))) == []
    # recorded before owners' uids and cgroups were kept: an unknown owner never matches
    assert run(EventFilter(uids=frozenset({0}))) == [] and run(EventFilter(cgroups=("/",))) == []


def test_value_types_parse_comma_lists_and_reject_bad_values():
    assert IntList(1, 65535, "PORT").convert("80, 443", None, None) == (80, 443)
    assert UidList().convert("0,nobody", None, None) == (0, 65534)
    assert VerdictList().convert("port_closed", None, None) == ("port_closed",)
    for t, bad, text in ((IntList(1, 65535, "PORT"), "80,70000", "not in the range 1-65535"),
                         (IntList(1, 2**22, "PID"), "12,x", "'x' is not a PID"),
                         (UidList(), "no-such-user-tte", "no user named"),
                         (VerdictList(), "stale", "is not a verdict code; the codes are: connection_refused")):
        with pytest.raises(click.BadParameter, match=text):
            t.convert(bad, None, None)


def test_cgroup_paths_take_the_mount_off_and_check_existence_live(tmp_path):
    mounts = tmp_path / "mounts"
    root = tmp_path / "cg"
    (root / "system.slice" / "nginx.service").mkdir(parents=True)
    mounts.write_text(f"cgroup2 {root} cgroup2 rw 0 0\n")
    m = str(mounts)
    assert cgroup_paths([f"{root}/system.slice/nginx.service/"], live=True, mounts=m) == ("/system.slice/nginx.service",)
    assert cgroup_paths(["/system.slice"], live=True, mounts=m) == ("/system.slice",)
    assert cgroup_paths([str(root)], live=True, mounts=m) == ("/",)
    assert cgroup_paths(["/gone.slice"], live=False, mounts=m) == ("/gone.slice",)   # replay: the recording host's
    with pytest.raises(InvalidOption, match="no such cgroup"):
        cgroup_paths(["/gone.slice"], live=True, mounts=m)
    with pytest.raises(InvalidOption, match="give a cgroup v2 path"):
        cgroup_paths(["system.slice"], live=False, mounts=m)
    (tmp_path / "v1").write_text("cgroup /sys/fs/cgroup/cpu cgroup rw,cpu 0 0\n")
    with pytest.raises(InvalidOption, match="no cgroup v2 hierarchy"):
        cgroup_paths(["/x"], live=True, mounts=str(tmp_path / "v1"))


def test_the_banner_states_every_filter():
    flt = EventFilter(pids=frozenset({7, 3}), uids=frozenset({0}), cgroups=("/system.slice",),
                      ports=frozenset({80}), lports=frozenset({8080}), rports=frozenset({5432}),
                      families=frozenset({"ipv6"}), verdicts=frozenset({"port_closed"}))
    assert flt.describe() == ("pid 3,7; uid 0; cgroup /system.slice; port 80; local port 8080; remote port 5432; "
                              "IPv6 only; verdict port_closed")
    assert flt.kernel_ports == {80, 8080, 5432}
    assert EventFilter().describe() == "every process"


def test_bad_filter_values_are_usage_errors(capsys):
    assert main(["replay", OWNERS, "--verdict", "nope"]) == 2
    assert "is not a verdict code" in capsys.readouterr().err
    assert main(["replay", OWNERS, "--cgroup", "relative/path"]) == 2
    assert "give a cgroup v2 path" in capsys.readouterr().err


def test_storm_buckets_are_judged_on_their_explanation_for_verdict_uid_and_cgroup():
    import dataclasses

    from tracer.explain.storm import StormCount
    from tracer.model.cgroups import CgroupInfo
    from tracer.model.record import RecordType

    b = StormCount(type=RecordType.RESET_SENT, state=None, reason="NO_SOCKET", errno=None, pid=0, comm="",
                   raddr="10.0.0.1", port=9, family=2, count=500)
    e = b.explained()
    v = e.verdict.value
    assert v == "unknown_connection"       # a reset with no socket and no state
    owned = dataclasses.replace(e, uid=33, cgroup=CgroupInfo.from_path("/system.slice/nginx.service"))
    assert EventFilter(verdicts=frozenset({v})).match_storm(b, e)
    assert not EventFilter(verdicts=frozenset({"peer_abort"})).match_storm(b, e)
    assert not EventFilter(verdicts=frozenset({v})).match_storm(b)                    # not judged: not shown
    assert EventFilter(uids=frozenset({33})).match_storm(b, owned)
    assert not EventFilter(uids=frozenset({33})).match_storm(b, e)                    # owner unknown
    assert EventFilter(cgroups=("/system.slice",)).match_storm(b, owned)
    assert not EventFilter(cgroups=("/system.slice/nginx",)).match_storm(b, owned)
    assert EventFilter(families=frozenset({"ipv4"})).match_storm(b)
    assert not EventFilter(families=frozenset({"ipv6"})).match_storm(b)
    assert EventFilter(lports=frozenset({9})).match_storm(b) and not EventFilter(rports=frozenset({10})).match_storm(b)


@pytest.mark.parametrize("path", RECORDINGS, ids=name_of)
def test_replay_pid_keeps_the_unfiltered_explanations_of_that_pid(capsys, path):
    """--pid in replay chooses among the explanations; it does not take the other processes'
    records away from the correlation (the peer's record is what tells a peer's reset from a
    middlebox's: unread_close.jsonl --pid <client> once said middlebox_reset, high confidence)."""
    every = cli_replay(capsys, path)
    pids = sorted({e["pid"] for e in every if e.get("pid")})
    for pid in pids:
        want = [e for e in every if e.get("pid") == pid or pid in (e.get("owner_candidates") or ())]
        got = cli_replay(capsys, path, "--pid", str(pid))
        assert [(e["event"], e["verdict"], e["who"], e["confidence"]) for e in got] == \
            [(e["event"], e["verdict"], e["who"], e["confidence"]) for e in want], (path, pid)
