"""The second half of a stream's work in a forked child process.

Replay (tracer/replay.py) reads, decodes and correlates a recording in this process and hands
what is settled to a child that explains and prints it, so the two halves run on two CPUs.
Messages go down a pipe, pickled, in order; the child handles each as it arrives and, at the
end, sends back its result or the exception it raised, which finish() raises here, so the CLI's
one error boundary handles both processes' errors alike (a closed stdout, a bug).

The child is the only one of the two that writes output, so what it prints is what one process
would print, in the same order. It leaves with os._exit: the parent's exit handlers and buffers
are the parent's.
"""

from __future__ import annotations

import fcntl
import os
import pickle
import signal
import sys
import traceback
from typing import IO, Any, BinaryIO, Callable, Optional, Union

from tracer.model.errors import TteError

END = "end"
_PR_SET_PDEATHSIG = 1
_PIPE_BUFFER = 1 << 20


class ChildLost(TteError):
    """The child ended without a result (it was killed): what it printed is all there is."""

    remedy = "run it again; --processes 1 does the whole replay in one process"


def shares(*streams: IO[str]) -> bool:
    """The streams write to file descriptors, which a child's writes reach (a test's captured
    sys.stdout does not have one: what a child wrote to it would be lost)."""
    for s in streams:
        try:
            s.fileno()
        except (OSError, ValueError, AttributeError):
            return False
    return True


Handler = Callable[[str, Any], Any]


class Forked:
    """The parent's end: send(), then finish() (the child's result) or abandon()."""

    def __init__(self, pid: int, down: BinaryIO, up: int) -> None:
        self.pid = pid
        self._down: Optional[BinaryIO] = down
        self._up = up
        self._over = False

    def send(self, kind: str, payload: Any) -> None:
        """One message for the child's handler. If the child is gone (it failed: a closed
        stdout, a bug), its own error is raised here."""
        assert self._down is not None
        try:
            pickle.dump((kind, payload), self._down, protocol=pickle.HIGHEST_PROTOCOL)
            # Whole messages only: a message's tail left in the buffer would keep the child
            # waiting until the next one is ready, and the two processes would take turns.
            self._down.flush()
        except BrokenPipeError:
            self._close_down()
            self._outcome()
            raise ChildLost(f"replay's explaining process (pid {self.pid}) ended early") from None

    def finish(self, payload: Any) -> Any:
        """The last message; waits for the child and returns what its handler returned for it.
        Interrupted (Ctrl-C), the caller's abandon() still stops and reaps the child."""
        self.send(END, payload)
        self._close_down()
        return self._outcome()

    def abandon(self, interrupt: bool = False) -> Optional[BaseException]:
        """This process failed: the child prints what it was sent and ends; `interrupt` (Ctrl-C
        here) stops it at once, as Ctrl-C would have stopped one process. Returns the child's
        own error, if it had one (ChildLost and Ctrl-C are not the child's errors)."""
        if self._over:
            return None
        if interrupt:
            self._interrupt()
        self._close_down()
        try:
            self._outcome()
        except (ChildLost, KeyboardInterrupt):
            return None
        except BaseException as exc:   # noqa: BLE001 - handed to the caller, which decides
            return exc
        return None

    def _interrupt(self) -> None:
        try:
            os.kill(self.pid, signal.SIGINT)
        except ProcessLookupError:
            pass

    def _close_down(self) -> None:
        down, self._down = self._down, None
        if down is not None:
            try:
                down.close()
            except BrokenPipeError:
                pass

    def _outcome(self) -> Any:
        """The child's result, once it has ended (its error raised here)."""
        self._over = True
        chunks = []
        try:
            while True:
                b = os.read(self._up, 1 << 16)
                if not b:
                    break
                chunks.append(b)
        except BaseException:
            self._interrupt()     # Ctrl-C while waiting: the child stops too
            raise
        finally:
            os.close(self._up)
            os.waitpid(self.pid, 0)
        if not chunks:
            raise ChildLost(f"replay's explaining process (pid {self.pid}) ended without an answer (was it killed?)")
        try:
            status, value = pickle.loads(b"".join(chunks))
        except Exception as exc:  # noqa: BLE001 - an answer that cannot be read is still an answer lost
            raise ChildLost(f"replay's explaining process (pid {self.pid}) ended with an answer that cannot be "
                            f"read ({exc})") from None
        if status == "error":
            raise value
        return value


