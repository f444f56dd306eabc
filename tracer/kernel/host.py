"""Facts about the running kernel that are not tracepoints: release, HZ, BTF, headers.

HZ turns the socket's own jiffies timestamps (tcp_sock.lsndtime and friends) into seconds. It
is read from the kernel's config where published, else measured against the monotonic clock.
"""

from __future__ import annotations

import gzip
import os
import re
import time
from typing import Callable, Optional

BTF_PATH = "/sys/kernel/btf/vmlinux"
_STANDARD_HZ = (100, 250, 300, 1000)


def release() -> str:
    return os.uname().release


def release_at_least(major: int, minor: int, rel: Optional[str] = None) -> bool:
    """Whether the kernel release (e.g. "6.1.0-57-amd64") is at least major.minor. Only for
    what no tracefs format or BTF shows, such as which skips the kernel counts; a release that
    does not parse counts as older."""
    m = re.match(r"(\d+)\.(\d+)", rel if rel is not None else release())
    return m is not None and (int(m.group(1)), int(m.group(2))) >= (major, minor)


def boot_id(path: str = "/proc/sys/kernel/random/boot_id") -> str:
    """This boot of this machine: the same for every tracer on it, different on any other host
    (and after a reboot), whatever the hostnames. Empty if unreadable."""
    try:
        with open(path, encoding="ascii") as fh:
            return fh.read().strip()
    except OSError:
        return ""


def headers_dir() -> str:
    return f"/lib/modules/{release()}/build"


def headers_present() -> bool:
    return os.path.isdir(os.path.join(headers_dir(), "include"))


def btf_present() -> bool:
    return os.access(BTF_PATH, os.R_OK)


def hz_from_config_text(text: str) -> Optional[int]:
    m = re.search(r"^CONFIG_HZ=(\d+)$", text, re.M)
    return int(m.group(1)) if m else None


def _config_text() -> Optional[str]:
    try:
        with gzip.open("/proc/config.gz", "rt") as fh:
            return fh.read()
    except OSError:
        pass
    try:
        with open(f"/boot/config-{release()}", encoding="utf-8") as fh:
            return fh.read()
    except OSError:
        return None


def _timer_list_jiffies() -> Optional[int]:
    # /proc/timer_list prints "jiffies: N" for each tick device.
    try:
        with open("/proc/timer_list", encoding="utf-8") as fh:
            for line in fh:
                m = re.match(r"\s*jiffies:\s*(\d+)", line)
                if m:
                    return int(m.group(1))
    except OSError:
        return None
    return None


def measure_hz(read_jiffies: Callable[[], Optional[int]] = _timer_list_jiffies,
               interval: float = 0.4) -> Optional[int]:
    """Rate of jiffies against CLOCK_MONOTONIC, rounded to the nearest standard HZ."""
    j0, t0 = read_jiffies(), time.monotonic()
    if j0 is None:
        return None
    time.sleep(interval)
    j1, t1 = read_jiffies(), time.monotonic()
    if j1 is None or j1 <= j0:
        return None
    rate = (j1 - j0) / (t1 - t0)
    return min(_STANDARD_HZ, key=lambda hz: abs(hz - rate))


def detect_hz() -> Optional[int]:
    text = _config_text()
    hz = hz_from_config_text(text) if text else None
    return hz or measure_hz()
