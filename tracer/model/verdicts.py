"""The stable vocabulary of explanations: verdict codes, who reset, how sure we are.

Codes are part of the JSON contract (shared/DESIGN.md): add new ones, never rename one.
"""

from __future__ import annotations

from enum import Enum


class Verdict(str, Enum):
    CONNECTION_REFUSED = "connection_refused"      # our connect() met an RST (or ICMP refusal)
    PORT_CLOSED = "port_closed"                    # this host refused a SYN: nothing listens
    STALE_AFTER_IDLE = "stale_after_idle"          # a middlebox forgot an idle flow
    WRITE_AFTER_PEER_CLOSE = "write_after_peer_close"  # the peer had sent FIN; we wrote anyway
    MIDDLEBOX_RESET = "middlebox_reset"            # a reset the peer never sent
    PEER_ABORT = "peer_abort"                      # the peer reset a live connection
    RESET_DURING_CLOSE = "reset_during_close"      # reset while closing (FIN_WAIT*, LAST_ACK, ...)
    CLOSED_WITH_UNREAD_DATA = "closed_with_unread_data"
    DATA_AFTER_CLOSE = "data_after_close"          # the peer sent data after this side closed
    LINGER_ABORT = "linger_abort"                  # SO_LINGER {1,0} or TCP_LINGER2 < 0
    UNKNOWN_CONNECTION = "unknown_connection"      # a segment for a connection this host lacks
    OUT_OF_WINDOW = "out_of_window"
    MEMORY_PRESSURE = "memory_pressure"
    KEEPALIVE_TIMEOUT = "keepalive_timeout"
    RETRANSMIT_TIMEOUT = "retransmit_timeout"
    SYN_TIMEOUT = "syn_timeout"
    LISTEN_OVERFLOW = "listen_overflow"
    # Added where reality needed them (DESIGN allows additions):
    LISTENER_CLOSED = "listener_closed"            # closing a listener reset its un-accepted connections
    SOCKET_DESTROYED = "socket_destroyed"          # ss -K / SOCK_DESTROY / bpf_sock_destroy()
    FIN_WAIT2_TIMEOUT = "fin_wait2_timeout"        # an orphan's FIN_WAIT2 timer expired
    HOST_UNREACHABLE = "host_unreachable"          # ICMP unreachable during connect
    MPTCP_RESET = "mptcp_reset"                    # an MPTCP subflow reset (RFC 8684 codes)
    CONNECT_ABANDONED = "connect_abandoned"        # this host gave up on connect(); the late SYN-ACK met no socket
    UNKNOWN = "unknown"


class Who(str, Enum):
    """Who sent the reset (or, for aborts without one, whose kernel gave up)."""

    LOCAL = "local"
    PEER = "peer"
    MIDDLEBOX = "middlebox"
    UNKNOWN = "unknown"


class Confidence(str, Enum):
    HIGH = "high"      # the kernel said why, or both ends were observed
    MEDIUM = "medium"  # inferred from state, timing and neighbouring records
    LOW = "low"


# Aggregate insights (not one per event).
INSIGHT_TIME_WAIT_PILEUP = "time_wait_pileup"
INSIGHT_RESET_STORM = "reset_storm"
