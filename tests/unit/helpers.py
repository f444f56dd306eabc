"""Helpers for pure tests: recordings on disk, synthetic records."""

from __future__ import annotations

import dataclasses
import glob
import os

from tracer.model.record import Record, RecordType

DATA = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data")
RECORDINGS = sorted(glob.glob(os.path.join(DATA, "recordings", "*.jsonl")))


def name_of(path: str) -> str:
    return os.path.basename(path).rsplit(".", 1)[0]


BASE = Record(
    type=RecordType.RESET_SENT, ts_ns=10_000_000_000, family=2, state="CLOSE", old_state=None, flags_raw=0,
    skaddr=0xffff0000, cookie=0, ino=0, netns=1, pid=100, cur_pid=100, reason=None, reason_raw=-1,
    errno=None, errno_raw=0, laddr="10.0.0.1", lport=8080, raddr="10.0.0.2", rport=40000, comm="srv",
    thread="srv", cur_comm="srv", birth_ns=1_000_000_000, estab_ns=1_000_000_000, fin_ns=None,
    close_ns=None, state_ns=None, last_send_ns=9_000_000_000, last_recv_ns=9_000_000_000, last_ack_ns=None,
    destroy_ns=None, fin_last_send_ns=None, fin_last_recv_ns=None, retrans=0, total_retrans=0, srtt_us=50,
    unread_bytes=0, unacked_bytes=0, owner_source="connect", seg_flags=0, wall_ns=1_700_000_000_000_000_000,
)


def record(**kw) -> Record:
    return dataclasses.replace(BASE, **kw)
