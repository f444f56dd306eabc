"""Standard output and error written whole, also when a signal interrupts a blocked write.

When the reader of a pipe is slower than the tracer (`| less`, a log shipper, a test that
reads at the end), a large write blocks; a signal (SIGTERM, SIGINT, SIGHUP: the ones that stop
a run) then interrupts it after part of the data went out, and CPython's buffered text streams
drop the rest of that write: measured, a 200,000-character line to sys.stderr arrived as its
first 65,536 characters followed by the next line. FdWriter writes each string with os.write
until every byte is out (os.write retries EINTR itself and returns the count of a partial
write), so every line arrives whole or, if the reader went away, as BrokenPipeError.
"""

from __future__ import annotations

import io
import os
import sys
from typing import IO

from tracer.model.errors import OutputFailed


class FdWriter(io.TextIOBase):
    def __init__(self, fd: int, encoding: str = "utf-8") -> None:
        super().__init__()
        self._fd = fd
        self._encoding = encoding

    def write(self, s: str) -> int:
        data = s.encode(self._encoding, errors="replace")
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self._fd, view):]
        except BrokenPipeError:
            raise                       # the reader went away: the CLI ends quietly
        except OSError as exc:
            what = {1: "standard output", 2: "standard error"}.get(self._fd, f"file descriptor {self._fd}")
            raise OutputFailed(f"cannot write {what}: {exc.strerror or exc}") from exc
        return len(s)

    def fileno(self) -> int:
        return self._fd

    def isatty(self) -> bool:
        return os.isatty(self._fd)

    @property  # read-only here, as on every text stream
    def encoding(self) -> str:  # type: ignore[override]
        return self._encoding

    def writable(self) -> bool:
        return True


def whole(stream: IO[str]) -> IO[str]:
    """`stream` if it is not the process's stdout or stderr, else an FdWriter on its descriptor
    (what was buffered in it is flushed first, so the order of output is kept)."""
    if stream is sys.stdout or stream is sys.stderr:
        try:
            fd = stream.fileno()
        except (OSError, ValueError, AttributeError):
            return stream
        stream.flush()
        return FdWriter(fd, getattr(stream, "encoding", None) or "utf-8")  # type: ignore[return-value]
    return stream
