"""Typed errors: each says what went wrong and what to do, and carries its exit code.

Library code raises these and never prints or exits; the CLI (tracer/cli.py) is the one place
that turns them into a message and an exit status. Exit codes are documented in the README.
"""

from __future__ import annotations

from typing import Any, Optional


class TteError(Exception):
    """Base of every error a user can meet."""

    exit_code = 1
    remedy = ""

    def __init__(self, message: str, remedy: Optional[str] = None) -> None:
        super().__init__(message)
        if remedy is not None:
            self.remedy = remedy

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else self.__class__.__name__

    def __reduce__(self) -> tuple[Any, ...]:
        # Rebuilt without __init__, whose parameters differ per class: replay's explaining
        # process sends its errors back pickled (tracer/forked.py).
        return (_rebuilt, (type(self), self.args, dict(self.__dict__)))


def _rebuilt(cls: type[TteError], args: tuple[Any, ...], state: dict[str, Any]) -> TteError:
    err = cls.__new__(cls, *args)
    err.args = args
    err.__dict__.update(state)
    return err


# Capabilities for this tool alone: never for a shared interpreter (setcap on /usr/bin/python3
# would give them to every Python program on the host).
CAPABILITY_ADVICE = ("run it as root (sudo), or give the capabilities to this tool alone: a systemd unit with "
                     "AmbientCapabilities=CAP_BPF CAP_PERFMON CAP_DAC_READ_SEARCH (the last one lets a uid other than 0 "
                     "read tracefs; deploy/tcptrace-explain-exporter.service is such a unit); never setcap the "
                     "Python interpreter: every Python program would get them")


class NotPrivileged(TteError):
    exit_code = 3

    def __init__(self, message: str = "loading BPF programs needs root, or CAP_BPF and CAP_PERFMON") -> None:
        super().__init__(message, CAPABILITY_ADVICE)


class BccMissing(TteError):
    exit_code = 4

    def __init__(self, detail: str = "") -> None:
        super().__init__(
            "the BCC Python module cannot be imported" + (f" ({detail})" if detail else ""),
            "install Debian's BCC and use the project's venv: sudo scripts/setup.sh "
            "(never 'pip install bcc': that PyPI name is an unrelated project)",
        )


class HeadersMissing(TteError):
    exit_code = 5

    def __init__(self, path: str) -> None:
        super().__init__(
            f"kernel headers for BCC are missing: {path} does not exist",
            "sudo scripts/setup.sh (installs linux-headers and links them for this kernel)",
        )


class TracefsMissing(TteError):
    exit_code = 6

    def __init__(self) -> None:
        super().__init__(
            "tracefs is not mounted (no /sys/kernel/tracing/events)",
            "sudo mount -t tracefs nodev /sys/kernel/tracing",
        )


class KernelUnsupported(TteError):
    exit_code = 7


class ProgramLoadFailed(TteError):
    exit_code = 8


class ProcessNotFound(TteError):
    exit_code = 9

    def __init__(self, pid: int) -> None:
        super().__init__(
            f"no process with pid {pid}",
            "check the pid with 'pgrep -a <name>' (use the host's pid, not a container's)",
        )


class RecordingInvalid(TteError):
    exit_code = 10


class RecordsLost(TteError):
    exit_code = 11


class InvalidOption(TteError):
    """A value the command line accepted as text but that names nothing real (a namespace, a
    cgroup): a usage error, with the same exit status as click's own."""

    exit_code = 2


class OutputUnwritable(TteError):
    """A file the tracer was asked to create (--record, --ready-file) cannot be: it exists, is a
    symbolic link, or its directory is missing or not writable. Checked before anything is built."""

    exit_code = 12


class RecordingStopped(TteError):
    """Writing the recording failed during the run (disk full, I/O error): events were still
    explained and printed to the end; the recording holds every whole line written before."""

    exit_code = 13


class OutputFailed(TteError):
    """Standard output or error could not be written (disk full, I/O error): what was printed
    before is whole; nothing more can be shown. (A reader that went away, as `| head` does, is
    not this: it ends quietly.)"""

    exit_code = 14
    remedy = "write the output where there is room (free space on its file system, or redirect it elsewhere)"


class BadWebConfig(TteError):
    """--web.config.file cannot be used (a usage error: nothing was started)."""

    exit_code = 2
