"""The words of every explanation, as data: one entry per text key of the rule table
(tracer/explain/rules.py), plus the evidence sentences.

Templates use str.format fields filled from the case (tracer/explain/rules.py `Words`):
  {me}         the owning process ("curl pid 42"), {there} / {here} the remote / local endpoint,
  {raddr} {lport} {rport}, {reason} the reset reason, {errno} the errno with its text,
  {idle} the idle time, {unread} unread bytes, {retrans} retransmissions,
  {since_fin} {since_close} {since_destroy} how long before the event the peer's FIN, this
  side's close, the socket's destruction were, {waited} how long an abandoned connect waited
  before it was closed, {answered} how long after the connect began the late answer came, {gap_fin} the gap between the last data and the
  peer's FIN, {killer} the task that destroyed a socket, {peer} what the other end on this host
  did (a sentence), {peer_sentence} the same with a leading space, or nothing.
Reviewing the words means reading this file; changing them means regenerating the goldens
(scripts/regen_golden.py) and reading the diff.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Text:
    why: str                         # the explanation: one or two sentences
    fix: tuple[str, ...] = ()        # what to change, most useful first


_CLOSE_CROSSED = ("{there} had just closed this connection when {me} sent on it (the close and the "
                  "request crossed); the peer answered with a reset. {peer}.")
_LINGER0 = Text(
    "{me} closed its connection to {there} abortively (SO_LINGER on with a 0 s timeout): the kernel sends a "
    "reset instead of a FIN and drops unsent data.",
    ("remove SO_LINGER {{on, 0}} ({linger_how}) unless skipping TIME_WAIT on purpose; close normally",))
_STALE_LOCAL = Text(
    "{me} reused its connection to {there} after {idle} idle and got a reset: {there} is on this host and "
    "its kernel sent no reset: a middlebox on the path (NAT, load balancer, firewall) had forgotten the "
    "idle flow and answered for it.")
_CLOSING_FIX = "usually harmless for the closer; see the other end's explanation"

TEXTS: dict[str, Text] = {
    # ---------------------------------------------------------------- resets this host sent
    "port_closed": Text(
        "Nothing listens on {here}: this host refused {there}'s connection attempt with a reset (the client "
        "sees 'connection refused').",
        ("start the service on port {lport}, or point the client at the port it listens on",
         "if the service restarts, make clients retry connects with backoff")),
    "connect_abandoned": Text(
        "{me} gave up on its connection attempt to {there} after {waited} and closed the socket; the server's "
        "answer (SYN-ACK) came {answered} after the attempt began, {since_close} too late, and this host's kernel, "
        "which no longer knew the connection, answered it with a reset. The client's connect timeout is shorter "
        "than the server's answer time.",
        ("raise the client's connect timeout above the server's answer time (over {answered} here), or retry the "
         "connect with backoff",
         "find why {there} answers connection attempts slowly: a full SYN or accept backlog (nstat "
         "ListenOverflows/ListenDrops there), lost SYNs or SYN-ACKs retransmitted after 1 s, an overloaded host")),
    "data_after_destroy": Text(
        "{there} kept sending {since_destroy} after {me} had closed and the kernel had forgotten the "
        "connection; the segment got a reset.",
        ("make the peer stop sending once this side has closed (honour FIN / Connection: close)",)),
    "unknown_connection": Text(
        "A segment from {there} arrived for a connection this host does not have on {here}: it was closed long "
        "ago, the host or service restarted, or a NAT/conntrack mapping changed so the segment reached the "
        "wrong host.",
        ("check for restarts of the service on this port around this time",
         "behind NAT/kube-proxy: drop conntrack INVALID packets or set "
         "net.netfilter.nf_conntrack_tcp_be_liberal=1 (the kube-proxy reset case)")),
    "data_after_timewait": Text(
        "{me} had closed the connection to {there} {since_close} earlier; the peer then sent more data, and "
        "the closed socket (kept by the kernel as a timewait socket) answered with a reset. The peer's next "
        "write fails with EPIPE (Broken pipe).",
        ("if this side closed because of a read timeout: raise it above the peer's response time (a read "
         "timeout bounds the gap between packets, not the whole response)",
         "make the peer stop work and writes once the client has gone (react to the client's FIN)")),
    "abort_on_data": Text(
        "{me} had stopped reading (close or shutdown) and {there} still sent data; the kernel killed the "
        "connection and answered with a reset.",
        ("if this side is the server closing idle keep-alive connections, the client reused the connection "
         "as it closed: keep client pool idle times below this server's keep-alive timeout",
         "do not shutdown(SHUT_RD) a socket the peer may still write to")),
    "unread_close": Text(
        "{me} closed its socket with {unread} bytes from {there} still unread; the kernel discarded them and "
        "sent a reset instead of a FIN, so the peer gets ECONNRESET (or EPIPE if it had closed its side).",
        ("read the request or response fully before closing (or shutdown(SHUT_WR), drain, then close)",
         "HTTP servers answering early (401/413/errors): read or discard the request body first, or send "
         "'Connection: close' and drain")),
    "linger2": Text(
        "{me} closed a connection already in FIN_WAIT2 with TCP_LINGER2 < 0, which resets instead of waiting "
        "for the peer's FIN.",
        ("remove the negative TCP_LINGER2 setting, or accept the resets it causes",)),
    "listener_closed": Text(
        "{me} closed its listening socket on {here} while the connection from {there} waited in the accept "
        "queue; the kernel reset every unaccepted connection.",
        ("drain the accept queue before closing the listener (graceful shutdown), or stop routing traffic to "
         "the instance first",)),
    "linger0": _LINGER0,
    "linger0_likely": _LINGER0,
    "fin_wait2_timeout": Text(
        "{me} closed its side; {there} acknowledged but never closed its own, and the kernel's FIN_WAIT2 timer "
        "(tcp_fin_timeout) reset the connection.",
        ("find why the peer never closes its side (a leaked connection in its pool)",)),
    "destroyed_by_task": Text(
        "The connection of {me} to {there} was destroyed from outside by {killer} (ss -K, SOCK_DESTROY or "
        "bpf_sock_destroy); its owner gets ECONNABORTED.",
        ("check what {killer} is doing (an agent or operator killing sockets)",)),
    "keepalive_timeout": Text(
        "{there} stopped answering TCP keepalive probes from {me}; the kernel gave up, reset the connection "
        "and reports ETIMEDOUT. The peer host is gone, or a middlebox drops the flow.",
        ("find out why the peer went silent: crash or reboot, network partition, a firewall or NAT dropping "
         "idle flows",
         "if a middlebox drops idle flows, probe more often than its idle timeout (TCP_KEEPIDLE)")),
    "memory_pressure": Text(
        "The kernel killed this closed-but-unfinished (orphaned) connection to {there}: too many orphaned "
        "sockets (net.ipv4.tcp_max_orphans) or TCP memory pressure (net.ipv4.tcp_mem).",
        ("check dmesg for 'too many orphaned sockets' or 'out of memory -- consider tuning tcp_mem'",
         "raise net.ipv4.tcp_max_orphans / tcp_mem, or close connections gracefully sooner")),
    "listener_no_connection": Text(
        "A segment from {there} reached the listener on {here}, which has no connection for it: the server's "
        "side of that connection no longer exists (socket killed or closed early, handshake dropped under "
        "accept-queue overflow or SYN cookies, or a restart).",
        ("check ListenOverflows/ListenDrops in nstat and the accept backlog (somaxconn, listen())",
         "check for restarts of the service on this port")),
    "listen_overflow": Text(
        "The listener on {here} reset a half-open connection from {there}: the accept queue was full with "
        "net.ipv4.tcp_abort_on_overflow=1, or the handshake was invalid.",
        ("accept faster or raise the backlog (listen() and net.core.somaxconn)",
         "check nstat ListenOverflows; consider tcp_abort_on_overflow=0")),
    "out_of_window": Text(
        "{there} sent a segment outside what this connection expects during the handshake ({reason}): usually "
        "a stale half-open connection on the same ports at the peer.",
        ("usually harmless once; if frequent, look for port reuse by a NAT or peers keeping half-open "
         "connections",)),
    "disconnect_with_data": Text(
        "{me} disconnected while closing with data still unsent to {there}; the kernel reset.",
        ("let the close finish (no SO_LINGER 0) so the data is delivered",)),
    "mptcp_reset": Text(
        "An MPTCP subflow to {there} was reset ({reason}): the MPTCP layer gave up on this path.",
        ("see the MPTcpExt counters (nstat) and the path manager's configuration",)),
    "sent_unknown": Text(
        "This host reset the connection to {there}; the kernel gave no reason and the context matches no "
        "known pattern.",
        ("capture the traffic (tcpdump -i any host {raddr}) around the next occurrence",)),
    # ---------------------------------------------------------------- resets this host received
    "refused_by_firewall": Text(
        "{me}'s connection attempt to {there} was refused by a reset that host never sent: a firewall reject "
        "rule answered for it.",
        ("check firewall rules between the two (nftables/iptables reject with tcp-reset)",)),
    "refused": Text(
        "{me} tried to connect to {there} and nothing listens there: the host answered with a reset "
        "(connection refused).{peer_sentence}",
        ("check that the service runs and listens on port {rport} at {raddr}",
         "retry connects with backoff while the service restarts")),
    "server_idle_close": Text(
        "The server {there} closed this idle pooled connection (FIN) after {gap_fin} without traffic; {me} "
        "reused it {since_fin} later and the server answered with a reset.",
        ("or check pooled connections for a FIN (CLOSE_WAIT) before reuse, and retry idempotent requests once "
         "on a reset",)),
    "server_done": Text(
        "The server {there} closed the connection right after its last data (it was done, e.g. 'Connection: "
        "close'); {me} wrote {since_fin} later and the server answered with a reset.",
        ("read the response to the end and honour 'Connection: close': do not reuse the connection after the "
         "server's FIN",)),
    "client_gave_up": Text(
        "The client {there} gave up and closed the connection (FIN) {gap_fin} after the last data; {me} wrote "
        "{since_fin} later and the client answered with a reset. The next write fails with EPIPE (Broken "
        "pipe; Tomcat: ClientAbortException).",
        ("respond within the client's timeout, or ask the client to raise its read timeout (it bounds the gap "
         "between packets, not the whole response)",
         "stop work when the client disconnects (Netty channelInactive, servlet async onError/onTimeout)",
         "behind proxies: keep timeouts ordered client > proxy > server")),
    "client_done": Text(
        "The client {there} closed its side right after the last data (it was done, or shut the connection "
        "down); {me} wrote {since_fin} later and the client answered with a reset. The next write fails with "
        "EPIPE (Broken pipe).",
        ("stop writing once the peer has closed its side (a read returning 0 / EOF)",)),
    "peer_closed_side_unknown": Text(
        "{there} had closed the connection (FIN) and {me} wrote to it anyway; the peer answered with a reset "
        "(EPIPE on the next write). If this side is a client reusing a pooled connection, the server's "
        "keep-alive timeout closed it; if it is a server, the client gave up (its timeout).",
        ("clients: keep pool idle times below the server's keep-alive timeout",
         "servers: respond within the client's timeout and stop work when it disconnects")),
    "reset_while_closing_seen": Text(
        "{me} was closing its connection to {there} when the other end answered with a reset. {peer}.",
        (_CLOSING_FIX,)),
    "reset_while_closing": Text(
        "{me} was closing its connection to {there} when the peer reset it instead of closing cleanly (it "
        "closed with unread data or SO_LINGER 0, or no longer knew the connection).",
        ("usually harmless for the closer; on the peer, read fully before close and avoid SO_LINGER 0",)),
    "close_crossed_request": Text(_CLOSE_CROSSED),
    "close_crossed_request_no_idle": Text(
        _CLOSE_CROSSED, ("keep client pool idle times below the server's keep-alive timeout",)),
    "peer_abort_seen": Text(
        "{there} reset its live connection with {me}. {peer}.",
        ("the cause is on the other end: see its explanation of the same reset (printed with it)",)),
    "stale_local_peer_known": _STALE_LOCAL,
    "stale_local_peer": _STALE_LOCAL,
    "middlebox_reset_local_peer": Text(
        "{me}'s connection to {there} was reset, but {there} is on this host and its kernel sent no reset, and "
        "the connection was not idle long enough for an idle timeout: something on the path rejected the flow "
        "(a firewall reject rule, a security-group or network-policy change) or lost its state (a NAT, load "
        "balancer or firewall failover).",
        ("list reject rules on the path: nft list ruleset | grep -i reset; iptables -S | grep -i reset",
         "check for policy changes at the time: host firewall, security groups, Kubernetes NetworkPolicy",
         "check for a failover or restart of NAT gateways, load balancers or firewalls (conntrack state lost: "
         "packets of existing flows become INVALID and are rejected)")),
    "stale_remote_peer": Text(
        "{me} reused its connection to {there} after {idle} idle and got a reset: the reset answered the first "
        "data after the idle period, as a NAT gateway or load balancer does once it has forgotten an idle "
        "flow (the server may also have dropped it silently, e.g. after a restart)."),
    "peer_abort": Text(
        "{there} reset its live connection with {me}: the peer closed with unread data or SO_LINGER 0, crashed "
        "or restarted, or a middlebox injected the reset.",
        ("run tcptrace-explain on the peer to see its side, or capture the traffic there",
         "retry idempotent requests once on ECONNRESET")),
    # ---------------------------------------------------------------- aborts without a reset
    "syn_timeout": Text(
        "{me}'s connection attempt to {there} got no answer at all; the kernel gave up after {retrans} SYN "
        "retransmissions (ETIMEDOUT). The host is down or a firewall drops.",
        ("check reachability and firewall rules to {there}",
         "lower the connect timeout (TCP_SYNCNT / the client's connect timeout) so callers fail fast")),
    "retransmit_timeout": Text(
        "{there} stopped acknowledging {me}'s data; after {retrans} retransmissions the kernel gave up "
        "(ETIMEDOUT, no reset sent). The peer or the path went silent.",
        ("find why the peer went silent (crash, partition, a firewall or NAT dropping the flow)",
         "TCP_USER_TIMEOUT bounds this wait; tcp_retries2 is the system default (about 15 min)")),
    "refused_abort": Text(
        "{me}'s connection to {there} was refused (an ICMP port-unreachable, or a reset).",
        ("check that the service listens on {there}",)),
    "host_unreachable": Text(
        "{me} could not reach {there}: {errno} (an ICMP error or no route).",
        ("check routes, neighbour (ARP) resolution and firewalls towards {raddr}",)),
    "destroyed_abort": Text(
        "The connection of {me} to {there} was aborted from outside (ss -K or SOCK_DESTROY).",
        ("check for agents or operators killing sockets",)),
    "abort_unknown": Text(
        "The connection of {me} to {there} ended with {errno} without a reset this tool saw.",
        ("capture the traffic around the next occurrence",)),
}

# ------------------------------------------------------------------ names and sentence parts

UNIDENTIFIED_OWNER = "a process the tracer could not identify (socket opened before it started)"
ANOTHER_TASK = "another task"
HOST_KERNEL = "the kernel on this host"
ON_THIS_HOST = "{proc} on this host"
PEER_DID = "The other end is {who}: it {action}{reason}"
PEER_RESET_IT = "reset it"

# What the other end did, by the reason its kernel gave, for "both ends on this host" stories.
PEER_ACTIONS = {
    "NO_SOCKET": "had no socket for the connection",
    "TCP_TIMEWAIT_SOCKET": "had already closed the connection",
    "TCP_ABORT_ON_DATA": "had stopped reading and got more data",
    "TCP_ABORT_ON_CLOSE": "closed its socket with unread data",
    "TCP_ABORT_ON_LINGER": "closed with TCP_LINGER2 < 0",
    "TCP_STATE": "closed abortively (SO_LINGER 0, listener closed) or had its socket destroyed",
    "TCP_KEEPALIVE_TIMEOUT": "gave up on keepalive probes",
    "TCP_ABORT_ON_MEMORY": "was short of memory for orphaned sockets",
    "TCP_FLAGS": "had no connection for it at its listener",
}

# ------------------------------------------------------------------ evidence sentences

EV_IDLE = "idle {idle} before the reset (no data sent or received)"
EV_AGE = "connection age {age}"
EV_PEER_FIN = "the peer's FIN arrived {since} before the reset"
EV_OUR_CLOSE = "this side closed {since} before the reset"
EV_AFTER_LAST_DATA = ", {gap} after the last data"
EV_AFTER_OUR_LAST_DATA = ", {gap} after its last data"
EV_RETRANS = "{n} retransmissions before the end"
EV_UNREAD = "{n} bytes received but never read by the application"
EV_ERRNO = "the kernel reports {errno} on the socket"
# What the application sees (tracer/explain/appview.py)
EV_APP_SEES = "the application sees: {calls}"
EV_APP_CLOSED = "the application sees nothing: {note}"
APP_CALL = "its next {call} {result}{note}"
APP_EOF = "returns EOF (0 bytes: the peer closed)"
APP_FAILS = "fails with {errno}"
EV_RTT_MS = "smoothed RTT {ms:.1f} ms"
EV_RTT_US = "smoothed RTT {us} µs"
EV_OWNER = "owner {proc} (from its {source})"
EV_CONNECT_WAITED = "the connect waited {waited} before {me} closed it"
EV_ANSWER_CAME = "the server's answer (SYN-ACK) came {answered} after the connect began"
EV_OWNER_PROCFS = "owner {proc} (found holding the socket in /proc)"
# An accepted socket whose holder could not be resolved (tracer/explain/owners.py): no pid is guessed.
OWNER_CANDIDATES = "{comm} pid {root} or one of its child processes ({children})"
OWNER_CANDIDATE_ALONE = "{comm} pid {root} or a process it handed the connection to"
EV_OWNER_UNRESOLVED = ("the holder is not known: the connection was accepted on a listener of {comm} pid {root}, "
                       "no close by its holder was seen, and none of the listener owner's {n} processes held the "
                       "socket when looked up")
EV_READ_TIMEOUT = "{me} closed {gap} after its last data: likely its read timeout"
EV_LOCAL_IDLE_CLOSE = ("{me} closed after {gap} without traffic: its own idle (keep-alive) timeout; clients must "
                       "keep their pool idle time below it")
EV_SERVER_KEEPALIVE = "the server's idle (keep-alive) timeout is {range} (from the idle before its FIN)"
EV_FOR_EXAMPLE = "; the server is not identified: for example {component}"
EV_SERVER_IDENTIFIED = ("{product} ({proc} on this host) closes idle connections after its {setting} "
                        "(default {default}): here {range}")
FIX_LOCAL_IDLE_CLOSE = ("clients of {product} must keep pooled connections idle for less than its {setting} "
                        "(here {range}: evict at about {evict}), or check them before reuse; or raise the setting "
                        "above the clients' pool idle time")
EV_LOCAL_SERVER_SETTING = "that timeout is {product}'s {setting} (default {default})"
EV_MIDDLEBOX_RANGE = ("the middlebox's idle timeout is at most {upper} (the flow was forgotten during the idle); one "
                      "event does not bound it from below")
EV_CLIENT_TIMEOUT = "the client closed {gap} after the last data: likely its read timeout"
EV_NEAR_COMPONENT = "{idle} idle is just above the {component} timeout: for example that one (not identified)"
FIX_IF_COMPONENT = "if it is {component}: evict at about {evict}"
EV_ACTIVE_TRAFFIC = ("the connection was in active use ({idle} since its last data): no idle timeout, a reset "
                     "injected mid-traffic")
EV_SHORT_IDLE = ("{idle} idle is shorter than any real idle timeout (under {min}: see STALE_MIN_IDLE_S in "
                 "tracer/explain/rules.py): not a forgotten idle flow")
EV_FIRST_SEND = "the reset answered the first send after the idle period"
