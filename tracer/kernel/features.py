"""What the running kernel offers, read from tracefs format files (never from its version).

A tracepoint's ``format`` file lists its fields (what BCC will let the program read) and its
``print fmt``, whose ``__print_symbolic`` tables name the kernel's enums: the reset reasons of
``tcp:tcp_send_reset`` and the TCP states of ``sock:inet_sock_set_state``. Parsing them here
keeps every kernel number out of our code.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Mapping, Optional

from tracer.model.errors import TracefsMissing

# BCC reads tracepoint formats from debugfs's tracing directory when it exists, else from
# tracefs; look in the same order so we detect exactly the layout BCC will compile against.
TRACEFS_CANDIDATES = ("/sys/kernel/debug/tracing", "/sys/kernel/tracing")

# The hooks the program uses, with why each matters; doctor prints these.
HOOKS: Mapping[str, str] = {
    "sock/inet_sock_set_state": "socket table: owner, birth, FIN and close times",
    "tcp/tcp_send_reset": "resets this host sends",
    "tcp/tcp_receive_reset": "resets this host receives",
    "sock/inet_sk_error_report": "the errno the application sees (aborts)",
    "tcp/tcp_destroy_sock": "end of a socket; history kept for timewait resets",
    "tcp/tcp_retransmit_skb": "retransmits before a timeout",
    "sock/sock_send_length": "per-I/O fallback for idle time on kernels without BTF",
    "sock/sock_recv_length": "per-I/O fallback for idle time on kernels without BTF",
}
# Every hook the program attaches unconditionally (the I/O hooks are optional).
REQUIRED_HOOKS = (
    "sock/inet_sock_set_state",
    "tcp/tcp_send_reset",
    "tcp/tcp_receive_reset",
    "tcp/tcp_destroy_sock",
    "tcp/tcp_retransmit_skb",
    "sock/inet_sk_error_report",
)

_FIELD_RE = re.compile(r"^\s*field:(?P<decl>[^;]+);\s*offset:(?P<off>\d+);\s*size:(?P<size>\d+);")
_SYMBOLIC_RE = re.compile(r"__print_symbolic\(REC->(?P<field>\w+),(?P<body>(?:\s*\{[^}]*\},?)+)\s*\)")
_PAIR_RE = re.compile(r"\{\s*(?P<value>-?\w+)\s*,\s*\"(?P<name>[^\"]*)\"\s*\}")


@dataclass(frozen=True)
class Field:
    name: str
    decl: str
    offset: int
    size: int


@dataclass(frozen=True)
class TracepointFormat:
    """One parsed ``format`` file."""

    fields: Mapping[str, Field]
    # field name -> {value: symbol}, only for tables whose values are numbers
    symbols: Mapping[str, Mapping[int, str]]

    def has(self, name: str) -> bool:
        return name in self.fields


def parse_format(text: str) -> TracepointFormat:
    fields: dict[str, Field] = {}
    symbols: dict[str, dict[int, str]] = {}
    for line in text.splitlines():
        m = _FIELD_RE.match(line)
        if m:
            decl = m.group("decl").strip()
            name = re.sub(r"\[.*\]$", "", decl.split()[-1])
            if not name.startswith("common_"):
                fields[name] = Field(name, decl, int(m.group("off")), int(m.group("size")))
        elif line.startswith("print fmt:"):
            for sm in _SYMBOLIC_RE.finditer(line):
                table: dict[int, str] = {}
                for pm in _PAIR_RE.finditer(sm.group("body")):
                    try:
                        table[int(pm.group("value"), 0)] = pm.group("name")
                    except ValueError:
                        # Some kernels print enum constants by name (TCP_ESTABLISHED) instead of
                        # value; those tables cannot give numbers, so skip them.
                        table = {}
                        break
                if table:
                    symbols.setdefault(sm.group("field"), {}).update(table)
    return TracepointFormat(fields=fields, symbols=symbols)


@dataclass(frozen=True)
class Features:
    """Everything the loader and the decoder need to know about the kernel's tracepoints."""

    tracefs: str
    formats: Mapping[str, TracepointFormat] = field(default_factory=dict)

    def has_hook(self, hook: str) -> bool:
        return hook in self.formats

    def missing_required(self) -> list[str]:
        return [h for h in REQUIRED_HOOKS if h not in self.formats]

    def _fmt(self, hook: str) -> Optional[TracepointFormat]:
        return self.formats.get(hook)

    @property
    def rst_layout_sockaddr(self) -> bool:
        """6.10+: tcp_send_reset carries 28-byte sockaddrs instead of ports and addresses."""
        f = self._fmt("tcp/tcp_send_reset")
        return bool(f and f.has("saddr") and f.fields["saddr"].size == 28)

    @property
    def rst_has_reason(self) -> bool:
        f = self._fmt("tcp/tcp_send_reset")
        return bool(f and f.has("reason"))

    @property
    def rst_has_state(self) -> bool:
        f = self._fmt("tcp/tcp_send_reset")
        return bool(f and f.has("state"))

    @property
    def rst_has_family(self) -> bool:
        f = self._fmt("tcp/tcp_send_reset")
        return bool(f and f.has("family"))

    @property
    def recv_has_cookie(self) -> bool:
        f = self._fmt("tcp/tcp_receive_reset")
        return bool(f and f.has("sock_cookie"))

    @property
    def reset_reasons(self) -> Mapping[int, str]:
        """enum sk_rst_reason value -> name, from tcp_send_reset's print fmt; empty if none."""
        f = self._fmt("tcp/tcp_send_reset")
        return dict(f.symbols.get("reason", {})) if f else {}

    @property
    def tcp_states(self) -> Mapping[int, str]:
        """TCP state number -> name without the TCP_ prefix (ESTABLISHED, ...)."""
        f = self._fmt("sock/inet_sock_set_state")
        table = f.symbols.get("newstate", {}) if f else {}
        return {v: n[4:] if n.startswith("TCP_") else n for v, n in table.items()}


def find_tracefs(candidates: tuple[str, ...] = TRACEFS_CANDIDATES) -> str:
    for path in candidates:
        if os.path.isdir(os.path.join(path, "events")):
            return path
    raise TracefsMissing()


def read_features(tracefs: Optional[str] = None) -> Features:
    root = tracefs or find_tracefs()
    formats: dict[str, TracepointFormat] = {}
    for hook in HOOKS:
        path = os.path.join(root, "events", hook, "format")
        try:
            with open(path, encoding="utf-8") as fh:
                formats[hook] = parse_format(fh.read())
        except FileNotFoundError:
            continue
    return Features(tracefs=root, formats=formats)
