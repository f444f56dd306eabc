"""Reset storms: events the kernel counted instead of sending one by one (over its per-CPU
rate), turned into counted summaries the console, JSON mode, the summary and the exporter show.

A bucket carries what the kernel keyed it by (record type, state, reason, errno, owner, remote
address, service port), enough to give it a verdict through the same explainer as a full
record. The verdict of a summarized bucket is approximate where it depends on timing the
bucket does not keep (idle time, the peer's FIN); the counts are exact.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from dataclasses import dataclass
from typing import Any, Optional

from tracer.explain.correlate import Incident
from tracer.explain.rules import Explanation, endpoint, explain
from tracer.model.record import AF_INET6, FLAG_BITS, TYPE_BY_RAW, DecodeContext, Record, RecordType, errno_name
from tracer.model.safe import printable


@dataclass(frozen=True)
class StormCount:
    type: RecordType
    state: Optional[str]
    reason: Optional[str]
    errno: Optional[str]
    pid: int
    comm: str
    raddr: str
    port: int
    family: int
    count: int

    def explained(self) -> Explanation:
        """The verdict the explainer gives a record with this bucket's fields."""
        r = Record(type=self.type, ts_ns=0, family=self.family, state=self.state, old_state=None,
                   flags_raw=0, skaddr=0, cookie=0, ino=0, netns=0, pid=self.pid, cur_pid=0,
                   reason=self.reason, reason_raw=-1, errno=self.errno, errno_raw=0, laddr="", lport=0,
                   raddr=self.raddr, rport=self.port, comm=self.comm, thread=self.comm, cur_comm="",
                   birth_ns=None, estab_ns=None, fin_ns=None, close_ns=None, state_ns=None, last_send_ns=None,
                   last_recv_ns=None, last_ack_ns=None, destroy_ns=None, fin_last_send_ns=None,
                   fin_last_recv_ns=None, retrans=0, total_retrans=0, srtt_us=0, unread_bytes=0,
                   unacked_bytes=0, owner_source="none")
        if self.type is RecordType.RESET_SENT and self.reason is None:
            r = dataclasses.replace(r, flags_raw=FLAG_BITS["no_socket"] if self.state is None else 0)
        return explain(Incident(primary=r))

    def describe(self) -> str:
        who = f"{printable(self.comm)} (pid {self.pid})" if self.pid else "unknown process"
        what = self.reason or self.errno or self.state or ""
        return f"{self.count} x {self.type.value} {what}  {who} <-> {endpoint(self.raddr, self.port)}"

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type.value, "state": self.state, "reason": self.reason, "errno": self.errno,
                "pid": self.pid or None, "comm": self.comm or None, "remote": self.raddr, "port": self.port,
                "count": self.count}


def decode_bucket(key: dict[str, Any], count: int, ctx: DecodeContext) -> StormCount:
    fam = key["family"]
    raw = key["raddr"]
    if fam == AF_INET6:
        a = ipaddress.IPv6Address(raw)
        addr = str(a.ipv4_mapped or a)
    else:
        addr = str(ipaddress.IPv4Address(raw[:4]))
    return StormCount(type=TYPE_BY_RAW.get(key["type"], RecordType.STATE), state=ctx.state_name(key["state"]),
                      reason=ctx.reason_name(key["reason"]), errno=errno_name(key["err"]), pid=key["pid"],
                      comm=key["comm"].split("\0", 1)[0], raddr=addr, port=key["port"], family=fam or 2,
                      count=count)
