"""`tcptrace-explain doctor`: what works on this machine, what does not, and the exact fix.

Each check probes the thing itself (a file, an import, a tracepoint format, a BTF member),
never a version number.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional

from tracer.kernel import host as kernel
from tracer.kernel import loader, preflight
from tracer.kernel.loader import CAP_DAC_READ_SEARCH, CAP_SYS_PTRACE
from tracer.kernel import program
from tracer.kernel.btf import Btf, BtfError
from tracer.model.errors import TteError
from tracer.kernel.features import HOOKS, REQUIRED_HOOKS, Features, find_tracefs, read_features


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""
    required: bool = True


PRIVILEGES = "privileges"


def _privileges() -> Check:
    """First, so that a missing privilege is reported as such, never as a missing feature."""
    if os.geteuid() == 0:
        return Check(PRIVILEGES, True, "running as root")
    problem = preflight.privilege_problem()
    if problem is None:
        return Check(PRIVILEGES, True, "CAP_BPF and CAP_PERFMON, and tracefs is readable")
    return Check(PRIVILEGES, False, f"uid {os.geteuid()}: {problem.message}", problem.remedy)


def privileged(checks: list[Check]) -> bool:
    return all(c.ok for c in checks if c.name == PRIVILEGES)


def _bcc() -> Check:
    try:
        bcc = loader.import_bcc()
    except TteError as exc:
        return Check("BCC", False, exc.message, exc.remedy)
    return Check("BCC", True, f"bcc {getattr(bcc, '__version__', '?')} from {os.path.dirname(bcc.__file__)}")


def _headers() -> Check:
    d = kernel.headers_dir()
    if kernel.headers_present():
        target = os.path.realpath(d)
        note = "" if kernel.release() in target else " (another kernel's headers: fine, the programs read only tracepoint fields and BTF offsets)"
        return Check("kernel headers", True, f"{d} -> {target}{note}")
    return Check("kernel headers", False, f"{d} is missing", "sudo scripts/setup.sh")


def _owner_lookup() -> Check:
    """Accepted sockets of pre-forked servers: holders come from their close (kernel side) and,
    for a holder that keeps the socket, from /proc/<pid>/fd, which needs one of these."""
    how = "holder's close, else /proc"
    if os.geteuid() == 0:
        return Check("owners of accepted sockets", True, f"{how} (root)", required=False)
    if loader.has_caps(CAP_DAC_READ_SEARCH) or loader.has_caps(CAP_SYS_PTRACE):
        return Check("owners of accepted sockets", True, f"{how} (CAP_DAC_READ_SEARCH or CAP_SYS_PTRACE)",
                     required=False)
    return Check("owners of accepted sockets", False,
                 "only from the holder's close: /proc/<pid>/fd of other users is unreadable, so a worker "
                 "that keeps a reset socket open is shown with its candidates, not its pid",
                 "grant CAP_DAC_READ_SEARCH (or CAP_SYS_PTRACE), or run as root", required=False)


def run_checks() -> tuple[list[Check], Optional[Features]]:
    checks = [_privileges(), _bcc(), _headers(), _owner_lookup()]
    features = None
    unreadable = preflight.unreadable_tracefs()
    if unreadable is not None:
        # Not a missing tracefs: this user may not read it. The tracepoints are not checked.
        checks.append(Check("tracefs", False, f"{unreadable} is readable by root only: tracepoints not checked",
                            "run doctor as root for the full report", required=False))
        return checks + _btf_and_hz(), None
    try:
        tracefs = find_tracefs()
        features = read_features(tracefs)
        checks.append(Check("tracefs", True, tracefs))
    except TteError as exc:
        checks.append(Check("tracefs", False, exc.message, exc.remedy))
    if features is not None:
        for hook, why in HOOKS.items():
            present = features.has_hook(hook)
            req = hook in REQUIRED_HOOKS
            checks.append(Check(f"tracepoint {hook.replace('/', ':')}", present,
                                why if present else f"missing: {why} unavailable",
                                "" if present else "needs a newer kernel", required=req))
        checks.append(Check("tcp_send_reset layout", True,
                            "28-byte sockaddrs (6.10+)" if features.rst_layout_sockaddr else "ports and addresses (before 6.10)"))
        checks.append(Check("every reset traced", features.rst_layout_sockaddr,
                            "yes, including resets sent with no socket and by TIME_WAIT sockets" if features.rst_layout_sockaddr
                            else "no: resets sent with no socket or by TIME_WAIT sockets are not traced (before 6.10); "
                            "the summary shows the kernel's OutRsts beside the tool's count",
                            "" if features.rst_layout_sockaddr else "kernel 6.10 or later traces them", required=False))
        reasons = features.reset_reasons
        checks.append(Check("reset reasons", bool(reasons),
                            f"{len(reasons)} names from the kernel (tcp_send_reset reason)" if reasons
                            else "none: reasons are inferred from state and context (marked inferred:NAME)",
                            required=False))
    return checks + _btf_and_hz(), features


def _btf_and_hz() -> list[Check]:
    checks: list[Check] = []
    btf = None
    if kernel.btf_present():
        try:
            btf = Btf.load(kernel.BTF_PATH)
            program.kernel_offsets(btf)
            checks.append(Check("BTF", True, f"{kernel.BTF_PATH}: socket fields located"))
            checks.append(Check("idle time source", True,
                                "the socket's own timestamps (tcp_sock.lsndtime, icsk_ack.lrcvtime): no per-I/O hooks"))
        except (BtfError, TteError) as exc:
            checks.append(Check("BTF", False, str(exc), "report this kernel to the project"))
    else:
        checks.append(Check("BTF", False, f"{kernel.BTF_PATH} missing: socket fields cannot be located",
                            "use a kernel built with CONFIG_DEBUG_INFO_BTF=y (Debian's kernels are)"))
    ringbuf = btf is not None and btf.has_struct("bpf_ringbuf")
    checks.append(Check("ring buffer", ringbuf or btf is None,
                        "BPF ring buffer available" if ringbuf else "could not confirm BPF ring buffer (Linux 5.8+)",
                        "" if ringbuf else "needs Linux 5.8 or later"))
    hz = kernel.detect_hz()
    checks.append(Check("kernel HZ", hz is not None, f"{hz}" if hz else "unknown",
                        "" if hz else "report this kernel to the project"))
    return checks
