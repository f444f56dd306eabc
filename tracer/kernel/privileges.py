"""Dropping root once the BPF programs are attached.

Loading and attaching BPF programs needs root (CAP_BPF, CAP_PERFMON, CAP_SYS_ADMIN on older
kernels); using them afterwards does not: the ring buffer is polled through its epoll and mmap,
and the maps are read, updated and drained through the file descriptors bpf() returned, which
the kernel checks when they are created, not when they are used (since Linux 6.5 the
unprivileged_bpf_disabled check applies only to creating maps and loading programs,
"bpf: move unprivileged checks into map_create() and bpf_prog_load()"). So after start-up the
tracer becomes an unprivileged user (`nobody` by default, --user NAME) with no capabilities:
effective, permitted, inheritable and ambient sets empty, the bounding set emptied,
PR_SET_NO_NEW_PRIVS set, supplementary groups dropped.

Whether the maps stay usable is probed, not assumed from the kernel version: a forked child
drops first and reads the maps through the inherited descriptors; if that fails (an older
kernel with unprivileged BPF disabled), CAP_BPF alone is kept in the real drop and the start-up
banner says so.

The few /proc reads that need more than an ordinary user may do (another user's
/proc/<pid>/fd, exe, maps: the kernel's ptrace access check) go to a broker forked before the
drop (tracer/kernel/broker.py).

Everything here acts on the calling thread (capset and the bounding set are per thread) except
setres[ug]id, which glibc applies to every thread: call drop() before any thread is started.
"""

from __future__ import annotations

import ctypes
import os
import pwd
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Optional

from tracer.model.errors import TteError

if TYPE_CHECKING:
    from tracer.kernel.capture import Capture

PR_CAPBSET_DROP = 24
PR_SET_KEEPCAPS = 8
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
_LINUX_CAPABILITY_VERSION_3 = 0x20080522
CAP_DAC_READ_SEARCH = 2
CAP_SYS_PTRACE = 19
CAP_BPF = 39
DEFAULT_USER = "nobody"


class PrivilegeDropFailed(TteError):
    exit_code = 3


@dataclass(frozen=True)
class Dropped:
    user: str
    uid: int
    gid: int
    kept: tuple[int, ...]     # capabilities kept (numbers), normally none

    def describe(self) -> str:
        kept = f", keeping {', '.join(cap_name(c) for c in self.kept)}" if self.kept else ", no capabilities"
        return f"running as {self.user} (uid {self.uid}, gid {self.gid}){kept}"


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def cap_name(cap: int) -> str:
    return {CAP_DAC_READ_SEARCH: "CAP_DAC_READ_SEARCH", CAP_SYS_PTRACE: "CAP_SYS_PTRACE",
            CAP_BPF: "CAP_BPF"}.get(cap, f"capability {cap}")


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _prctl(option: int, arg: int = 0, arg3: int = 0) -> None:
    if _libc().prctl(option, ctypes.c_ulong(arg), ctypes.c_ulong(arg3), ctypes.c_ulong(0), ctypes.c_ulong(0)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"prctl({option}): {os.strerror(err)}")


def _capset(keep: tuple[int, ...]) -> None:
    """Effective and permitted = `keep`, inheritable empty, for the calling thread."""
    hdr = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    for cap in keep:
        word, bit = divmod(cap, 32)
        data[word].effective |= 1 << bit
        data[word].permitted |= 1 << bit
    if _libc().capset(ctypes.byref(hdr), data) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"capset: {os.strerror(err)}")


def last_cap() -> int:
    try:
        with open("/proc/sys/kernel/cap_last_cap", encoding="ascii") as fh:
            return int(fh.read())
    except (OSError, ValueError):
        return 40


def resolve_user(name: str) -> tuple[str, int, int]:
    """(name, uid, primary gid) of a user name or number; its primary group (nogroup for nobody)."""
    try:
        pw = pwd.getpwuid(int(name)) if name.isdigit() else pwd.getpwnam(name)
    except (KeyError, ValueError):
        raise TteError(f"--user {name!r}: no such user", "name an existing unprivileged user, e.g. nobody") from None
    if pw.pw_uid == 0:
        raise TteError(f"--user {name!r} is root", "name an unprivileged user, or use --no-drop-privileges")
    return pw.pw_name, pw.pw_uid, pw.pw_gid


