"""The merge command: recordings from several hosts -> each reset explained from both ends.

    tcptrace-explain merge client.jsonl server.jsonl [...]

Each recording is one host's (made with --record on that host, over the same time window). A
host is told by the recording's boot id (hostname in recordings that lack one) together with
the network namespaces its tracer was limited to (--netns): two tracers on one machine stand for
two hosts only if they traced different namespaces. Bad input (an unknown version, a truncated
file, two recordings of one host) is a RecordingInvalid: one line and exit status 10.
"""

from __future__ import annotations

import os
from collections import Counter
from typing import Any, Optional, Sequence

from tracer.explain import crosshost
from tracer.explain.pairing import Pairing
from tracer.explain.pipeline import explain_hosts
from tracer.explain.rules import Explanation
from tracer.explain.summary import Summary
from tracer.model.counters import Counters
from tracer.model.errors import RecordingInvalid
from tracer.model.record import Record
from tracer.sinks import recording
from tracer.sinks.base import Sink

RECORD_HINT = "record each host with: sudo tcptrace-explain --record HOST.jsonl (same time window on every host)"


def _check_whole(path: str) -> None:
    """A recording cut off mid-line (a tracer killed while writing, an unfinished copy) is
    refused: what it lacks may be the very reset a merge would prove absent."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            if size == 0:
                return  # recording.load names an empty file
            fh.seek(size - 1)
            last = fh.read(1)
    except OSError as exc:
        raise RecordingInvalid(f"cannot read {path}: {exc.strerror}") from exc
    if last != b"\n":
        raise RecordingInvalid(
            f"{path} is truncated: its last line is cut off at byte {size}",
            "copy the whole file again, or stop its tracer with Ctrl-C (or SIGTERM) so it finishes the file")


def _meta(rec: recording.Recording) -> dict[str, Any]:
    return rec.meta if isinstance(rec.meta, dict) else {}


def _options(rec: recording.Recording) -> dict[str, Any]:
    opts = _meta(rec).get("options")
    return opts if isinstance(opts, dict) else {}


def _end_counters(rec: recording.Recording) -> dict[str, Any]:
    c = rec.end.get("counters") if isinstance(rec.end, dict) else None
    return c if isinstance(c, dict) else {}


def _identity(rec: recording.Recording) -> tuple[str, tuple[int, ...]]:
    meta, opts = _meta(rec), _options(rec)
    boot = meta.get("boot_id")
    machine = f"boot {boot}" if isinstance(boot, str) and boot else f"host {rec.context.hostname}"
    netns = tuple(sorted(int(n) for n in opts.get("netns", []) if isinstance(n, int)))
    return machine, netns


def _gaps(rec: recording.Recording) -> tuple[str, ...]:
    """Why a reset missing from this recording would not prove that none was sent."""
    meta, opts = _meta(rec), _options(rec)
    out = []
    if not isinstance(rec.end, dict):
        out.append("its recording has no end line (its tracer did not stop cleanly), so whether it lost "
                   "records is unknown")
    else:
        lost = _end_counters(rec).get("lost", 0)
        if lost:
            out.append(f"its tracer lost {lost} records (ring buffer full: raise --ringbuf-pages)")
        missed = _end_counters(rec).get("missed")
        if missed:
            out.append(f"its kernel skipped {missed} events (a BPF program was already running on that CPU)")
    if opts.get("pids") or opts.get("comms"):
        out.append("its tracer traced only some processes (--pid/--comm), which can hide a reset sent "
                   "from a socket it no longer had")
    every = meta.get("traces_every_reset")
    if every is False:
        out.append(f"its kernel ({rec.context.kernel}) does not trace resets sent by TIME_WAIT sockets or "
                   "without a socket (kernels before 6.10)")
    elif every is None:
        out.append("it was made by a version that did not record whether its kernel traces every reset")
    return tuple(out)


def _window(rec: recording.Recording, records: Sequence[Record]) -> Optional[tuple[int, int]]:
    """The wall-clock span the recording covered, on its own clock: from its start and end
    lines, else (older recordings) from its first to its last record."""
    meta = _meta(rec)
    end = rec.end if isinstance(rec.end, dict) else {}
    off = rec.context.mono_to_wall_ns
    start, stop = meta.get("started_ns"), end.get("ended_ns")
    if isinstance(start, int) and isinstance(stop, int) and start <= stop:
        return start + off, stop + off
    if records:
        return min(r.wall_ns for r in records), max(r.wall_ns for r in records)
    return None


def load_hosts(paths: Sequence[str]) -> list[crosshost.Host]:
    """The recordings as hosts, checked: whole files, readable versions, one per host."""
    return [h for h, _, _ in _load(paths)]


def _load(paths: Sequence[str]) -> list[tuple[crosshost.Host, recording.Recording, int]]:
    """(host, its recording, how many of its records could not be decoded) per path."""
    if len(paths) < 2:
        raise RecordingInvalid("a merge needs the recordings of at least two hosts", RECORD_HINT)
    recs: list[tuple[str, recording.Recording]] = []
    for p in paths:
        _check_whole(p)
        recs.append((p, recording.load(p)))
    seen: dict[tuple[str, tuple[int, ...]], str] = {}
    for p, rec in recs:
        ident = _identity(rec)
        if ident in seen:
            where = f" in network namespaces {', '.join(map(str, ident[1]))}" if ident[1] else ""
            raise RecordingInvalid(
                f"{seen[ident]} and {p} are recordings of the same host ({rec.context.hostname or '?'}, "
                f"same {ident[0].split()[0]} id{where}): a merge needs one recording per host",
                "record each host with its own tracer; two tracers on one machine standing for two hosts "
                "need different --netns")
        seen[ident] = p
    names = Counter(rec.context.hostname for _, rec in recs)
    hosts = []
    for p, rec in recs:
        records, bad = recording.decoded(rec)
        label = rec.context.hostname or os.path.basename(p)
        netns = _identity(rec)[1]
        if names[rec.context.hostname] > 1:
            label += f" [netns {','.join(map(str, netns))}]" if netns else f" ({os.path.basename(p)})"
        hosts.append((crosshost.Host(label=label, path=p, records=records,
                                     mono_to_wall_ns=rec.context.mono_to_wall_ns,
                                     window=_window(rec, records), gaps=_gaps(rec),
                                     peer_is_local=recording.peer_check(rec)), rec, bad))
    return hosts


def skew_lines(hosts: Sequence[crosshost.Host], pairing: Pairing) -> list[str]:
    """One line per host about its clock against the first recording's."""
    out = [f"clock reference: {hosts[0].label} ({hosts[0].path})"] if hosts else []
    for h, sk in list(enumerate(pairing.skew))[1:]:
        if sk is None:
            out.append(f"the clock of {hosts[h].label}: offset unknown (no connection paired with an event that "
                       "dates it); pairing by sequence numbers does not need it")
            continue
        line = crosshost.skew_phrase(sk, f"{hosts[h].label} ({hosts[h].path})", "the reference")
        if not sk.consistent:
            line += "; the paired events disagree (a clock step during the recordings?)"
        out.append(line)
    return out


def merge(paths: Sequence[str], sink: Sink) -> tuple[Summary, list[tuple[int, Explanation]]]:
    loaded = _load(paths)
    hosts = [h for h, _, _ in loaded]
    recs = [rec for _, rec, _ in loaded]
    for h, _, bad in loaded:
        if bad:
            sink.notice(f"{bad} records in {h.path} could not be decoded and were skipped")
    judged, pairing = explain_hosts(hosts)
    for line in skew_lines(hosts, pairing):
        sink.notice(line)
    summary = Summary()
    paired = 0
    for _, e in judged:
        sink.event(e)
        summary.add(e)
        paired += bool(e.pairing and e.pairing.get("paired"))
    sink.notice(f"{paired} of {len(judged)} events paired with the other end's recording")
    total = {k: sum(_end_counters(rec).get(k, 0) for rec in recs) for k in ("lost", "filtered")}
    sink.summary(summary, Counters.replayed(sum(len(h.records) for h in hosts), total), 0.0)
    return summary, judged
