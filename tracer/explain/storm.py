"""Reset storms: events the kernel counted instead of sending one by one (over its per-CPU
rate), turned into counted summaries the console, JSON mode, the summary and the exporter show.

A bucket carries what the kernel keyed it by (record type, state, reason, errno, owner, remote
address, service port), enough to give it a verdict through the same rules as a full record:
a Case (tracer/explain/case.py) is built from the bucket's fields. The verdict of a summarized
bucket is approximate where it depends on timing the bucket does not keep (idle time, the
peer's FIN); the counts are exact.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from dataclasses import dataclass
from typing import Any, Optional

from tracer.explain.case import Case
from tracer.explain.explanation import Explanation, endpoint
from tracer.explain.rules import explain_case
from tracer.model.record import AF_INET6, TYPE_BY_RAW, DecodeContext, RecordType, errno_name
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

    def case(self) -> Case:
        """What the rules may know of this bucket: what the kernel keyed it by. The timings it
        does not keep stay unknown, so no rule that needs them matches."""
        # A sent reset with neither state nor reason had no socket (the kernel keys such a
        # bucket with state 0); with a state, the reason is inferred from it as for a record.
        no_socket = self.type is RecordType.RESET_SENT and self.reason is None and self.state is None
        return Case(event=self.type, state=self.state, kernel_reason=self.reason, errno=self.errno,
                    flags=frozenset({"no_socket"}) if no_socket else frozenset(), pid=self.pid, comm=self.comm,
                    thread=self.comm, family=self.family, raddr=self.raddr, rport=self.port)

    def explained(self) -> Explanation:
        """This bucket's verdict, through the same rules as a full record."""
        e = explain_case(self.case())
        if self.type is RecordType.RESET_SENT and self.state in (None, "LISTEN", "SYN_RECV", "NEW_SYN_RECV"):
            # This host answered as the server: the bucket keeps the service port, not the address.
            e = dataclasses.replace(e, service=f"*:{self.port}", role="server")
        return e

    def describe(self) -> str:
        who = f"{printable(self.comm)} (pid {self.pid})" if self.pid else "unknown process"
        what = printable(self.reason or self.errno or self.state or "")
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