def become(uid: int, gid: int, keep: tuple[int, ...] = ()) -> None:
    """Become uid/gid with only `keep` capabilities, in this thread, for good."""
    for cap in range(last_cap() + 1):
        if cap not in keep:
            try:
                _prctl(PR_CAPBSET_DROP, cap)
            except OSError:
                pass        # EINVAL: a capability this kernel does not know
    _prctl(PR_SET_KEEPCAPS, 1 if keep else 0)
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    _capset(keep)
    _prctl(PR_SET_KEEPCAPS, 0)
    _prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)
    _prctl(PR_SET_NO_NEW_PRIVS, 1)


def status_fields(pid: str = "self") -> dict[str, str]:
    out = {}
    with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as fh:
        for line in fh:
            k, _, v = line.partition(":")
            out[k] = v.strip()
    return out


def _verify(uid: int, keep: tuple[int, ...]) -> None:
    want = sum(1 << c for c in keep)
    for tid in os.listdir("/proc/self/task"):
        try:
            st = status_fields(f"self/task/{tid}")
        except FileNotFoundError:
            continue            # a thread that has just ended
        uids = {int(x) for x in st["Uid"].split()}
        caps = {k: int(st[k], 16) for k in ("CapInh", "CapPrm", "CapEff", "CapAmb")}
        if uids != {uid} or caps["CapEff"] != want or caps["CapPrm"] != want or caps["CapInh"] or caps["CapAmb"]:
            raise PrivilegeDropFailed(f"thread {tid} still has uid {st['Uid']} / capabilities {caps} after the "
                                      "privilege drop", "report this as a bug; --no-drop-privileges keeps root")


def _probe(uid: int, gid: int, check: Callable[[], object]) -> bool:
    """Can an unprivileged process still use the maps? Ask a forked child that drops first."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            become(uid, gid)
            check()
            code = 0
        except BaseException:  # noqa: BLE001 - the child only reports yes or no
            code = 1
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status) == 0


def drop(user: str, check: Callable[[], object]) -> Dropped:
    """Drop to `user` for good. `check` uses the maps (e.g. reads the counters)."""
    if os.geteuid() != 0:
        return Dropped(pwd.getpwuid(os.geteuid()).pw_name, os.geteuid(), os.getegid(), ())
    name, uid, gid = resolve_user(user)
    keep: tuple[int, ...] = () if _probe(uid, gid, check) else (CAP_BPF,)
    try:
        become(uid, gid, keep)
    except OSError as exc:
        raise PrivilegeDropFailed(f"cannot drop privileges to {name}: {exc}",
                                  "report this as a bug; --no-drop-privileges keeps root") from None
    _verify(uid, keep)
    try:
        check()
    except Exception as exc:  # noqa: BLE001 - any failure here means the drop broke the tracer
        raise PrivilegeDropFailed(f"the BPF maps are unreadable after dropping to {name}: {exc}",
                                  "run with --no-drop-privileges") from None
    return Dropped(name, uid, gid, keep)


def maps_usable(capture: "Capture") -> Callable[[], object]:
    """What an unprivileged tracer does with its maps: read the counters (per-CPU array), the
    active closes and the table sizes (iteration). Nothing that changes them."""
    return lambda: (capture.counters(), capture.active_closes(), capture.table_usage())


def after_start(user: Optional[str], capture: "Capture") -> Optional[Dropped]:
    """Once the programs are attached: fork the /proc broker, route procfs through it, drop to
    `user` for good. None: kept root (--no-drop-privileges, or not root to begin with)."""
    from tracer.kernel import broker, procfs

    if user is None or os.geteuid() != 0:
        return None
    _, uid, gid = resolve_user(user)
    client = broker.start(uid, gid)
    procfs.route_through(client)
    try:
        return drop(user, maps_usable(capture))
    except BaseException:
        end()
        raise


def end() -> None:
    """Stop the broker, if any (at the end of a run)."""
    from tracer.kernel import procfs

    client = procfs.broker()
    procfs.route_through(None)
    if client is not None:
        client.close()
