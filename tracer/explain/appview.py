"""What the application sees: which socket call fails, and how, from the kernel's own rules.

tcp_reset() (net/ipv4/tcp_input.c) sets the socket's error by its state: ECONNREFUSED in
SYN_SENT, EPIPE in CLOSE_WAIT, ECONNRESET otherwise, then tcp_done() shuts both directions.
tcp_recvmsg() hands out data already queued first; then, with the peer's FIN received
(SOCK_DONE, so CLOSE_WAIT), it returns 0 (EOF) before looking at the error; otherwise it
returns the error. A write returns the pending error once (sock_error clears it), then EPIPE
(SEND_SHUTDOWN). An application that had closed the socket (an orphan, a TIME_WAIT or no
socket) sees nothing. Only these cases are claimed; anything else says nothing (None).
"""

from __future__ import annotations

from dataclasses import dataclass

from tracer.explain.case import Case
from tracer.model.record import RecordType

CLOSING = ("FIN_WAIT1", "FIN_WAIT2", "CLOSING", "LAST_ACK", "TIME_WAIT")


@dataclass(frozen=True)
class Sees:
    call: str           # connect | read | write | close
    result: str         # EOF | ECONNRESET | EPIPE | ECONNREFUSED | ETIMEDOUT | ECONNABORTED | ... | nothing
    note: str = ""

    def json(self) -> dict[str, str]:
        return {"call": self.call, "result": self.result}


def app_sees(c: Case) -> tuple[Sees, ...]:
    if c.event is RecordType.RESET_RECEIVED:
        return _received(c)
    if c.event is RecordType.ABORT:
        return _aborted(c)
    return _sent(c)


def _closed(c: Case) -> bool:
    """The application had closed the socket (SOCK_DEAD: an orphan, a TIME_WAIT, no socket);
    a shutdown() leaves it open, and its reads see the reset."""
    return c.flag("orphan") or c.flag("timewait") or c.flag("no_socket") or c.state == "TIME_WAIT"


def _received(c: Case) -> tuple[Sees, ...]:
    if c.state == "SYN_SENT":
        return (Sees("connect", "ECONNREFUSED"),)
    if c.state == "CLOSE_WAIT":
        return (Sees("read", "EOF", "after the data already received"), Sees("write", "EPIPE"))
    if c.state in CLOSING:
        if _closed(c):
            return (Sees("close", "nothing", "it had already closed the socket"),)
        return (Sees("read", "ECONNRESET"),)
    if c.state in ("ESTABLISHED", "SYN_RECV"):
        return (Sees("read", "ECONNRESET", "after the data already received"),
                Sees("write", "ECONNRESET", "then EPIPE"))
    return ()


def _aborted(c: Case) -> tuple[Sees, ...]:
    if not c.errno:
        return ()
    if c.state == "SYN_SENT" or (c.never_established and c.errno == "ETIMEDOUT"):
        return (Sees("connect", c.errno),)
    if c.errno in ("ETIMEDOUT", "ECONNABORTED", "EHOSTUNREACH", "ENETUNREACH", "ECONNREFUSED"):
        return (Sees("read", c.errno), Sees("write", c.errno, "then EPIPE"))
    return ()


def _sent(c: Case) -> tuple[Sees, ...]:
    if c.reason == "TCP_KEEPALIVE_TIMEOUT":
        return (Sees("read", "ETIMEDOUT"), Sees("write", "ETIMEDOUT", "then EPIPE"))
    # The reset came from the application's own close(): with unread data, SO_LINGER 0 or
    # TCP_LINGER2 < 0; or from a socket it had closed before.
    if c.pid and (c.reason in ("TCP_TIMEWAIT_SOCKET", "TCP_ABORT_ON_CLOSE", "TCP_ABORT_ON_LINGER", "TCP_ABORT_ON_MEMORY")
                  or (c.reason == "TCP_STATE" and c.state == "CLOSE" and c.flag("linger"))
                  or (c.reason == "TCP_ABORT_ON_DATA" and _closed(c))):
        return (Sees("close", "nothing", "it had closed the socket; the reset is the kernel's"),)
    if c.reason == "TCP_ABORT_ON_DATA":
        return (Sees("read", "ECONNRESET", "it had only shut the socket down"),)
    if c.reason == "TCP_STATE" and c.state == "ESTABLISHED":
        return (Sees("read", "ECONNABORTED"), Sees("write", "ECONNABORTED"))
    return ()
