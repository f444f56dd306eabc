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
from tracer.model.record import AF_INET6, ERRNOS_WITH, TYPE_BY_RAW, DecodeContext, RecordType, errno_name
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
    # The resets answered connection attempts (SYNs): a socketless reset's key says so when the
    # segment it answered was a SYN (bpf/tte.bpf.c no_socket_service_port).
    syn: bool = False

    def case(self) -> Case:
        """What the rules may know of this bucket: what the kernel keyed it by. The timings it
        does not keep stay unknown, so no rule that needs them matches."""
        # A sent reset with neither state nor reason had no socket (the kernel keys such a
        # bucket with state 0); with a state, the reason is inferred from it as for a record.
        no_socket = self.type is RecordType.RESET_SENT and self.reason is None and self.state is None
        return Case(event=self.type, state=self.state, kernel_reason=self.reason, errno=self.errno,
                    flags=frozenset({"no_socket"}) if no_socket else frozenset(), pid=self.pid, comm=self.comm,
                    thread=self.comm, family=self.family, raddr=self.raddr, rport=self.port, syn=self.syn)

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

    def to_record(self) -> dict[str, Any]:
        """The bucket as a recording's storm line keeps it (from_record reads it back)."""
        return {**self.to_json(), "family": self.family, "syn": self.syn}

    @classmethod
    def from_record(cls, d: Any) -> "StormCount":
        """A bucket from a recording; ValueError says which field is wrong."""
        if not isinstance(d, dict):
            raise ValueError("a storm bucket must be an object")
        try:
            rtype = RecordType(d["type"])
        except (KeyError, ValueError, TypeError):
            raise ValueError("storm bucket type is not a record type") from None
        for k in ("state", "reason", "errno", "comm"):
            v = d.get(k)
            if v is not None and not (isinstance(v, str) and len(v) <= 64):
                raise ValueError(f"storm bucket {k} is not a name")
        for k, hi in (("count", 1 << 63), ("pid", 1 << 32), ("port", 1 << 16), ("family", 1 << 16)):
            v = d.get(k) or 0
            if type(v) is not int or not 0 <= v < hi:
                raise ValueError(f"storm bucket {k} is out of range")
        remote = d.get("remote")
        try:
            if not isinstance(remote, str):
                raise ValueError(remote)
            ipaddress.ip_address(remote)
        except ValueError:
            raise ValueError("storm bucket remote is not an address") from None
        return cls(type=rtype, state=d.get("state"), reason=d.get("reason"), errno=d.get("errno"), pid=d.get("pid") or 0,
                   comm=d.get("comm") or "", raddr=remote, port=d.get("port") or 0, family=d.get("family") or 2,
                   count=d["count"], syn=d.get("syn") is True)


# The abort (error report) of a socket with a reset of its own, received or sent, is part of
# that reset's incident, not an incident of its own (record.ERRNOS_WITH).
RESET_ERRNOS = ERRNOS_WITH[RecordType.RESET_RECEIVED]
SENT_ERRNOS = ERRNOS_WITH[RecordType.RESET_SENT]


def join(buckets: list[StormCount]) -> list[StormCount]:
    """One incident per connection, as outside a storm: the kernel counts each record type in
    its own bucket, so a refused connect is a received reset AND an abort, and an SO_LINGER 0
    close a sent reset AND an abort. An abort bucket with the errno of a reset is folded into
    the received-reset bucket of the same owner and remote end, then what is left of it into
    the sent-reset bucket of a socket of that end (either takes its errno); only the abort
    count beyond them stays an abort. (Whether a sent reset with no socket answered a SYN,
    port_closed, is in the kernel's key itself.)"""
    def end(b: StormCount) -> tuple[Any, ...]:
        return (b.pid, b.comm, b.raddr, b.port, b.family)

    out = list(buckets)
    for partner, errnos in ((RecordType.RESET_RECEIVED, RESET_ERRNOS), (RecordType.RESET_SENT, SENT_ERRNOS)):
        into: dict[tuple[Any, ...], int] = {}
        for i, b in enumerate(out):
            if b.type is partner and (partner is RecordType.RESET_RECEIVED or _of_a_socket(b)):
                into.setdefault(end(b), i)
        absorbed: dict[int, int] = {}          # reset bucket -> aborts folded into it
        for i, b in enumerate(out):
            j = into.get(end(b))
            if b.type is not RecordType.ABORT or b.errno not in errnos or j is None or not b.count:
                continue
            take = min(out[j].count - absorbed.get(j, 0), b.count)
            if take <= 0:
                continue
            out[j] = dataclasses.replace(out[j], errno=out[j].errno or b.errno)
            absorbed[j] = absorbed.get(j, 0) + take
            out[i] = dataclasses.replace(b, count=b.count - take)
    return [b for b in out if b.count]


def _of_a_socket(b: StormCount) -> bool:
    """A sent reset of a full socket, which reports an error to its owner: not one sent with no
    socket or from TIME_WAIT (those have no owner to tell)."""
    return not b.syn and b.reason != "NO_SOCKET" and b.state not in (None, "TIME_WAIT")


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
                      count=count, syn=bool(key.get("syn")))
