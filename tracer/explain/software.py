"""Which server software closes idle connections with which setting, and which client settings
keep a pool below it, per runtime and protocol: as data, reviewed on its own.

The explainer names a server from this table only when it identified the process on the other
end (its name on this host, tracer/explain/case.py `peer`); otherwise it falls back to the
timeout table of tracer/explain/knowledge.py with "for example" and a lower confidence.

`late_s`: how much later than the configured timeout the server's timer can fire, from the
server's own source: the lower bound of an inferred timeout is the observed idle minus this
(tracer/explain/bounds.py). Unknown servers get GENERIC_LATE_S.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional


@dataclass(frozen=True)
class Server:
    product: str
    setting: str            # the setting that closes idle connections, as its config spells it
    default: str            # the shipped default, in words
    protocol: str           # "http" | "redis" | "postgres" | "mysql" | "tcp"
    late_s: float           # how late its idle timer may fire (see the module docstring)
    whole_seconds: bool = False  # the setting is a whole number of seconds


# By process name (comm), as the kernel reports it for the peer's socket owner.
SERVERS: dict[str, Server] = {
    # serverCron's clientsCronHandleTimeout: (server.unixtime - c->last_interaction) >
    # maxidletime, in whole seconds, checked at hz (10/s): up to 1 s + 100 ms late.
    "redis-server": Server("redis-server", "timeout (redis.conf; CONFIG SET timeout)", "0, never", "redis", 1.1, True),
    # ngx_http_set_keepalive arms a millisecond timer; epoll wakes on it.
    "nginx": Server("nginx", "keepalive_timeout", "75 s", "http", 0.1),
    # A task woken at its expiry tick (milliseconds).
    "haproxy": Server("HAProxy", "timeout http-keep-alive (else timeout http-request, then timeout client; "
                      "towards servers: timeout server)", "none set: timeout client", "http", 0.1),
    "envoy": Server("Envoy", "idle_timeout (HttpConnectionManager common_http_protocol_options)", "1 h", "http", 0.1),
    "postgres": Server("PostgreSQL", "idle_session_timeout (also idle_in_transaction_session_timeout)",
                       "0, never", "postgres", 0.1),
    "mysqld": Server("MySQL", "wait_timeout (interactive_timeout for interactive clients)", "28800 s (8 h)",
                     "mysql", 1.1, True),
    "mariadbd": Server("MariaDB", "wait_timeout (interactive_timeout for interactive clients)", "28800 s (8 h)",
                       "mysql", 1.1, True),
    "gunicorn": Server("gunicorn", "--keep-alive (keepalive)", "2 s", "http", 1.1),
    "node": Server("Node.js http.Server", "server.keepAliveTimeout", "5 s", "http", 0.1),
    "httpd": Server("Apache httpd", "KeepAliveTimeout", "5 s", "http", 1.1),
    "apache2": Server("Apache httpd", "KeepAliveTimeout", "5 s", "http", 1.1),
    "memcached": Server("memcached", "-o idle_timeout", "0, never", "tcp", 1.1),
}

# Tomcat's threads are named after its connectors (http-nio-8080-exec-1, truncated by the
# kernel to 15 characters); its poller checks timeouts about once a second.
TOMCAT = Server("Tomcat", "keepAliveTimeout (server.xml Connector; Spring Boot: "
                "server.tomcat.keep-alive-timeout)", "connectionTimeout, 20 s in the shipped server.xml "
                "(Spring Boot: 60 s)", "http", 1.1)
TOMCAT_THREAD_PREFIXES = ("http-nio-", "https-jsse-nio", "http-nio2-", "https-openssl")

# A server not in the table may check its idle timers this late: servers that sweep idle
# connections do it about once a second (Tomcat's poller, Redis' cron, gunicorn's select).
GENERIC_LATE_S = 1.1
GENERIC_LATE_FRACTION = 0.05


def server(comm: str, thread: str = "") -> Optional[Server]:
    if comm == "java" and thread.startswith(TOMCAT_THREAD_PREFIXES):
        return TOMCAT
    return SERVERS.get(comm)


# Well-known service ports -> protocol, when the peer's process is not known.
PORT_PROTOCOLS: dict[int, str] = {
    6379: "redis", 5432: "postgres", 3306: "mysql", 80: "http", 443: "http", 8080: "http",
    8443: "http", 8000: "http", 3000: "http", 5000: "http",
}


def protocol(peer: Optional[Server], service_port: int) -> Optional[str]:
    if peer is not None:
        return peer.protocol
    return PORT_PROTOCOLS.get(service_port)


# Client settings that keep a pooled connection's idle time below a limit, by runtime and
# protocol ("*": any protocol). {ms} is the eviction time in milliseconds, {sec} in seconds, {s_int} in whole
# seconds, {ka} a keepalive interval in seconds. The first entry is the most common.
CLIENT_SETTINGS: dict[str, dict[str, tuple[str, ...]]] = {
    "python": {
        "http": (
            "Python requests/urllib3: no idle eviction: retry idempotent requests on "
            "ConnectionError/RemoteDisconnected (urllib3 Retry(total=2, allowed_methods=...)), or drop the "
            "Session's pooled connections (session.close()) when idle longer than {sec} s",
            "httpx: httpx.Limits(keepalive_expiry={sec})",
            "aiohttp: aiohttp.TCPConnector(keepalive_timeout={sec})",
        ),
        "redis": (
            "redis-py: redis.Redis(health_check_interval={s_below}) pings a connection idle that long before "
            "using it; retry_on_error=[ConnectionError] retries once",
        ),
        "postgres": (
            "psycopg / SQLAlchemy: create_engine(..., pool_recycle={s_below}, pool_pre_ping=True)",
        ),
        "mysql": (
            "SQLAlchemy: create_engine(..., pool_recycle={s_below}, pool_pre_ping=True)",
        ),
    },
    "java": {
        "http": (
            "Reactor Netty / Spring WebClient: ConnectionProvider.builder(..).maxIdleTime({java})"
            ".evictInBackground(...)",
            "Apache HttpClient: evictIdleConnections({ms}, MILLISECONDS) (4.x: also setConnectionTimeToLive; "
            "5.x: setConnectionKeepAliveStrategy)",
            "OkHttp: new ConnectionPool(5, {ms}, TimeUnit.MILLISECONDS)",
        ),
        "redis": (
            "Lettuce: ClientOptions.builder().socketOptions(SocketOptions.builder().keepAlive(true)) and "
            "idle connections validated before use (GenericObjectPoolConfig.setTestOnBorrow(true))",
            "Jedis: JedisPoolConfig setMinEvictableIdleTime({java}), setTimeBetweenEvictionRuns and "
            "setTestOnBorrow(true)",
        ),
        "postgres": ("HikariCP (JDBC): idleTimeout and maxLifetime below the limit (e.g. {ms} ms; "
                     "keepaliveTime to ping idle ones)",),
        "mysql": ("HikariCP (JDBC): idleTimeout and maxLifetime below the limit (e.g. {ms} ms; "
                  "keepaliveTime to ping idle ones)",),
    },
    "go": {
        "http": ("Go net/http: Transport.IdleConnTimeout = {ms} * time.Millisecond",),
        "postgres": ("Go database/sql: db.SetConnMaxIdleTime({ms} * time.Millisecond)",),
        "mysql": ("Go database/sql: db.SetConnMaxIdleTime({ms} * time.Millisecond)",),
        "redis": ("go-redis: redis.Options{{ConnMaxIdleTime: {ms} * time.Millisecond}}",),
    },
    "node": {
        "http": ("Node http.Agent: new http.Agent({{keepAlive: true, timeout: {ms}}}) (the agentkeepalive "
                 "package: freeSocketTimeout: {ms})",),
        "redis": ("ioredis / node-redis: enable keepAlive and reconnect on ECONNRESET (retryStrategy)",),
        "postgres": ("node-postgres: new Pool({{idleTimeoutMillis: {ms}}})",),
    },
    "libpq": {
        "postgres": ("libpq / psql: keepalives=1 keepalives_idle={ka} in the connection string; a pooler "
                     "(PgBouncer server_idle_timeout) below the limit",),
    },
    "hiredis": {
        "redis": ("hiredis: redisEnableKeepAliveWithInterval(c, {ka}); redis-cli: reconnects by itself on the "
                  "next command",),
    },
    "curl": {
        "*": ("curl/libcurl: CURLOPT_MAXAGE_CONN {s_int} (whole seconds, curl 7.65+; its default is 118) so "
              "libcurl does not reuse a connection idle that long",),
    },
}
