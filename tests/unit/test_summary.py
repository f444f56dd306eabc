"""Grouping: the summary, the console's throttle and the exporter's labels group events by
service endpoint and process name, so many short-lived processes of one cause make one group."""

from __future__ import annotations

import io
import json

import pytest

from tests.unit.helpers import record
from tracer.explain.correlate import Incident
from tracer.explain.rules import explain
from tracer.explain.summary import MAX_PIDS, Summary
from tracer.model.record import FLAG_BITS, RecordType
from tracer.sinks.console import ConsoleSink
from tracer.sinks.exporter import Totals

pytestmark = pytest.mark.unit
REFUSED_BY = "10.0.0.2"


def refused(pid: int, comm: str, port: int, client_port: int):
    """A client's connect refused: the reset its SYN_SENT socket received."""
    return explain(Incident(primary=record(
        type=RecordType.RESET_RECEIVED, state="SYN_SENT", pid=pid, comm=comm, thread=comm, cur_pid=pid,
        laddr="10.0.0.1", lport=client_port, raddr=REFUSED_BY, rport=port, flags_raw=FLAG_BITS["connected"],
        owner_source="connect")))


def port_closed(port: int, client_port: int):
    """The refusing host's side: a reset for a SYN, sent with no socket and no owner."""
    return explain(Incident(primary=record(
        type=RecordType.RESET_SENT, state=None, pid=0, comm="", thread="", reason="NO_SOCKET",
        laddr=REFUSED_BY, lport=port, raddr="10.0.0.1", rport=client_port, seg_flags=0x02,
        flags_raw=FLAG_BITS["no_socket"], owner_source="none")))


def burst() -> list:
    """200 curl processes refused by port 9 (both ends traced), and one process refused 50
    times by port 10: the second, smaller offender."""
    out = []
    for i in range(200):
        out += [refused(5000 + i, "curl", 9, 40000 + i), port_closed(9, 40000 + i)]
    for i in range(50):
        out += [refused(9000, "worker", 10, 50000 + i), port_closed(10, 50000 + i)]
    return out


def test_both_ends_of_a_refused_connect_name_the_same_service_endpoint():
    c, s = refused(1, "curl", 9, 40000), port_closed(9, 40000)
    assert c.service == s.service == f"{REFUSED_BY}:9"
    assert (c.role, s.role) == ("client", "server")
    assert c.to_json()["service"] == f"{REFUSED_BY}:9"


def test_headline_names_the_200_process_group_by_name_and_endpoint():
    s = Summary()
    for e in burst():
        s.add(e)
    top = s.top_fix()
    assert (top.verdict, top.process, top.endpoint, top.events) == ("connection_refused", "curl",
                                                                    f"{REFUSED_BY}:9", 200)
    assert len(top.pids) == 200 and top.pids[0] == 5000
    assert top.processes_text().startswith("curl (200 processes: 5000, 5001,")
    j = s.to_json()
    assert j["top_fix"]["processes"] == 200 and j["top_fix"]["endpoint"] == f"{REFUSED_BY}:9"
    assert j["by_process"]["curl"] == {"events": 200, "pids": list(range(5000, 5020)), "processes": 200}
    assert j["by_endpoint"] == {f"{REFUSED_BY}:9": 400, f"{REFUSED_BY}:10": 100}
    assert j["by_pid"]["worker (9000)"] == 50       # per-pid detail is still there


def test_console_summary_and_throttle_group_by_name_and_endpoint():
    out = io.StringIO()
    sink = ConsoleSink(out=out, color=False)
    events = burst()
    for e in events:
        sink.event(e)
    s = Summary()
    for e in events:
        s.add(e)
    sink.summary(s, counters=_Counters(), seconds=1.0)
    text = out.getvalue()
    flat = " ".join(text.split())      # the console wraps long lines
    assert "(200 x connection_refused, curl (200 processes: 5000, 5001" in flat
    assert f"and 190 more) -> {REFUSED_BY}:9)" in flat
    # The throttle printed 10 blocks and summarized the rest in a few lines, not 490 one-offs.
    held = [line for line in text.splitlines() if line.startswith("    ") and " x " in line]
    assert 1 <= len(held) <= 5 and any(f"curl -> {REFUSED_BY}:9" in line for line in held)


def test_exporter_endpoint_labels_stay_bounded():
    t = Totals(top_processes=20, endpoint_labels=True)
    for e in burst():
        t.add(e)
    assert set(t.by_endpoint) == {f"{REFUSED_BY}:9", f"{REFUSED_BY}:10"}
    assert {k[3] for k in t.events} == {"curl", "worker", "unknown"}


def test_pid_lists_are_bounded():
    s = Summary()
    for i in range(MAX_PIDS + 50):
        s.add(refused(10_000 + i, "curl", 9, 40000))
    top = s.top_fix()
    assert top.events == MAX_PIDS + 50 and len(top.pids) == MAX_PIDS
    assert f"at least {MAX_PIDS} processes" in top.processes_text()


