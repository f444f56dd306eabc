"""Tcp OutRsts from /proc/net/snmp text."""

from __future__ import annotations

import pytest

from tracer.kernel import snmp

pytestmark = pytest.mark.unit

SAMPLE = """Ip: Forwarding DefaultTTL InReceives
Ip: 1 64 1234
Tcp: RtoAlgorithm RtoMin RtoMax MaxConn ActiveOpens PassiveOpens AttemptFails EstabResets CurrEstab InSegs OutSegs RetransSegs InErrs OutRsts InCsumErrors
Tcp: 1 200 120000 -1 10 9 1 2 3 400 380 0 0 17 0
Udp: InDatagrams
Udp: 5
"""


def test_out_rsts_from_the_tcp_lines():
    assert snmp.parse_tcp(SAMPLE)["OutRsts"] == 17
    assert snmp.parse_tcp(SAMPLE)["MaxConn"] == -1


def test_malformed_or_missing_tcp_lines_give_nothing():
    assert snmp.parse_tcp("Tcp: OutRsts\n") == {}
    assert snmp.parse_tcp("Tcp: A B\nTcp: 1\n") == {}
    assert snmp.parse_tcp("Tcp: A\nTcp: x\n") == {}


def test_unreadable_file_gives_none(tmp_path):
    assert snmp.out_rsts(str(tmp_path / "missing")) is None


def test_this_namespace_has_a_count():
    assert isinstance(snmp.out_rsts(), int)
