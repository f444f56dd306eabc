"""What operators know about idle timeouts, as data: which component an idle time points at,
and which client setting fixes it. Sources: shared/reference/kernel-tcp-resets.md §6.2.

Kept as plain tables so the explainer stays logic and the tables can be reviewed on their own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional


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


def pool_idle_fix(limit_s: float) -> list[str]:
    """Concrete settings that keep a client pool's idle time under limit_s seconds (evicting at
    80 % of it, always strictly below it; milliseconds where seconds would round badly)."""
    ms = max(1, int(limit_s * 800))
    limit = f"{limit_s:.0f} s" if limit_s >= 10 else f"{limit_s:.1f} s"
    n = f"{ms // 1000} s" if ms >= 10_000 else f"{ms / 1000:.1f} s"
    java = f"Duration.ofSeconds({ms // 1000})" if ms >= 10_000 else f"Duration.ofMillis({ms})"
    return [
        f"keep pooled connections idle for less than {limit}: evict at about {n}",
        f"Reactor Netty / Spring WebClient: ConnectionProvider.builder(..).maxIdleTime({java})"
        ".evictInBackground(...)",
        f"Apache HttpClient: evictIdleConnections({ms}, MILLISECONDS) (4.x: also setConnectionTimeToLive; "
        "5.x: setConnectionKeepAliveStrategy)",
        f"Go net/http: Transport.IdleConnTimeout = {ms} * time.Millisecond",
        "Python requests/urllib3: no idle eviction; retry idempotent requests on ConnectionResetError "
        "(urllib3 Retry(total=.., allowed_methods=..)) or recreate the Session",
        f"HikariCP (JDBC): maxLifetime and idleTimeout below {limit} (e.g. {ms} ms)",
    ]


def keepalive_fix(limit_s: float) -> str:
    n = max(1, int(limit_s * 0.5))
    return (f"or enable TCP keepalive probes more often than every {limit_s:.0f} s: SO_KEEPALIVE with "
            f"TCP_KEEPIDLE={n} TCP_KEEPINTVL={max(1, n // 4)} TCP_KEEPCNT=3 "
            f"(Java: ExtendedSocketOptions.TCP_KEEPIDLE; Netty: EpollChannelOption.TCP_KEEPIDLE)")
