"""Timeouts inferred from what one event shows, as ranges, and the advice numbers safely below them.

A server's idle timer fires at or after its deadline, never before, and it starts at the
server's last activity, which this side sees no earlier than it happened: so the idle the
client observed before the server's FIN is an UPPER bound of the server's timeout (plus one
jiffy of timestamp granularity). How LATE the timer may fire is what the server's code says
(tracer/explain/software.py `late_s`: 1.1 s for Redis' whole-second cron, 0.1 s for nginx's
millisecond timers, GENERIC_LATE_S for unknown servers): the observed idle minus that is the
LOWER bound. A setting in whole seconds narrows the range to the integers in it.

A middlebox that forgot an idle flow forgot it some time during the idle: the idle is an upper
bound, and one event gives no lower bound (0).

Advice ("evict at", "keepalive every") is a fraction of the LOWER bound, so following it is
safe whichever value in the range is the real one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

from tracer.explain import software

# tcp_jiffies32 timestamps (the socket's last send/receive) step at HZ (1-10 ms).
TIMESTAMP_SLACK_S = 0.01
# Evict pooled connections at this fraction of the lower bound, probe at KEEPALIVE_FRACTION.
EVICT_FRACTION = 0.8
KEEPALIVE_FRACTION = 0.5


@dataclass(frozen=True)
class Range:
    lower: float
    upper: float

    def json(self) -> list[float]:
        return [round(self.lower, 3), round(self.upper, 3)]

    def contains(self, v: float) -> bool:
        return self.lower <= v <= self.upper

    @property
    def evict_s(self) -> float:
        return self.lower * EVICT_FRACTION

    @property
    def keepalive_s(self) -> float:
        return self.lower * KEEPALIVE_FRACTION


def late_allowance(observed_s: float, server: Optional[software.Server]) -> float:
    if server is not None:
        return server.late_s
    return max(software.GENERIC_LATE_S, software.GENERIC_LATE_FRACTION * observed_s)


def server_timeout(observed_s: float, server: Optional[software.Server]) -> Range:
    """The range of a server's idle timeout that closed after `observed_s` of idle."""
    upper = observed_s + TIMESTAMP_SLACK_S
    lower = max(0.0, observed_s - late_allowance(observed_s, server))
    if server is not None and server.whole_seconds:
        lo, hi = math.ceil(lower), math.floor(upper)
        if 0 < lo <= hi:
            return Range(float(lo), float(hi))
    return Range(lower, upper)


def middlebox_timeout(idle_s: float) -> Range:
    """The range of the idle timeout of a middlebox that forgot a flow idle for `idle_s`."""
    return Range(0.0, idle_s + TIMESTAMP_SLACK_S)


def fmt_s(s: float) -> str:
    """Seconds as advice prints them: rounded DOWN, so a printed limit is never above the real one."""
    if s >= 10:
        return f"{math.floor(s)} s"
    if s >= 1:
        return f"{math.floor(s * 10) / 10:.1f} s"
    return f"{math.floor(s * 1000)} ms"
