"""Real refused connections on loopback, for tests of the tracer's own behaviour (files,
signals, exit paths): the kernel answers a connect to a closed port with a reset."""

from __future__ import annotations

import socket


def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def refused(port: int, source_port: int = 0) -> int:
    """One connect refused by the kernel (RST from no socket); returns the client's port
    (`source_port`: bind it, instead of an ephemeral one)."""
    s = socket.socket()
    if source_port:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", source_port))
    lport = s.getsockname()[1]
    if lport == port:
        # The ephemeral port drawn is the closed port itself: a connect would meet itself
        # (simultaneous open) and succeed. Draw again.
        s.close()
        return refused(port)
    try:
        s.connect(("127.0.0.1", port))
    except ConnectionRefusedError:
        pass
    else:
        raise AssertionError(f"port {port} is open")
    finally:
        s.close()
    return lport


def refused_for(host, addr: str, port: int, seconds: float, limit: int) -> int:
    """Connects from `host` (a lab Host) to `addr`:`port`, a closed port, each refused, for at
    most `seconds` and `limit` connects; returns how many were made."""
    import time

    from tests.lab.netns import in_netns

    done, until = 0, time.monotonic() + seconds
    with in_netns(host):
        while time.monotonic() < until and done < limit:
            s = socket.socket()
            try:
                s.connect((addr, port))
            except ConnectionRefusedError:
                pass
            finally:
                s.close()
            done += 1
    return done
