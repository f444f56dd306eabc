"""Replay on several processes, with output identical to one process's.

Correlation is sequential (an incident's records, its owner and its other end come from what
came before it), so every helper reads and correlates the whole recording as the main process
does; what is split is the explaining, most of a replay's cost. Incidents are numbered in the
order they are released, which is the same in every process; each process explains its share
(`slot`), a helper sends its explanations back through a pipe, and the main process writes every
event in order.

The output never depends on a helper: the main process checks that each explanation it
receives is of the incident it expects (number, time, kind), and a helper that dies, stops, or
sends anything else is dropped and its share explained here.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import pickle
import signal
import stat
import struct
from typing import IO, Callable, Iterator, Optional, Sequence

from tracer.explain.correlate import Incident
from tracer.explain.pipeline import ExplainOne
from tracer.explain.rules import Explanation

# Of every MAIN_SLOTS + HELPER_SLOTS x helpers incidents, the main process explains MAIN_SLOTS:
# it also writes every event and unpickles what helpers send (measured: scripts/replay_bench.py).
MAIN_SLOTS = 2
HELPER_SLOTS = 3
BATCH = 64                       # explanations per message
PIPE_BYTES = 1 << 20             # a helper may run this far ahead of the main process
_FRAME = struct.Struct("<I")
_PR_SET_PDEATHSIG = 1
AUTO_MIN_BYTES = 1 << 20         # below this a replay takes well under a second: no helper


def slot(n: int, helpers: int) -> int:
    """Who explains the n-th released incident: 0 the main process, k helper k."""
    if helpers <= 0:
        return 0
    s = n % (MAIN_SLOTS + HELPER_SLOTS * helpers)
    return 0 if s < MAIN_SLOTS else 1 + (s - MAIN_SLOTS) // HELPER_SLOTS


# incident number, its time, its kind, its explanation, and that explanation's output line
# where the sink makes its lines alone (the JSON sink)
Item = tuple[int, int, str, Explanation, Optional[str]]
Render = Callable[[Explanation], str]


class HelperShare:
    """In helper `index`: explain this helper's incidents and send them; pass nothing on."""

    def __init__(self, index: int, helpers: int, out: IO[bytes], render: Optional[Render] = None,
                 batch: int = BATCH) -> None:
        self._index = index
        self._render = render
        self._helpers = helpers
        self._out = out
        self._batch = batch
        self._n = 0
        self._pending: list[Item] = []

    def explain(self, incidents: list[Incident], one: ExplainOne) -> list[tuple[Incident, Explanation]]:
        for inc in incidents:
            n = self._n
            self._n += 1
            if slot(n, self._helpers) == self._index:
                e = one(inc)
                self._pending.append((n, inc.ts_ns, inc.event, e, self._render(e) if self._render else None))
                if len(self._pending) >= self._batch:
                    self._send()
        self._send()    # the main process waits for this release's last ones
        return []

    def _send(self) -> None:
        if self._pending:
            body = pickle.dumps(self._pending, protocol=pickle.HIGHEST_PROTOCOL)
            self._out.write(_FRAME.pack(len(body)) + body)
            self._out.flush()
            self._pending = []


class Received:
    """What one helper sent, item by item; None once it ended or sent something unreadable."""

    def __init__(self, stream: IO[bytes]) -> None:
        self._stream = stream
        self._items: Iterator[Item] = iter(())

    def next(self) -> Optional[Item]:
        while True:
            item = next(self._items, None)
            if item is not None:
                return item
            head = self._stream.read(_FRAME.size)
            if len(head) < _FRAME.size:
                return None
            (size,) = _FRAME.unpack(head)
            body = self._stream.read(size)
            if len(body) < size:
                return None
            try:
                items = pickle.loads(body)
            except Exception:
                return None
            if not isinstance(items, list):
                return None
            self._items = iter(items)


