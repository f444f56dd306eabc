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
from dataclasses import dataclass, field
from typing import IO, Any, Callable, Iterator, Optional

from tracer.kernel import localaddrs
from tracer.model.errors import RecordingInvalid
from tracer.model.record import DecodeContext, Record, RecordDecodeError, decode

MAGIC = "tcptrace-explain-recording"
VERSION = 1


class RecordingWriter:
    def __init__(self, fh: IO[str], context: DecodeContext, meta: Optional[dict[str, Any]] = None) -> None:
        self._fh = fh
        self.count = 0
        header = {"format": MAGIC, "version": VERSION, "context": context.to_json(), "meta": meta or {}}
        fh.write(json.dumps(header) + "\n")
        fh.flush()

    def write(self, raw: bytes) -> None:
        self._fh.write('{"r":"' + base64.b64encode(raw).decode() + '"}\n')
        self.count += 1

    def finish(self, end: Optional[dict[str, Any]] = None) -> None:
        if end is not None:
            self._fh.write(json.dumps({"end": end}) + "\n")
        self._fh.flush()


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
