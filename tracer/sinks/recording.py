"""Recordings: the raw record stream of a live run, replayable offline without root.

Format (JSON lines, so a truncated file is still readable up to its last line):
  line 1: {"format": "tcptrace-explain-recording", "version": 1, "context": {...}, "meta": {...}}
  then:   {"r": "<base64 of one struct tte_record>"}
  last:   {"end": {...}} with the kernel counters at the end of the run (optional)
The header's context holds the kernel's enum names and clock offset, so replay decodes exactly
as the live run did, on any machine.
"""

from __future__ import annotations

import base64
import json
import os
import time
from dataclasses import dataclass, field
from typing import IO, Any, Callable, Iterator, Optional, Sequence, Union

from tracer.kernel import localaddrs
from tracer.model.errors import OutputUnwritable, RecordingInvalid
from tracer.model.record import DecodeContext, Record, RecordDecodeError, decode

MAGIC = "tcptrace-explain-recording"
VERSION = 1
# The longest line a reader accepts: a record is ~700 bytes of base64, a header or end line a few
# KiB; anything longer is not a recording line (replay of /dev/zero stops here, not at OOM).
MAX_LINE = 1 << 20


FLUSH_EVERY_S = 1.0          # a record reaches the file within this long (kill -9 loses at most this)
FLUSH_BYTES = 1 << 16       # or as soon as this much is waiting


