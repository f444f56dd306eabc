"""The TIME_WAIT insight counts what `ss` counts, and keeps the count, the rate and the
projection apart."""

from __future__ import annotations

import os
import socket
import subprocess

import pytest

from tracer.explain import insights

pytestmark = pytest.mark.unit

HEADER = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"


def test_addresses_as_proc_net_tcp_prints_them():
    assert insights.proc_hex(2, socket.inet_aton("10.0.0.2")) == "0200000A"
    raw6 = socket.inet_pton(socket.AF_INET6, "::ffff:10.0.0.2")
    assert insights.proc_hex(10, raw6) == "0000000000000000FFFF00000200000A"


def test_only_time_wait_rows_towards_the_endpoint_count():
    rows = ["   0: 0100007F:9C40 0200000A:1F90 06 00000000:00000000 03:00000F2A 00000000     0        0 0",
            "   1: 0100007F:9C41 0200000A:1F90 06 00000000:00000000 03:00000F2A 00000000     0        0 0",
            "   2: 0100007F:9C42 0200000A:1F90 01 00000000:00000000 00:00000000 00000000     0        0 1",
            "   3: 0100007F:9C43 0300000A:1F90 06 00000000:00000000 03:00000F2A 00000000     0        0 0"]
    assert insights.count_time_wait(HEADER + "\n".join(rows), "0200000A", 8080) == 2


def test_a_burst_is_counted_not_projected():
    key = (42, 2, socket.inet_aton("10.0.0.2") + b"\0" * 12, 8080)
    [ins] = insights.time_wait_pileups({}, {key: (2500, "burst")}, 1.0, time_wait_of=lambda *k: 2500)
    j = ins.to_json()
    assert (j["time_wait"], j["per_second"], j["time_wait_projected"]) == (2500, 2500.0, 150000)
    assert "2500 connections are in TIME_WAIT towards it now" in ins.text
    [gone] = insights.time_wait_pileups({}, {key: (2500, "burst")}, 1.0, time_wait_of=lambda *k: None)
    assert gone.time_wait is None and "could not be counted" in gone.text


def test_real_time_wait_sockets_of_this_process_match_ss():
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(64)
    port = srv.getsockname()[1]
    for _ in range(40):
        c = socket.create_connection(("127.0.0.1", port))
        a, _ = srv.accept()
        c.close()          # the client closes first: its side goes to TIME_WAIT once the server closes
        a.close()
    srv.close()
    ours = insights.proc_time_wait(os.getpid(), 2, socket.inet_aton("127.0.0.1"), port)
    out = subprocess.run(["ss", "-Htan", "state", "time-wait", "dst", f"127.0.0.1:{port}"], capture_output=True,
                         text=True, check=True).stdout
    assert ours == len(out.splitlines()) == 40
