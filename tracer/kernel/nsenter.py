"""Enter a network namespace from the current thread (setns(2) with CLONE_NEWNET).

Network-namespace membership is per thread, so a helper thread can read another namespace's
/proc/thread-self/net files while the rest of the process stays put.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import threading
from typing import Any, Iterator

CLONE_NEWNET = 0x40000000
_libc: Any = None


def setns_net(fd: int) -> None:
    setns = getattr(os, "setns", None)  # Python >= 3.12
    if setns is not None:
        setns(fd, CLONE_NEWNET)
        return
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


@contextlib.contextmanager
def entered(path: str) -> Iterator[None]:
    """The current thread inside the namespace at `path` (e.g. /run/netns/x, /proc/PID/ns/net)."""
    orig = os.open(f"/proc/self/task/{threading.get_native_id()}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        target = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            setns_net(target)
        finally:
            os.close(target)
        try:
            yield
        finally:
            setns_net(orig)
    finally:
        os.close(orig)
