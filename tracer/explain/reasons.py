"""The reset reason of a sent reset: the kernel's where it gave one, otherwise inferred.

Kernels before 6.10 have no reason field, 6.10 and 6.11 report every active reset as
NOT_SPECIFIED, and the ignore-kernel-reason switch drops it on purpose. infer() applies the
decision table of shared/reference/kernel-tcp-resets.md §4.2 to what the case shows (state,
flags, the task the reset ran in, the errno) and the result is reported as "inferred:NAME".
"""

from __future__ import annotations

from tracer.model.frozen import evolve

from tracer.explain.case import Case
from tracer.model.record import RecordType

# Names that say nothing about the cause: inference decides instead.
MEANINGLESS = ("NOT_SPECIFIED", "MAX")


def infer(c: Case) -> str:
    """The reset reason a 6.12+ kernel would report, from state and context (reference §4.2)."""
    st = c.state
    if c.flag("no_socket"):
        return "NO_SOCKET"
    if st == "TIME_WAIT":
        return "TCP_TIMEWAIT_SOCKET"
    if st == "LISTEN":
        return "INVALID_SYN" if c.syn else "TCP_FLAGS"
    if st == "SYN_SENT":
        return "TCP_INVALID_ACK_SEQUENCE"
    if st == "SYN_RECV":
        return "TCP_OLD_ACK"
    if not c.flag("active"):
        # Passive on a full socket already in CLOSE: the kernel ran tcp_reset() on its own
        # socket (rule P1/P2) because data arrived after this side stopped reading.
        if c.self_received or st == "CLOSE":
            return "TCP_ABORT_ON_DATA"
        return "NOT_SPECIFIED"
    if st == "CLOSE":
        if c.unread_bytes > 0:
            return "TCP_ABORT_ON_CLOSE"          # A1: close() with unread data
        return "TCP_STATE"                       # A2: SO_LINGER {1,0} close; A3: listener closed
    if st == "FIN_WAIT2" and c.flag("orphan"):
        return "TCP_STATE"                       # A9: FIN_WAIT2 timeout on the keepalive timer
    if c.flag("orphan") and st in ("FIN_WAIT1", "CLOSING", "LAST_ACK"):
        return "TCP_ABORT_ON_MEMORY"             # A8
    if c.errno == "ETIMEDOUT" or (c.flag("keepalive") and c.cur_pid != c.pid):
        return "TCP_KEEPALIVE_TIMEOUT"           # A6: timer context, then ETIMEDOUT
    if c.pid and c.cur_pid and c.cur_pid != c.pid:
        return "TCP_STATE"                       # A7: SOCK_DESTROY from another task
    return "NOT_SPECIFIED"


def resolve(c: Case) -> Case:
    """The case with `reason` set: the kernel's name when it means something (an unnamed number
    `UNKNOWN(n)` does not), else the inferred one. Only sent resets carry a reason."""
    if c.event is not RecordType.RESET_SENT:
        return c
    k = c.kernel_reason
    if k and k not in MEANINGLESS and not k.startswith("UNKNOWN("):
        return evolve(c, reason=k, reason_inferred=False)
    return evolve(c, reason=infer(c), reason_inferred=True)
