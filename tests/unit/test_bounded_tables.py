"""Long sessions: every user-space table keeps a bound and counts what it drops."""

from __future__ import annotations

import dataclasses

from tests.unit.helpers import RECORDINGS
from tracer.explain import correlate
from tracer.explain.pipeline import Pipeline
from tracer.explain.summary import MAX_KEYS, Summary
from tracer.model.bounded import BoundedDict
from tracer.model.record import RecordType
from tracer.sinks import recording


def test_a_bounded_dict_drops_the_oldest_and_counts_it():
    d: BoundedDict[int, int] = BoundedDict(3)
    for i in range(10):
        d[i] = i
    d[7] = 70                       # setting again makes it the newest
    d[10] = 10
    assert list(d) == [9, 7, 10] and d.evicted == 8


def explained(n: int):
    """n explanations to n distinct endpoints, from a real recording's first event."""
    rec = recording.load(RECORDINGS[0])
    p = Pipeline()
    p.feed(recording.decoded(rec)[0])
    e = p.release(None)[0]
    return [dataclasses.replace(e, service=f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}:80") for i in range(n)]


def test_summary_fixes_stay_bounded_over_distinct_endpoints():
    s = Summary()
    for e in explained(40_000):
        s.add(e)
    assert len(s.fixes) <= MAX_KEYS and len(s.by_group) <= MAX_KEYS + 1
    assert s.total == 40_000 and sum(s.by_group.values()) == 40_000   # counts stay exact
    assert s.top_fix() is not None


def test_the_peer_index_is_bounded_and_counts_links_it_may_miss():
    rec = recording.load(RECORDINGS[0])
    r = next(x for x in recording.decoded(rec)[0] if x.type is RecordType.RESET_SENT and x.rport)
    c = correlate.Correlator()
    many = [dataclasses.replace(r, ts_ns=r.ts_ns + i * 1000, rport=1024 + i % 60000, skaddr=r.skaddr + 64 * i)
            for i in range(correlate.PEER_INDEX_MAX + 500)]
    c.feed(many)
    c.release(None)
    assert len(c._recent) == correlate.PEER_INDEX_MAX and c.peers_evicted == 500


def test_replay_reports_its_evictions(capsys):
    from tracer.cli import main
    import json

    assert main(["replay", "--json", RECORDINGS[0]]) == 0
    err = capsys.readouterr().err
    summary = json.loads(err[err.rindex('{"summary"'):].splitlines()[0])["summary"]
    assert summary["evicted"] == {"peer_index": 0, "errno_index": 0, "owners": 0}


def test_the_errno_index_is_bounded_and_counts_only_entries_still_of_use():
    from tests.unit.helpers import record
    from tracer.model.record import RecordType

    c = correlate.Correlator()
    t = 10_000_000_000
    burst = [record(ts_ns=t + i, type=RecordType.RESET_RECEIVED, state="ESTABLISHED", skaddr=0x10000 + i)
             for i in range(correlate.LATE_MAX + 10)]         # within one join window: all of use
    c.feed(burst)
    c.release(None)
    assert len(c._no_errno) == correlate.LATE_MAX and c.no_errno_evicted == 10
    later = [record(ts_ns=t + 10 * correlate.JOIN_WINDOW_NS + i, type=RecordType.RESET_RECEIVED,
                    state="ESTABLISHED", skaddr=0x90000 + i) for i in range(5)]
    c.feed(later)
    c.release(None)
    assert len(c._no_errno) == 5 and c.no_errno_evicted == 10      # the old ones expired, not evicted