class RecordingWriter:
    """Appends recording lines to a file descriptor: every record reaches the file within
    FLUSH_EVERY_S (the live loop calls tick()), and all of them on close(). A write error (disk
    full) stops the recording, not the run: `error` says why, and nothing more is written."""

    def __init__(self, out: Union[int, IO[str]], context: DecodeContext, meta: Optional[dict[str, Any]] = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        # A file descriptor (the live run: written with os.write, closed by close()), or a text
        # stream the caller owns (tests, the lab).
        self._fd = out if isinstance(out, int) else -1
        self._fh = None if isinstance(out, int) else out
        self._clock = clock
        self._buf: list[str] = []
        self._size = 0
        self._last = clock()
        self.count = 0
        self.written = 0            # records known to be in the file
        self.error: Optional[OSError] = None
        header = {"format": MAGIC, "version": VERSION, "context": context.to_json(), "meta": meta or {}}
        self._line(json.dumps(header) + "\n")
        self.flush()

    @property
    def stopped(self) -> bool:
        return self.error is not None

    def _line(self, line: str) -> None:
        if self.error is not None:
            return
        self._buf.append(line)
        self._size += len(line)
        if self._size >= FLUSH_BYTES:
            self.flush()

    def write(self, raw: bytes) -> None:
        self._line('{"r":"' + base64.b64encode(raw).decode() + '"}\n')
        self.count += 1

    def storm(self, buckets: Sequence[dict[str, Any]]) -> None:
        """One line of reset_storm buckets (what the kernel counted instead of sending)."""
        self._line(json.dumps({"storm": list(buckets)}, separators=(",", ":")) + "\n")

    def tick(self) -> None:
        if self._buf and self._clock() - self._last >= FLUSH_EVERY_S:
            self.flush()

    def flush(self) -> None:
        self._last = self._clock()
        if not self._buf or self.error is not None:
            return
        lines, self._buf, self._size = self._buf, [], 0
        text = "".join(lines)
        if self._fh is not None:
            try:
                self._fh.write(text)
                self._fh.flush()
            except OSError as exc:
                self.error = exc
                return
            self.written += sum(1 for line in lines if line.startswith('{"r"'))
            return
        data = text.encode()
        done = 0
        try:
            while done < len(data):
                done += os.write(self._fd, data[done:])
        except OSError as exc:
            self.error = exc
            self._cut_partial(data[:done])
        whole = data[:done].count(b"\n")
        self.written += sum(1 for line in lines[:whole] if line.startswith('{"r"'))

    def _cut_partial(self, written: bytes) -> None:
        """A failed write may leave half a line: cut the file back to its last whole line, so
        a replay of a disk-full recording reads it to the end."""
        extra = len(written) - (written.rfind(b"\n") + 1)
        if extra:
            try:
                os.ftruncate(self._fd, os.lseek(self._fd, 0, os.SEEK_END) - extra)
            except OSError:
                pass  # the reader skips a partial last line anyway

    def finish(self, end: Optional[dict[str, Any]] = None) -> None:
        if end is not None:
            self._line(json.dumps({"end": end}) + "\n")
        self.flush()

    def close(self) -> None:
        """Flush what is waiting and close the file (every exit path goes through here)."""
        if self._fd < 0:
            return
        self.flush()
        try:
            os.close(self._fd)
        except OSError as exc:
            self.error = self.error or exc
        self._fd = -1


def prepare_append(fd: int, path: str) -> None:
    """Before --append adds a run to `path` (open read-write on `fd`): it must be a recording, and
    a partial last line (a crash or kill -9 mid-write) is cut off so the new header starts a line."""
    size = os.fstat(fd).st_size
    if size == 0:
        return
    first = os.pread(fd, min(size, MAX_LINE), 0).split(b"\n", 1)[0]
    try:
        ok = json.loads(first).get("format") == MAGIC
    except (ValueError, AttributeError):
        ok = False
    if not ok:
        raise OutputUnwritable(f"cannot append to {path} (--record): it is not a tcptrace-explain recording",
                               "choose another path, or --force to overwrite it")
    tail = os.pread(fd, min(size, MAX_LINE), size - min(size, MAX_LINE))
    if not tail.endswith(b"\n"):
        cut = tail.rfind(b"\n")
        os.ftruncate(fd, size - len(tail) + cut + 1 if cut >= 0 else size)


@dataclass
class Recording:
    context: DecodeContext
    meta: dict[str, Any]
    raw: list[bytes] = field(default_factory=list)
    end: Optional[dict[str, Any]] = None
    name: str = "recording"   # the file it was read from, for messages


def _lines(fh: IO[str], name: str) -> Iterator[tuple[int, dict[str, Any]]]:
    try:
        lines = list(fh)
    except UnicodeDecodeError as exc:
        raise RecordingInvalid(f"{name} is not text (not a tcptrace-explain recording)",
                               "record with: sudo tcptrace-explain --record FILE") from exc
    for n, line in enumerate(lines, 1):
        line = line.strip()
        if not line:
            continue
        try:
            yield n, json.loads(line)
        except json.JSONDecodeError as exc:
            raise RecordingInvalid(f"{name}:{n}: not a JSON line ({exc.msg})",
                                   "the file is damaged; a recording is one JSON object per line") from exc


def read(fh: IO[str], name: str = "recording") -> Recording:
    lines = _lines(fh, name)
    try:
        _, header = next(lines)
    except StopIteration:
        raise RecordingInvalid(f"{name} is empty", "record with: sudo tcptrace-explain --record FILE") from None
    if not isinstance(header, dict) or header.get("format") != MAGIC:
        raise RecordingInvalid(f"{name} is not a tcptrace-explain recording",
                               "record with: sudo tcptrace-explain --record FILE")
    if header.get("version") != VERSION:
        raise RecordingInvalid(f"{name} is recording version {header.get('version')}, this tool reads {VERSION}",
                               "replay it with the tcptrace-explain version that recorded it")
    try:
        ctx = DecodeContext.from_json(header["context"])
    except (KeyError, RecordDecodeError) as exc:
        raise RecordingInvalid(f"{name}: bad header: {exc}") from exc
    rec = Recording(context=ctx, meta=header.get("meta") or {}, name=name)
    for n, obj in lines:
        if not isinstance(obj, dict):
            raise RecordingInvalid(f"{name}:{n}: not a recording line (expected an object)")
        if "r" in obj:
            try:
                rec.raw.append(base64.b64decode(obj["r"], validate=True))
            except (ValueError, TypeError) as exc:
                raise RecordingInvalid(f"{name}:{n}: bad record encoding") from exc
        elif "end" in obj:
            rec.end = obj["end"]
    return rec


def load(path: str) -> Recording:
    try:
        with open(path, encoding="utf-8") as fh:
            return read(fh, path)
    except OSError as exc:
        raise RecordingInvalid(f"cannot read {path}: {exc.strerror}") from exc


def decoded(rec: Recording) -> tuple[list[Record], int]:
    """The recording's records, decoded with its own context, and how many could not be."""
    out: list[Record] = []
    bad = 0
    for raw in rec.raw:
        try:
            out.append(decode(raw, rec.context))
        except RecordDecodeError:
            bad += 1
    return out, bad


def netns_names(rec: Recording) -> dict[int, str]:
    """inode -> `ip netns` name of the namespaces the recording host had named (end line)."""
    end = rec.end if isinstance(rec.end, dict) else {}
    names = end.get("netns_names", {})
    out: dict[int, str] = {}
    if isinstance(names, dict):
        for k, v in names.items():
            if str(k).isdigit() and isinstance(v, str):
                out[int(k)] = v
    return out


def peer_check(rec: Recording) -> Callable[[str], Optional[bool]]:
    """Which addresses were this host's during the run (kept in the end line)."""
    end = rec.end if isinstance(rec.end, dict) else {}
    return localaddrs.from_list(end.get("local_addrs", []))