class _Counters:
    records = lost = filtered = summarized = storm_full = unread = 0
    kernel_out_rsts = None
    explained_sent_here = 0
    missed = None
    missed_by: dict = {}
    missed_uncounted = ()


def test_console_summary_gives_the_kernels_out_rsts_where_not_every_reset_is_traced():
    from tracer.model.counters import Counters
    counters = Counters(lost=0, filtered=0, records=3, socks_insert=0, socks_delete=0, rst_received=0,
                        rst_sent_by_reason={}, aborts_by_errno={}, states={}, kernel_out_rsts=7,
                        explained_sent_here=3)
    out = io.StringIO()
    ConsoleSink(out=out, color=False).summary(Summary(), counters=counters, seconds=1.0)
    flat = " ".join(out.getvalue().split())
    assert "kernel OutRsts +7, explained 3" in flat and "TIME_WAIT sockets" in flat
    out = io.StringIO()
    ConsoleSink(out=out, color=False).summary(Summary(), counters=_Counters(), seconds=1.0)
    assert "OutRsts" not in out.getvalue()


def test_console_summary_says_how_many_records_were_left_in_the_ring_at_exit():
    from tracer.model.counters import Counters
    counters = Counters(lost=0, filtered=0, records=30, socks_insert=0, socks_delete=0, rst_received=0,
                        rst_sent_by_reason={}, aborts_by_errno={}, states={}, unread=12)
    out = io.StringIO()
    ConsoleSink(out=out, color=False).summary(Summary(), counters=counters, seconds=1.0)
    flat = " ".join(out.getvalue().split())
    assert "12 records were still in the ring buffer at exit" in flat and "not explained" in flat
    out = io.StringIO()
    ConsoleSink(out=out, color=False).summary(Summary(), counters=_Counters(), seconds=1.0)
    assert "ring buffer at exit" not in out.getvalue()


def test_console_and_json_summaries_count_the_kernel_events_no_program_ran_for(capsys):
    from tracer.model.counters import Counters
    from tracer.sinks.jsonl import JsonSink
    by = {"sock:inet_sock_set_state": 36, "tcp:tcp_destroy_sock": 18, "tcp:tcp_send_reset": 0}
    counters = Counters(lost=0, filtered=0, records=30, socks_insert=0, socks_delete=0, rst_received=0,
                        rst_sent_by_reason={}, aborts_by_errno={}, states={}, **Counters.missed_fields(by))
    out = io.StringIO()
    sink = ConsoleSink(out=out, color=False)
    sink.summary(Summary(), counters=counters, seconds=1.0)
    sink.status("12:00:00", Summary(), counters)
    flat = " ".join(out.getvalue().split())
    assert "54 kernel events were not traced (sock:inet_sock_set_state 36, tcp:tcp_destroy_sock 18)" in flat, flat
    assert "already running on that CPU" in flat, flat
    assert "kernel events missed 54" in capsys.readouterr().err      # the status line
    err = io.StringIO()
    JsonSink(out=io.StringIO(), err=err).summary(Summary(), counters=counters, seconds=1.0)
    got = json.loads(err.getvalue())
    assert got["missed"] == 54 and got["missed_by"] == by
    # none missed, or a kernel without the counter: nothing said, and null in JSON
    for fields in (Counters.missed_fields({"tcp:tcp_send_reset": 0}), Counters.missed_fields(None)):
        quiet = Counters(lost=0, filtered=0, records=30, socks_insert=0, socks_delete=0, rst_received=0,
                         rst_sent_by_reason={}, aborts_by_errno={}, states={}, **fields)
        out = io.StringIO()
        ConsoleSink(out=out, color=False).summary(Summary(), counters=quiet, seconds=1.0)
        assert "not traced" not in out.getvalue()
    assert Counters.missed_fields(None) == {"missed": None, "missed_by": {}, "missed_uncounted": ()}


def test_a_kernel_that_does_not_count_tracepoint_skips_is_said_so_not_shown_as_zero():
    from tracer.kernel.host import release_at_least
    from tracer.model.counters import Counters
    assert release_at_least(6, 7, "6.18.0-1-amd64") and release_at_least(6, 7, "7.0.1")
    assert not release_at_least(6, 7, "6.1.0-57-amd64") and not release_at_least(6, 7, "5.15.0")
    assert not release_at_least(6, 7, "weird")
    fields = Counters.missed_fields({"inet_sk_error_report (raw)": 0}, ("tcp:tcp_send_reset",))
    counters = Counters(lost=0, filtered=0, records=3, socks_insert=0, socks_delete=0, rst_received=0,
                        rst_sent_by_reason={}, aborts_by_errno={}, states={}, **fields)
    out = io.StringIO()
    ConsoleSink(out=out, color=False).summary(Summary(), counters=counters, seconds=1.0)
    flat = " ".join(out.getvalue().split())
    assert "does not count the events it skips for tracepoints" in flat and "tcp:tcp_send_reset" in flat
    assert counters.missed == 0 and counters.missed_by == {"inet_sk_error_report (raw)": 0}
