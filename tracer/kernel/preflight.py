"""The checks a user most often fails, run before anything is built, in the order that gives
the right advice: privileges, BCC, kernel headers, then the processes named by --pid."""

from __future__ import annotations

import os
from typing import Iterable, Optional

from tracer.kernel import host, loader, procfs
from tracer.kernel.features import TRACEFS_CANDIDATES
from tracer.model.errors import HeadersMissing, NotPrivileged, ProcessNotFound, TteError


def unreadable_tracefs(candidates: tuple[str, ...] = TRACEFS_CANDIDATES) -> Optional[str]:
    """A tracefs this process may not read (mode 0700 root: a uid other than 0 with CAP_BPF
    still cannot read the tracepoint formats), or None."""
    for path in candidates:
        try:
            if os.path.isdir(os.path.join(path, "events")):
                return None
            os.listdir(path)
        except PermissionError:
            return path
        except OSError:
            continue
    return None


def privilege_problem() -> Optional[NotPrivileged]:
    """What this process lacks to trace, checked first so that nothing else is blamed."""
    if os.geteuid() == 0:
        return None
    if not loader.has_bpf_caps():
        return NotPrivileged()
    path = unreadable_tracefs()
    if path is not None:
        return NotPrivileged(f"{path} (tracefs) is readable by root only: the tracepoint formats cannot be read "
                             "without uid 0 or CAP_DAC_READ_SEARCH")
    return None


def check_privileges() -> None:
    problem = privilege_problem()
    if problem is not None:
        raise problem


def check_environment() -> None:
    check_privileges()
    loader.import_bcc()
    if not host.headers_present():
        raise HeadersMissing(host.headers_dir())


def check_pids(pids: Iterable[int]) -> None:
    """Every --pid names a live process, and a process rather than one of its threads."""
    for pid in pids:
        if not procfs.process_exists(pid):
            raise ProcessNotFound(pid)
        tgid = procfs.thread_group(pid)
        if tgid is not None and tgid != pid:
            raise TteError(f"{pid} is a thread of process {tgid}; --pid takes a process id",
                           f"use --pid {tgid}")
