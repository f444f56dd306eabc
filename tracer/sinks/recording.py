"""Recordings: the raw record stream of a live run, replayable offline without root.

Format (JSON lines, so a truncated file is still readable up to its last line):
  line 1: {"format": "tcptrace-explain-recording", "version": 1, "context": {...}, "meta": {...}}
  then:   {"r": "<base64 of one struct tte_record>"}
  and:    {"storm": [{bucket}, ...]} once a second during a reset storm: what the kernel counted
          instead of sending one by one (tracer/explain/storm.py, StormCount.to_record)
  last:   {"end": {...}} with the kernel counters at the end of the run (optional)
A run added with --append starts with its own header line.
The header's context holds the kernel's enum names and clock offset, so replay decodes exactly
as the live run did, on any machine.
"""

from __future__ import annotations

import base64
import io
import json
import os
import time
from dataclasses import dataclass, field
from typing import IO, Any, Callable, Iterator, Optional, Sequence, Union

from tracer.explain.storm import StormCount
from tracer.kernel import localaddrs
from tracer.model.errors import OutputUnwritable, RecordingInvalid
from tracer.model.history import History
from tracer.model.netnames import NameHistory
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

    def storm(self, buckets: Sequence[dict[str, Any]]) -> None:  # StormCount.to_record() each
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


_NOT_A_RECORDING = "record with: sudo tcptrace-explain --record FILE"
_RECORD_OPEN = b'{"r":"'
_RECORD_CLOSE = b'"}\n'
_RECORD_BODY = slice(len(_RECORD_OPEN), -len(_RECORD_CLOSE))
_MAX_COUNT = 1 << 63


def _as_written(line: bytes) -> Optional[bytes]:
    """The record of a line exactly as the writer writes it, without the JSON parser; None for
    any other line. Only a strict base64 body qualifies: it then holds nothing JSON would
    change, so the JSON parser would give the same string."""
    if not (line.startswith(_RECORD_OPEN) and line.endswith(_RECORD_CLOSE)):
        return None
    try:
        return base64.b64decode(line[_RECORD_BODY], validate=True)
    except ValueError:
        return None