def start(handler: Handler) -> Union[Forked, OSError]:
    """Fork a child that calls handler(kind, payload) for each message sent, in order; the
    value it returns for the END message is finish()'s. The OSError instead where no pipe or
    process could be made (a pids cgroup or RLIMIT_NPROC at its limit, out of descriptors):
    the caller does the work itself."""
    sys.stdout.flush()
    sys.stderr.flush()
    parent = os.getpid()
    fds: list[int] = []
    try:
        fds.extend(os.pipe())
    except OSError as exc:
        return exc
    down_r, down_w = fds
    try:
        # Room for a whole message in the pipe (a chunk's settled cases pickle to about 1 MB), so
        # this process goes on with the next chunk while the child works on the last one.
        fcntl.fcntl(down_w, fcntl.F_SETPIPE_SZ, _PIPE_BUFFER)
    except (OSError, AttributeError):
        pass    # capped by fs.pipe-max-size (or no F_SETPIPE_SZ): a smaller pipe only overlaps the two less
    # Ctrl-C is held off across the fork: a child interrupted before its try below would run
    # on in the parent's code. Each side takes it again once it is set up.
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        fds.extend(os.pipe())
        pid = os.fork()
    except OSError as exc:
        for fd in fds:
            os.close(fd)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        return exc
    up_r, up_w = fds[2], fds[3]
    if pid == 0:   # pragma: no cover - the child; its work is checked through the parent
        try:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            os.close(down_w)
            os.close(up_r)
            _orphan_dies(parent)
            _child(down_r, up_w, handler)
        finally:
            os._exit(70)      # never back into the parent's code, whatever happened
    os.close(down_r)
    os.close(up_w)
    child = Forked(pid, os.fdopen(down_w, "wb", buffering=_PIPE_BUFFER), up_r)
    try:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
    except KeyboardInterrupt:
        child.abandon(interrupt=True)
        raise
    return child


def _orphan_dies(parent: int) -> None:  # pragma: no cover - runs in the child
    """SIGTERM to this child when the parent dies (kill -9 of replay leaves no process behind)."""
    try:
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (ImportError, OSError, AttributeError):
        pass    # the child still ends on its own: the parent's end of the pipe closes
    if os.getppid() != parent:
        os._exit(0)


def _child(down: int, up: int, handler: Handler) -> None:  # pragma: no cover - runs in the child
    outcome: tuple[str, Any]
    try:
        outcome = ("ok", _serve(down, handler))
    except BaseException as exc:  # noqa: BLE001 - every error goes to the parent's boundary
        if os.environ.get("TTE_DEBUG"):
            traceback.print_exc()
        outcome = ("error", exc)
    # The work is over: a late Ctrl-C (the parent passes it on) must not cut the answer short.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BaseException:  # noqa: BLE001 - a closed stdout: the parent hears of it below
        pass
    try:
        data = pickle.dumps(outcome)
    except Exception:  # noqa: BLE001 - an error that does not pickle is still an error
        data = pickle.dumps(("error", RuntimeError(f"explaining process: {outcome[1]!r}")))
    view = memoryview(data)
    try:
        while view:
            view = view[os.write(up, view):]
    finally:
        os._exit(0)


def _serve(down: int, handler: Handler) -> Any:  # pragma: no cover - runs in the child
    with os.fdopen(down, "rb", buffering=_PIPE_BUFFER) as fh:
        while True:
            try:
                kind, payload = pickle.load(fh)
            except EOFError:
                return None   # the parent failed: it reports its own error
            result = handler(kind, payload)
            if kind == END:
                return result
