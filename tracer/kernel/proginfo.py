"""What the kernel counts per BPF program: events it did not run the program for.

A tracing program is skipped, and the skip counted in its `recursion_misses`, when it would
run inside a BPF program already running on that CPU: a softirq that interrupts a program on
its way out of a hard interrupt, for example. A raw tracepoint is skipped only when it would
nest in itself (counted since Linux 5.12); a classic tracepoint is skipped when any kprobe or
tracepoint program of any tool is running on that CPU (counted since Linux 6.7, "bpf: Count
missed stats in trace_call_bpf"; before, such skips happen uncounted). These are events
lost before any record could be written: a reset that was never seen, or a state change that
left the socket table without an entry.

The counter is read with bpf(BPF_OBJ_GET_INFO_BY_FD) on each program's descriptor, which an
unprivileged process may do on descriptors it holds (the statistics are filled in before the
kernel's capability check blanks the instructions).
"""

from __future__ import annotations

import ctypes
import platform
import sys
from typing import Optional

BPF_OBJ_GET_INFO_BY_FD = 15
# struct bpf_prog_info (include/uapi/linux/bpf.h): id at 4, recursion_misses at 208 (Linux
# 5.12); the kernel reports how much of the struct it filled.
ID_AT = 4
MISSES_AT = 208
INFO_LEN = 216
# bpf(2)'s number by the kernel's machine, for a userland of that word size (a 32-bit userland
# on a 64-bit kernel has other numbers: no counter there, rather than a wrong syscall).
SYS_BPF = {"x86_64": 321, "aarch64": 280, "ppc64le": 361, "s390x": 351, "riscv64": 280}
SYS_BPF_32 = {"armv7l": 386, "i686": 357}


class _Attr(ctypes.Structure):
    _fields_ = [("bpf_fd", ctypes.c_uint32), ("info_len", ctypes.c_uint32), ("info", ctypes.c_uint64)]


_libc: Optional[ctypes.CDLL] = None


def _syscall() -> Optional[ctypes.CDLL]:
    global _libc
    if _libc is None:
        try:
            _libc = ctypes.CDLL(None, use_errno=True)
        except OSError:
            return None
    return _libc


def info(fd: int) -> Optional[tuple[int, Optional[int]]]:
    """The program's id and recursion_misses (None before 5.12); None if the kernel refused."""
    nr = (SYS_BPF if ctypes.sizeof(ctypes.c_void_p) == 8 else SYS_BPF_32).get(platform.machine())
    libc = _syscall()
    if nr is None or libc is None:
        return None
    buf = ctypes.create_string_buffer(INFO_LEN)
    attr = _Attr(bpf_fd=fd, info_len=INFO_LEN, info=ctypes.addressof(buf))
    if libc.syscall(ctypes.c_long(nr), ctypes.c_int(BPF_OBJ_GET_INFO_BY_FD), ctypes.byref(attr),
                    ctypes.c_uint(ctypes.sizeof(attr))) != 0:
        return None
    prog_id = int.from_bytes(buf.raw[ID_AT:ID_AT + 4], sys.byteorder)
    if attr.info_len < MISSES_AT + 8:
        return prog_id, None      # a kernel before 5.12: no such counter
    return prog_id, int.from_bytes(buf.raw[MISSES_AT:MISSES_AT + 8], sys.byteorder)


def misses(fd: int) -> Optional[int]:
    """The program's recursion_misses, or None where the kernel or this machine cannot say."""
    got = info(fd)
    return None if got is None else got[1]