class Reader:
    """A recording read as a stream, in constant memory: the header at once, then records one
    by one (iter_records), end lines merged as they come. Every malformed line is a
    RecordingInvalid naming its line; a partial last line (a crash, kill -9 or a full disk
    mid-write) ends the stream and is counted in `ignored_bytes`."""

    def __init__(self, fh: IO[bytes], name: str = "recording") -> None:
        self._fh = fh
        self.name = name
        self.line_no = 0
        self.count = 0              # record lines read
        self.bad = 0                # of those, records that could not be decoded
        self.ignored_bytes = 0      # a partial last line
        self.end: Optional[dict[str, Any]] = None
        self.storms: int = 0        # storm lines read
        # Called with each storm line's buckets as it is read (replay shows them in order).
        self.on_storm: Optional[Callable[[list[StormCount]], None]] = None
        first = self._next()
        if first is None:
            raise RecordingInvalid(f"{name} is empty", _NOT_A_RECORDING)
        self.context, self.meta = self._header(first)

    def _where(self) -> str:
        return f"{self.name}:{self.line_no}"

    def _next(self) -> Optional[dict[str, Any]]:
        """The next non-empty line as an object, or None at the end."""
        while True:
            line = self._line()
            if line is None:
                return None
            obj = self._parse(line)
            if obj is not None or self.ignored_bytes:
                return obj

    def _line(self) -> Optional[bytes]:
        try:
            line = self._fh.readline(MAX_LINE + 1)
        except OSError as exc:
            raise RecordingInvalid(f"cannot read {self.name}: {exc.strerror or exc}") from exc
        if not line:
            return None
        self.line_no += 1
        if len(line) > MAX_LINE:
            raise RecordingInvalid(f"{self._where()}: a line longer than {MAX_LINE} bytes "
                                   "(not a recording line)", _NOT_A_RECORDING)
        return line

    def _at_end(self) -> bool:
        try:
            return self._fh.readline(1) == b""
        except OSError as exc:
            raise RecordingInvalid(f"cannot read {self.name}: {exc.strerror or exc}") from exc

    def _parse(self, line: bytes) -> Optional[dict[str, Any]]:
        """One line as an object; None for a blank line or a partial last one (ignored_bytes)."""
        whole = line.endswith(b"\n")
        line = line.strip()
        if not line:
            return None
        try:
            obj = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            if not whole and self._at_end():
                self.ignored_bytes = len(line)
                return None
            why = exc.msg if isinstance(exc, json.JSONDecodeError) else (
                "not text" if isinstance(exc, UnicodeDecodeError) else "nested too deeply"
                if isinstance(exc, RecursionError) else str(exc))
            raise RecordingInvalid(f"{self._where()}: not a JSON line ({why})",
                                   "the file is damaged; a recording is one JSON object per line") from None
        if not isinstance(obj, dict):
            raise RecordingInvalid(f"{self._where()}: not a recording line (expected an object)")
        return obj

    def _header(self, obj: dict[str, Any]) -> tuple[DecodeContext, dict[str, Any]]:
        if obj.get("format") != MAGIC:
            raise RecordingInvalid(f"{self.name} is not a tcptrace-explain recording", _NOT_A_RECORDING)
        if obj.get("version") != VERSION:
            raise RecordingInvalid(f"{self.name} is recording version {obj.get('version')!r:.40}, this tool "
                                   f"reads {VERSION}", "replay it with the tcptrace-explain version that recorded it")
        meta = obj.get("meta") or {}
        if not isinstance(meta, dict) or not isinstance(obj.get("context"), dict):
            raise RecordingInvalid(f"{self._where()}: bad header: context and meta must be objects")
        try:
            return DecodeContext.from_json(obj["context"]), meta
        except RecordDecodeError as exc:
            raise RecordingInvalid(f"{self._where()}: bad header: {exc}") from None

    def iter_raw(self) -> Iterator[tuple[bytes, DecodeContext]]:
        """Each record's bytes with the context to decode them (a later header, from --append,
        starts a run with its own context)."""
        while True:
            line = self._line()
            if line is None:
                return
            raw = _as_written(line)
            if raw is not None:
                self.count += 1
                yield raw, self.context
                continue
            obj = self._parse(line)
            if obj is None:
                if self.ignored_bytes:
                    return
                continue
            if "r" in obj:
                try:
                    raw = base64.b64decode(obj["r"], validate=True)
                except (ValueError, TypeError):
                    raise RecordingInvalid(f"{self._where()}: bad record encoding") from None
                self.count += 1
                yield raw, self.context
            elif "storm" in obj:
                buckets = obj["storm"]
                try:
                    if not isinstance(buckets, list):
                        raise ValueError("expected a list of buckets")
                    parsed = [StormCount.from_record(b) for b in buckets]
                except ValueError as exc:
                    raise RecordingInvalid(f"{self._where()}: bad storm line ({exc})") from None
                self.storms += 1
                if self.on_storm is not None:
                    self.on_storm(parsed)
            elif "end" in obj:
                self._add_end(obj["end"])
            elif "format" in obj:
                self.context, _ = self._header(obj)

    def iter_records(self) -> Iterator[Record]:
        for raw, ctx in self.iter_raw():
            try:
                yield decode(raw, ctx)
            except RecordDecodeError:
                self.bad += 1

    def _add_end(self, end: Any) -> None:
        where = self._where()
        if not isinstance(end, dict):
            raise RecordingInvalid(f"{where}: bad end line (expected an object)")
        counters = end.get("counters", {})
        addrs = end.get("local_addrs", [])
        names = end.get("netns_names", {})
        if not (isinstance(counters, dict) and isinstance(addrs, list) and isinstance(names, dict)
                and all(isinstance(a, str) for a in addrs)
                and all(isinstance(k, str) and isinstance(v, str) for k, v in names.items())):
            raise RecordingInvalid(f"{where}: bad end line (counters, local_addrs or netns_names of the wrong type)")
        try:
            history = NameHistory.from_json(end.get("netns_history"), names)
            for flat, by_time in _PID_TABLES:
                if flat in end or by_time in end:
                    History.entries_from_json(end.get(by_time), end.get(flat), _PID_VALUES[flat], by_time)
        except ValueError as exc:
            raise RecordingInvalid(f"{where}: bad end line ({exc})") from None
        for k in ("lost", "filtered", "records", "missed"):
            v = counters.get(k, 0)
            if k == "missed" and v is None:
                continue        # a kernel without the counter
            if type(v) is not int or not 0 <= v < _MAX_COUNT:
                raise RecordingInvalid(f"{where}: bad end line (counter {k} is not a count)")
        if self.end is None:
            self.end = {**end, "netns_history": history.to_json()}
            return
        # Several runs in one file (--append): their counts add up, addresses and names merge.
        prev = self.end
        old = prev.get("counters", {})
        merged = dict(counters)
        for k in ("lost", "filtered", "records"):
            merged[k] = old.get(k, 0) + counters.get(k, 0)
        if old.get("missed") is None or counters.get("missed") is None:
            merged["missed"] = None
        else:
            merged["missed"] = old["missed"] + counters["missed"]
        self.end = {**self.end, **end, "counters": merged,
                    "local_addrs": sorted(set(self.end.get("local_addrs", [])) | set(addrs)),
                    "netns_names": {**self.end.get("netns_names", {}), **names},
                    "netns_history": NameHistory.from_json(self.end["netns_history"]).merged(history).to_json()}
        # Owners' cgroups and uids: both runs' histories (a pid of the first run may be reused
        # in the second).
        for flat, by_time in _PID_TABLES:
            mine, theirs = _pid_table(prev, flat, by_time), _pid_table(end, flat, by_time)
            if mine is not None and theirs is not None:
                both = History(mine.merged_entries(theirs))
                self.end[by_time] = both.to_json()
                self.end[flat] = {str(k): v for k, v in sorted(both.last().items())}