class MainShare:
    """In the main process: explain its own share, take the helpers' from them, and explain
    here whatever a helper does not deliver as expected."""

    def __init__(self, received: Sequence[Optional[Received]], on_drop: Callable[[int], None] = lambda k: None) -> None:
        self._received = list(received)
        self._helpers = len(self._received)
        self._on_drop = on_drop
        self._n = 0
        self.dropped = 0                 # helpers dropped (their share explained here)
        self._lines: dict[int, str] = {}

    def lines(self) -> dict[int, str]:
        """The output lines helpers made for the explanations of the last explain() call, by
        id() of the explanation (valid while the caller holds them)."""
        return self._lines

    def explain(self, incidents: list[Incident], one: ExplainOne) -> list[tuple[Incident, Explanation]]:
        out = []
        self._lines = {}
        for inc in incidents:
            n = self._n
            self._n += 1
            k = slot(n, self._helpers)
            e = self._take(k, n, inc) if k else None
            out.append((inc, e if e is not None else one(inc)))
        return out

    def _take(self, k: int, n: int, inc: Incident) -> Optional[Explanation]:
        rec = self._received[k - 1]
        if rec is None:
            return None
        item = rec.next()
        if (item is None or not isinstance(item, tuple) or len(item) != 5 or item[:3] != (n, inc.ts_ns, inc.event)
                or not isinstance(item[3], Explanation) or not isinstance(item[4], (str, type(None)))):
            self._received[k - 1] = None
            self.dropped += 1
            self._on_drop(k)
            return None
        if item[4] is not None:
            self._lines[id(item[3])] = item[4]
        return item[3]


def _helper_main(index: int, helpers: int, w: int, run: Callable[[HelperShare], None],
                 render: Optional[Render]) -> None:
    """A forked helper's whole life: silent, gone with its parent, never back into the caller."""
    code = 1
    try:
        parent = os.getppid()
        with contextlib.suppress(Exception):
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:
            os._exit(1)
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        with os.fdopen(w, "wb", buffering=PIPE_BYTES) as out:
            run(HelperShare(index, helpers, out, render))
        code = 0
    except BaseException:
        pass
    finally:
        os._exit(code)


class _Helper:
    def __init__(self, pid: int, stream: IO[bytes]) -> None:
        self.pid = pid
        self.stream = stream
        self.reaped = False

    def stop(self) -> None:
        """End the helper (all it had to send was read, or it is being dropped) and reap it;
        once only, so a pid the kernel has given to another process is never signalled."""
        if self.reaped:
            return
        self.reaped = True
        with contextlib.suppress(OSError):
            os.kill(self.pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(self.pid, 0)
        with contextlib.suppress(OSError):
            self.stream.close()


@contextlib.contextmanager
def helpers(count: int, run: Callable[[HelperShare], None], render: Optional[Render] = None) -> Iterator[Optional[MainShare]]:
    """Fork `count` helpers, each calling run(share) on its own; yield the main process's share
    (None for no helpers). `render`: the sink's line for an explanation, made by the helper
    that explains it. Every helper is gone when this returns, whatever happened."""
    if count <= 0:
        yield None
        return
    started: list[_Helper] = []
    try:
        for k in range(1, count + 1):
            r, w = os.pipe()
            with contextlib.suppress(OSError):
                fcntl.fcntl(w, fcntl.F_SETPIPE_SZ, PIPE_BYTES)
            pid = os.fork()
            if pid == 0:
                os.close(r)
                for h in started:
                    h.stream.close()
                _helper_main(k, count, w, run, render)
            os.close(w)
            started.append(_Helper(pid, os.fdopen(r, "rb", buffering=PIPE_BYTES)))
        yield MainShare([Received(h.stream) for h in started], on_drop=lambda k: started[k - 1].stop())
    finally:
        for h in started:
            h.stop()


def auto(path: str, cpus: Optional[int] = None) -> int:
    """Helpers for a replay of `path` when --jobs is not given: one, for a regular file big
    enough that forking pays (a pipe or /dev/stdin can be read only once), on 2 CPUs or more."""
    try:
        st = os.stat(path)
    except OSError:
        return 0
    if cpus is None:
        cpus = len(os.sched_getaffinity(0))
    return 1 if cpus >= 2 and stat.S_ISREG(st.st_mode) and st.st_size >= AUTO_MIN_BYTES else 0


def usable(path: str) -> bool:
    """Helpers read the file again from its start: only a regular file allows that."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False
