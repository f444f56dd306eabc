"""The checks a user most often fails, run before anything is built, in the order that gives
the right advice: privileges, BCC, kernel headers, then the processes named by --pid."""

from __future__ import annotations

import os
from typing import Iterable

from tracer.kernel import host, loader, procfs
from tracer.model.errors import HeadersMissing, NotPrivileged, ProcessNotFound, TteError


def check_environment() -> None:
    if os.geteuid() != 0 and not loader.has_bpf_caps():
        raise NotPrivileged()
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