def tail_end(path: str) -> Optional[dict[str, Any]]:
    """The end line of a recording file, read from its tail without reading the rest (what a
    replay's --netns needs before it starts); None if there is none or it is unreadable."""
    try:
        with open(path, "rb") as fh:
            size = fh.seek(0, os.SEEK_END)
            fh.seek(max(0, size - MAX_LINE))
            lines = fh.read(MAX_LINE).split(b"\n")
    except OSError:
        return None
    for line in reversed(lines):
        if line.startswith(b'{"end"'):
            try:
                end = json.loads(line).get("end")
            except (ValueError, RecursionError):
                return None
            return end if isinstance(end, dict) else None
    return None


@dataclass
class Recording:
    """A whole recording in memory (merge, tests); replay streams through Reader instead."""

    context: DecodeContext
    meta: dict[str, Any]
    raw: list[bytes] = field(default_factory=list)
    end: Optional[dict[str, Any]] = None
    name: str = "recording"   # the file it was read from, for messages
    # (first index in raw, context) of each run after the first (--append)
    later: list[tuple[int, DecodeContext]] = field(default_factory=list)
    ignored_bytes: int = 0


def read_all(reader: Reader) -> Recording:
    rec = Recording(context=reader.context, meta=reader.meta, name=reader.name)
    ctx = reader.context
    for raw, c in reader.iter_raw():
        if c is not ctx:
            rec.later.append((len(rec.raw), c))
            ctx = c
        rec.raw.append(raw)
    rec.end, rec.ignored_bytes = reader.end, reader.ignored_bytes
    return rec


def read(fh: Union[IO[str], IO[bytes]], name: str = "recording") -> Recording:
    if isinstance(fh, io.TextIOBase):
        fh = io.BytesIO(fh.read().encode())
    return read_all(Reader(fh, name))  # type: ignore[arg-type]


def open_reader(path: str) -> tuple[Reader, IO[bytes]]:
    try:
        fh = open(path, "rb")
    except OSError as exc:
        raise RecordingInvalid(f"cannot read {path}: {exc.strerror}") from exc
    try:
        return Reader(fh, path), fh
    except BaseException:
        fh.close()
        raise


def load(path: str) -> Recording:
    reader, fh = open_reader(path)
    with fh:
        try:
            return read_all(reader)
        except OSError as exc:
            raise RecordingInvalid(f"cannot read {path}: {exc.strerror}") from exc


def decoded(rec: Recording) -> tuple[list[Record], int]:
    """The recording's records, decoded with their run's context, and how many could not be."""
    out: list[Record] = []
    bad = 0
    bounds = [(0, rec.context)] + rec.later
    for n, (start, ctx) in enumerate(bounds):
        stop = bounds[n + 1][0] if n + 1 < len(bounds) else len(rec.raw)
        for raw in rec.raw[start:stop]:
            try:
                out.append(decode(raw, ctx))
            except RecordDecodeError:
                bad += 1
    return out, bad


EndSource = Union[Recording, Optional[dict[str, Any]]]


def end_of(src: EndSource) -> dict[str, Any]:
    """A recording's end line (a Recording, or the dict tail_end read), {} if it has none."""
    end = src.end if isinstance(src, Recording) else src
    return end if isinstance(end, dict) else {}


_PID_TABLES = (("cgroups", "cgroup_history"), ("uids", "uid_history"))   # (flat, by time)
_PID_VALUES: dict[str, Callable[[Any], bool]] = {"cgroups": lambda v: isinstance(v, str),
                                                 "uids": lambda v: type(v) is int}


def _pid_table(end: dict[str, Any], flat: str, by_time: str) -> Optional[History[Any]]:
    if not isinstance(end.get(by_time), dict) and not isinstance(end.get(flat), dict):
        return None
    try:
        return History(History.entries_from_json(end.get(by_time), end.get(flat), _PID_VALUES[flat], by_time))
    except ValueError:
        return None


def pid_histories(end: dict[str, Any]) -> tuple[Optional[History[str]], Optional[History[int]]]:
    """The cgroup and uid of each owner pid by time (end line "cgroup_history"/"uid_history";
    a recording made before they were kept: its "cgroups"/"uids", each for the whole run).
    None for a table the recording does not have, or one not of the recorded shape."""
    return _pid_table(end, "cgroups", "cgroup_history"), _pid_table(end, "uids", "uid_history")


def netns_history(rec: EndSource) -> NameHistory:
    """Which name each namespace inode had when, during the run (end line; a recording made
    before the history was kept: its netns_names, each for the whole run)."""
    end = end_of(rec)
    try:
        return NameHistory.from_json(end.get("netns_history"), end.get("netns_names"))
    except ValueError:
        return NameHistory()


def peer_check(rec: EndSource) -> Callable[[str], Optional[bool]]:
    """Which addresses were this host's during the run (kept in the end line)."""
    addrs = end_of(rec).get("local_addrs", [])
    return localaddrs.from_list(a for a in addrs if isinstance(a, str)) if isinstance(addrs, list) else localaddrs.from_list([])
