"""The value types of the command line's filter options: comma lists of numbers, users and
verdict codes, and cgroup paths, each validated into plain values with a clear usage error.

bcc's tools take `-p 1,2` and `--port 80,443`; so do these (and each option is repeatable).
"""

from __future__ import annotations

import math
import os
import pwd
from typing import Any, Iterable, Optional

import click

from tracer.kernel import procfs
from tracer.model.errors import InvalidOption
from tracer.model.verdicts import Verdict


class CommaList(click.ParamType):  # type: ignore[type-arg]  # generic only in click 8.2+
    """A comma list (`-p 1,2`), each item validated by `one`; a repeated option gives several."""

    def convert(self, value: Any, param: Optional[click.Parameter], ctx: Optional[click.Context]) -> tuple[Any, ...]:
        if isinstance(value, tuple):
            return value
        return tuple(self.one(v.strip(), param, ctx) for v in str(value).split(","))

    def one(self, v: str, param: Optional[click.Parameter], ctx: Optional[click.Context]) -> Any:
        raise NotImplementedError


class IntList(CommaList):
    """A comma list of integers in [lo, hi]: `4242,4243`."""

    def __init__(self, lo: int, hi: int, what: str) -> None:
        self.lo, self.hi, self.what = lo, hi, what
        self.name = f"{what}[,{what}...]"

    def one(self, v: str, param: Optional[click.Parameter], ctx: Optional[click.Context]) -> int:
        try:
            n = int(v)
        except ValueError:
            self.fail(f"{v!r} is not a {self.what} (a comma list of numbers, e.g. {self.lo + 1},{self.lo + 2})", param, ctx)
        if not self.lo <= n <= self.hi:
            self.fail(f"{n} is not in the range {self.lo}-{self.hi}", param, ctx)
        return n


class UidList(CommaList):
    """A comma list of uids or user names (names looked up on this host)."""

    name = "UID|USER[,...]"

    def one(self, v: str, param: Optional[click.Parameter], ctx: Optional[click.Context]) -> int:
        if v.isdigit():
            return int(v)
        try:
            return pwd.getpwnam(v).pw_uid
        except KeyError:
            self.fail(f"no user named {v!r} on this host (give a uid, or a name from getent passwd)", param, ctx)


VERDICT_CODES = tuple(v.value for v in Verdict)


class VerdictList(CommaList):
    """A comma list of verdict codes, each one of tracer/model/verdicts.py."""

    name = "VERDICT[,...]"

    def one(self, v: str, param: Optional[click.Parameter], ctx: Optional[click.Context]) -> str:
        if v not in VERDICT_CODES:
            self.fail(f"{v!r} is not a verdict code; the codes are: {', '.join(VERDICT_CODES)}", param, ctx)
        return v

    def shell_complete(self, ctx: click.Context, param: click.Parameter, incomplete: str) -> list[Any]:
        from click.shell_completion import CompletionItem

        return [CompletionItem(v) for v in VERDICT_CODES if v.startswith(incomplete)]


def flat(values: Iterable[tuple[Any, ...]]) -> frozenset[Any]:
    return frozenset(v for group in values for v in group)


def cgroup_paths(values: Iterable[str], live: bool, mounts: str = "/proc/mounts") -> tuple[str, ...]:
    """--cgroup values as cgroup v2 paths ("/system.slice/nginx.service"), the form the events
    carry. A path under this host's cgroup v2 mount (/sys/fs/cgroup/unified/system.slice/...)
    has the mount taken off. Live, the cgroup must exist here; in a replay it is the recording
    host's, so it is only checked for form."""
    mount = procfs.cgroup2_mount(mounts)
    out = []
    for raw in values:
        v = raw.rstrip("/") or "/"
        if mount and (v == mount or v.startswith(mount.rstrip("/") + "/")):
            v = v[len(mount.rstrip("/")):] or "/"
        if not v.startswith("/"):
            raise InvalidOption(f"--cgroup {raw!r}: give a cgroup v2 path, as in /proc/PID/cgroup "
                                "(e.g. /system.slice/nginx.service) or under the cgroup2 mount",
                                "see the path of a process with: cat /proc/PID/cgroup (the 0:: line)")
        if live:
            if mount is None:
                raise InvalidOption("--cgroup: this host has no cgroup v2 hierarchy mounted",
                                    "mount one: mount -t cgroup2 none /sys/fs/cgroup/unified")
            if not os.path.isdir(os.path.join(mount, v.lstrip("/"))):
                raise InvalidOption(f"--cgroup {raw!r}: no such cgroup under {mount}",
                                    f"list them with: ls {mount}; a process's is the 0:: line of /proc/PID/cgroup")
        out.append(v)
    return tuple(out)


class Seconds(click.ParamType):  # type: ignore[type-arg]  # generic only in click 8.2+
    """A duration: a finite number of seconds above 0 (NaN and inf would never stop a run)."""

    name = "SECONDS"
    MAX = 10 * 365 * 86400.0

    def convert(self, value: Any, param: Any, ctx: Any) -> float:
        try:
            v = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number of seconds", param, ctx)
        if not (math.isfinite(v) and 0 < v <= self.MAX):
            self.fail(f"{value!r} must be a finite number of seconds above 0 and at most {self.MAX:.0f} "
                      "(ten years)", param, ctx)
        return v
