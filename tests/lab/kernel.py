"""What the running kernel traces, for tests whose expectations depend on its version.

Probed from the tracefs formats (tracer/kernel/features.py), never from the version number:
- every reset (6.10+): tcp:tcp_send_reset fires with no socket and for TIME_WAIT sockets; its
  format then carries 28-byte sockaddrs. Older kernels send those resets untraced.
- reset reasons (6.10+, active ones 6.12+): the format's `reason` field. Without it the tool
  infers the reason and reports it as `inferred:NAME`.
"""

from __future__ import annotations

from functools import lru_cache

from tracer.kernel.features import Features, read_features

NO_EVERY_RESET = "this kernel does not trace resets sent with no socket or by TIME_WAIT sockets (before 6.10)"


@lru_cache(maxsize=1)
def features() -> Features:
    return read_features()


def traces_every_reset() -> bool:
    return features().rst_layout_sockaddr


def gives_reasons() -> bool:
    return features().rst_has_reason
