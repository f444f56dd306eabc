"""Feature detection from tracefs format text: this kernel's and older layouts."""

from __future__ import annotations

import os

import pytest

from tracer.kernel.features import Features, parse_format

pytestmark = pytest.mark.unit

DATA = os.path.join(os.path.dirname(os.path.dirname(__file__)), "data", "formats")


def fmt(version: str, name: str):
    with open(os.path.join(DATA, version, name + ".format"), encoding="utf-8") as fh:
        return parse_format(fh.read())


def features(**formats) -> Features:
    return Features(tracefs="/nonexistent", formats=formats)


def test_this_kernels_send_reset_layout_and_reason_names():
    f = features(**{"tcp/tcp_send_reset": fmt("6.18", "tcp_send_reset")})
    assert f.rst_layout_sockaddr and f.rst_has_reason and f.rst_has_state
    assert not f.rst_has_family
    reasons = f.reset_reasons
    assert reasons[0] == "NOT_SPECIFIED" and reasons[1] == "NO_SOCKET"
    assert reasons[11] == "TCP_ABORT_ON_CLOSE" and reasons[15] == "TCP_KEEPALIVE_TIMEOUT"
    assert reasons[9] == "TCP_TIMEWAIT_SOCKET"
    assert len(reasons) == 26 and reasons[25] == "MAX"


def test_6_10_numbering_gives_different_names_for_the_same_numbers():
    f = features(**{"tcp/tcp_send_reset": fmt("6.10", "tcp_send_reset")})
    assert f.reset_reasons[11] == "MPTCP_RST_EUNSPEC"
    assert "TCP_ABORT_ON_CLOSE" not in f.reset_reasons.values()


def test_pre_6_10_layout_has_ports_and_no_reason():
    f = features(**{"tcp/tcp_send_reset": fmt("5.15", "tcp_send_reset")})
    assert not f.rst_layout_sockaddr and not f.rst_has_reason
    assert f.rst_has_state and f.rst_has_family
    assert f.reset_reasons == {}
    p = fmt("5.15", "tcp_send_reset")
    assert (p.fields["sport"].offset, p.fields["saddr"].size, p.fields["saddr_v6"].size) == (28, 4, 16)


def test_4_19_layout_has_neither_state_nor_family():
    f = features(**{"tcp/tcp_send_reset": fmt("4.19", "tcp_send_reset")})
    assert not (f.rst_has_state or f.rst_has_family or f.rst_has_reason or f.rst_layout_sockaddr)


def test_tcp_state_names_come_from_inet_sock_set_state():
    f = features(**{"sock/inet_sock_set_state": fmt("6.18", "inet_sock_set_state")})
    states = f.tcp_states
    assert states[1] == "ESTABLISHED" and states[8] == "CLOSE_WAIT" and states[12] == "NEW_SYN_RECV"
    assert len(states) == 12


def test_symbolic_tables_with_unresolved_names_are_skipped():
    # tcp_send_reset prints its state table with names, not numbers: no numeric table results.
    p = fmt("6.18", "tcp_send_reset")
    assert "state" not in p.symbols and "reason" in p.symbols


def test_receive_reset_cookie_and_required_hooks():
    f = features(**{"tcp/tcp_receive_reset": fmt("6.18", "tcp_receive_reset")})
    assert f.recv_has_cookie
    assert "tcp/tcp_send_reset" in f.missing_required()


def test_listening_rows_of_proc_net_tcp():
    from tracer.kernel.procfs import parse_listening

    text = ("  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
            "   0: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 31337 1 0\n"
            "   1: 0100007F:8AE2 0100007F:1F90 01 00000000:00000000 00:00000000 00000000     0        0 4242 1 0\n")
    assert parse_listening(text) == [(8080, 31337)]
