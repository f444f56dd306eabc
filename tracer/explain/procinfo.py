"""Which runtime a process runs on (Python, Java, Go, Node, or a C client library), from what
/proc says about it: its executable, its mapped libraries, a Go binary's build info, and its
name as the kernel reports it.

Facts are read when a record of the process first arrives (ProcessFacts.note), while the
process still lives: a curl that got its reset exits before the explanation is written. Every
read goes through tracer/kernel/procfs.py. Replaying a recording has no /proc of the recorded
processes: the runtimes the live run found come back from the recording (RecordedFacts), and a
recording without them leaves the process name alone to decide (runtime_from_comm).
"""

from __future__ import annotations

import os
import re
from collections import OrderedDict
from dataclasses import dataclass
from typing import Optional

from tracer.kernel import procfs

# Runtimes whose settings tracer/explain/software.py CLIENT_SETTINGS lists.
PYTHON, JAVA, GO, NODE, LIBPQ, HIREDIS, CURL = "python", "java", "go", "node", "libpq", "hiredis", "curl"

# Executable or process names -> runtime. Language runtimes first: a Python program that maps
# libpq is a Python client (psycopg), configured in Python.
_NAME_RUNTIMES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"^(python|pypy)[0-9.]*(-dbg)?$|^uwsgi$|^gunicorn$|^celery$"), PYTHON),
    (re.compile(r"^java$|^jsvc$"), JAVA),
    (re.compile(r"^(node|nodejs|bun|deno)$"), NODE),
    (re.compile(r"^(psql|pg_dump|pgbench)$"), LIBPQ),
    (re.compile(r"^redis-(cli|benchmark)$"), HIREDIS),
    (re.compile(r"^curl$"), CURL),
)
# Mapped libraries -> runtime, in the same precedence.
_LIB_RUNTIMES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"/libpython[0-9.]+\w*\.so"), PYTHON),
    (re.compile(r"/libjvm\.so$"), JAVA),
    (re.compile(r"/libnode\.so"), NODE),
    (re.compile(r"/libpq\.so"), LIBPQ),
    (re.compile(r"/libhiredis[\w]*\.so"), HIREDIS),
    (re.compile(r"/libcurl[\w-]*\.so"), CURL),
)
_LANGUAGES = (PYTHON, JAVA, NODE, GO)


@dataclass(frozen=True)
class Facts:
    comm: str
    exe: Optional[str] = None
    libs: tuple[str, ...] = ()         # the mapped libraries tracer/explain/procinfo.py knows
    go_version: Optional[str] = None
    runtime: Optional[str] = None
    source: str = "comm"               # what decided the runtime: exe | maps | go-buildinfo | comm


def runtime_from_name(name: str) -> Optional[str]:
    for pat, rt in _NAME_RUNTIMES:
        if pat.search(name):
            return rt
    return None


def runtime_from_comm(comm: str) -> Optional[str]:
    return runtime_from_name(comm)


def detect(comm: str, exe: Optional[str], libs: list[str], go_version: Optional[str]) -> tuple[Optional[str], str]:
    """(runtime, what decided it) from a process's facts."""
    found: list[tuple[str, str]] = []
    if exe:
        rt = runtime_from_name(os.path.basename(exe).replace(" (deleted)", ""))
        if rt:
            found.append((rt, "exe"))
    for path in libs:
        for pat, rt in _LIB_RUNTIMES:
            if pat.search(path):
                found.append((rt, "maps"))
    if go_version:
        found.append((GO, "go-buildinfo"))
    for rt, src in found:
        if rt in _LANGUAGES:
            return rt, src
    if found:
        return found[0]
    rt = runtime_from_comm(comm)
    return rt, "comm"


def read_facts(pid: int, comm: str, proc: str = "/proc") -> Facts:
    """The facts of a live process. If /proc/<pid> now names another program (the pid was
    reused), only the recorded name counts."""
    live = procfs.process_comm(pid, proc)
    if live is None or live != comm:
        return Facts(comm, runtime=runtime_from_comm(comm))
    exe = procfs.exe(pid, proc)
    named = runtime_from_name(os.path.basename(exe)) if exe else None
    if named in _LANGUAGES:
        # The interpreter's own executable decides; its maps (hundreds of lines) are not read.
        return Facts(comm, exe, (), None, named, "exe")
    maps = procfs.mapped_files(pid, proc) or []
    libs = [p for p in maps if any(pat.search(p) for pat, _ in _LIB_RUNTIMES)]
    go = procfs.go_build_version(pid, proc) if exe and not libs else None
    rt, src = detect(comm, exe, libs, go)
    return Facts(comm, exe, tuple(libs), go, rt, src)


class ProcessFacts:
    """Facts per (pid, name), read once when the process is first seen; at most `size` kept
    (least recently used dropped, counted in `evicted`)."""

    def __init__(self, size: int = 1024, proc: str = "/proc") -> None:
        self.size, self.proc = size, proc
        self._facts: OrderedDict[tuple[int, str], Facts] = OrderedDict()
        self.reads = 0
        self.evicted = 0

    def note(self, pid: int, comm: str) -> None:
        if not pid:
            return
        key = (pid, comm)
        if key in self._facts:
            self._facts.move_to_end(key)
            return
        self.reads += 1
        self._facts[key] = read_facts(pid, comm, self.proc)
        if len(self._facts) > self.size:
            self._facts.popitem(last=False)
            self.evicted += 1

    def runtime(self, pid: int, comm: str) -> Optional[str]:
        f = self._facts.get((pid, comm))
        return f.runtime if f is not None else runtime_from_comm(comm)

    def get(self, pid: int, comm: str) -> Optional[Facts]:
        return self._facts.get((pid, comm))

    def table(self) -> dict[str, list[str]]:
        """What a recording keeps (its end line, "runtimes"): pid -> [name, runtime] for every
        process whose runtime is known, so replay advises as the live run did."""
        return {str(pid): [comm, f.runtime] for (pid, comm), f in self._facts.items() if f.runtime}


class RecordedFacts:
    """Replay's runtimes: the table a live run wrote at its end; a process missing from it (or a
    recording made before runtimes were recorded) is judged by its name, as before."""

    def __init__(self, table: dict[int, tuple[str, str]]) -> None:
        self._table = table

    @classmethod
    def from_end(cls, table: object) -> "RecordedFacts":
        rows: dict[int, tuple[str, str]] = {}
        if isinstance(table, dict):
            for k, v in table.items():
                if isinstance(k, str) and k.isdigit() and isinstance(v, list) and len(v) == 2 \
                        and all(isinstance(x, str) for x in v):
                    rows[int(k)] = (v[0], v[1])
        return cls(rows)

    def note(self, pid: int, comm: str) -> None:
        pass

    def runtime(self, pid: int, comm: str) -> Optional[str]:
        row = self._table.get(pid)
        return row[1] if row is not None and row[0] == comm else runtime_from_comm(comm)
