"""What operators know about idle timeouts, as data: which component an idle time points at,
and which client setting fixes it. Sources: shared/reference/kernel-tcp-resets.md §6.2.

Kept as plain tables so the explainer stays logic and the tables can be reviewed on their own.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

from tracer.explain import bounds, software


@dataclass(frozen=True)
class KnownTimeout:
    seconds: float
    component: str
    # how it ends an idle connection: "reset" (forgets the flow, answers later packets with an
    # RST), "fin" (closes it), "drop" (forgets silently; later packets vanish)
    ends_with: str


KNOWN_TIMEOUTS: tuple[KnownTimeout, ...] = (
    KnownTimeout(2, "gunicorn (keepalive = 2 s)", "fin"),
    KnownTimeout(5, "Node.js http.Server keepAliveTimeout or Apache httpd KeepAliveTimeout (5 s)", "fin"),
    KnownTimeout(20, "Tomcat's shipped server.xml connectionTimeout (20 s)", "fin"),
    KnownTimeout(60, "AWS ALB idle timeout, Tomcat/Spring Boot keep-alive or nginx upstream keepalive (60 s)", "fin"),
    KnownTimeout(75, "nginx keepalive_timeout (75 s)", "fin"),
    KnownTimeout(90, "Go http.Transport IdleConnTimeout or the Heroku router (90 s)", "fin"),
    KnownTimeout(180, "Apache HttpClient 5 default keep-alive (3 min)", "fin"),
    KnownTimeout(240, "Azure Load Balancer or Azure NAT Gateway idle timeout (4 min)", "reset"),
    KnownTimeout(350, "AWS NAT Gateway or AWS NLB idle timeout (350 s)", "reset"),
    KnownTimeout(600, "GCP load balancer backend keep-alive (600 s)", "fin"),
    KnownTimeout(1200, "GCP Cloud NAT established-TCP timeout (1200 s)", "reset"),
    KnownTimeout(3600, "Envoy/Istio idle_timeout (1 h)", "fin"),
)

# How close an observed idle time must be to a known timeout to name the component: the
# middlebox's timer runs from its own last packet, so the observed idle slightly exceeds it.
MATCH_TOLERANCE = 0.10


def component_near(seconds: Optional[float], ends_with: Optional[str] = None) -> Optional[KnownTimeout]:
    """The well-known timeout this idle time sits just above (within MATCH_TOLERANCE)."""
    if seconds is None or seconds <= 0:
        return None
    best = None
    for k in KNOWN_TIMEOUTS:
        if ends_with and k.ends_with != ends_with:
            continue
        if k.seconds * (1 - MATCH_TOLERANCE / 2) <= seconds <= k.seconds * (1 + MATCH_TOLERANCE):
            if best is None or abs(seconds - k.seconds) < abs(seconds - best.seconds):
                best = k
    return best


def pool_fix(rng: bounds.Range, runtime: Optional[str], protocol: Optional[str],
             what: str = "the server's idle timeout") -> list[str]:
    """What keeps a client's pooled connections idle for less than a timeout in `rng`: the
    settings of the client's own runtime for its protocol first, then the generic advice.
    Numbers are a fraction of the range's lower bound (tracer/explain/bounds.py); without a
    lower bound the settings are named with N for the operator to fill in."""
    if rng.lower > 0:
        ev = rng.evict_s
        ms = max(1, math.floor(ev * 1000))
        sec = f"{math.floor(ev * 10) / 10:g}" if ev >= 1 else f"{ms / 1000:g}"
        whole = math.floor(ev)
        values = {"ms": str(ms), "sec": sec, "s_below": sec, "s_int": str(whole),
                  "ka": str(max(1, math.floor(rng.keepalive_s))),
                  "java": f"Duration.ofSeconds({whole})" if ms >= 10_000 else f"Duration.ofMillis({ms})"}
        generic = (f"keep pooled connections idle for less than {bounds.fmt_s(rng.lower)} ({what} is "
                   f"{range_words(rng)}): evict at about {bounds.fmt_s(ev)}")
    else:
        values = {k: "N" for k in ("ms", "sec", "s_below", "s_int", "ka")}
        values["java"] = "Duration.ofMillis(N)"
        whole = -1
        generic = (f"keep pooled connections idle for less than {what}, which is at most "
                   f"{up(rng.upper)} here but not bounded from below by this event: find the "
                   "setting, then evict at 80 % of it (N below)")
    lines = []
    for setting in _settings(runtime, protocol):
        if "CURLOPT_MAXAGE_CONN" in setting and whole == 0:
            setting = "curl/libcurl: the limit is under 1 s, below CURLOPT_MAXAGE_CONN's unit: CURLOPT_FORBID_REUSE 1"
        lines.append(setting.format(**values))
    return lines + [generic]


def _settings(runtime: Optional[str], protocol: Optional[str]) -> tuple[str, ...]:
    if runtime is None:
        return ()
    table = software.CLIENT_SETTINGS.get(runtime, {})
    # An unknown protocol: the runtime's HTTP clients, the most common pools (each line names its library).
    return table.get(protocol or "http", ()) + table.get("*", ())


def range_words(rng: bounds.Range) -> str:
    if rng.lower == rng.upper:
        return bounds.fmt_s(rng.lower)
    return f"between {bounds.fmt_s(rng.lower)} and {up(rng.upper)}"


def up(s: float) -> str:
    """An upper bound rounded UP, so the printed range still contains the value."""
    if s >= 10:
        return f"{math.ceil(s)} s"
    if s >= 1:
        return f"{math.ceil(s * 10) / 10:.1f} s"
    return f"{math.ceil(s * 1000)} ms"


# How the owner's runtime (tracer/explain/procinfo.py) spells a socket setting. A runtime that
# is not known gets two spellings, "for example": its own may be any of them, or none.
KEEPALIVE_HOW: dict[str, str] = {
    "java": "Java: ExtendedSocketOptions.TCP_KEEPIDLE; Netty: EpollChannelOption.TCP_KEEPIDLE",
    "python": "Python: sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, N) after SO_KEEPALIVE",
    "go": "Go: net.Dialer's KeepAliveConfig (Go 1.23 and later) or KeepAlive",
    "node": "Node.js: socket.setKeepAlive(true, initialDelay)",
    "libpq": "libpq: the keepalives_idle, keepalives_interval and keepalives_count connection parameters",
    "hiredis": "hiredis: redisEnableKeepAliveWithInterval()",
    "curl": "libcurl: CURLOPT_TCP_KEEPALIVE with CURLOPT_TCP_KEEPIDLE and CURLOPT_TCP_KEEPINTVL",
}
LINGER_HOW: dict[str, str] = {
    "java": "Java: Socket.setSoLinger(true, 0); Netty: ChannelOption.SO_LINGER 0",
    "python": "Python: sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0))",
    "go": "Go: TCPConn.SetLinger(0)",
    "node": "Node.js: socket.resetAndDestroy()",
}


def spelled(table: dict[str, str], runtime: Optional[str]) -> str:
    """The setting as the runtime spells it, or "for example" two runtimes' spellings."""
    if runtime in table:
        return table[runtime]
    return "for example " + "; ".join(table[k] for k in ("java", "go"))


def keepalive_fix(rng: bounds.Range, runtime: Optional[str] = None) -> str:
    how = spelled(KEEPALIVE_HOW, runtime)
    if rng.lower <= 0:
        return ("or enable TCP keepalive probes more often than the middlebox's idle timeout: SO_KEEPALIVE with "
                f"TCP_KEEPIDLE below it ({how})")
    if rng.keepalive_s < 1:
        return ("TCP keepalive probes cannot be safely below a timeout that may be as short as "
                f"{bounds.fmt_s(rng.lower)} (TCP_KEEPIDLE counts whole seconds): evict idle connections instead")
    n = math.floor(rng.keepalive_s)
    return (f"or enable TCP keepalive probes more often than every {bounds.fmt_s(rng.lower)}: SO_KEEPALIVE with "
            f"TCP_KEEPIDLE={n} TCP_KEEPINTVL={max(1, n // 4)} TCP_KEEPCNT=3 ({how})")
