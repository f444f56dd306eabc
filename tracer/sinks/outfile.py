"""Files the tracer creates as root (recordings, ready files), opened so that nobody can aim them.

The tracer runs as root and users often point it at /tmp. A plain open(path, "w") follows a
symbolic link another user planted there and truncates whatever it points at, and silently
clobbers an earlier recording. Here a file is always created fresh (O_CREAT|O_EXCL, never
through a symbolic link: O_NOFOLLOW, mode 0600), an existing one is replaced only when asked,
by removing the old name first (so no existing inode is ever written), and appended to only if
it is a regular file of our own.
"""

from __future__ import annotations

import enum
import errno
import os
import stat
from typing import Optional

from tracer.model.errors import OutputUnwritable

MODE = 0o600
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


class Existing(str, enum.Enum):
    """What to do when the target already exists."""

    REFUSE = "refuse"
    REPLACE = "replace"     # --force
    APPEND = "append"       # --append


def _fail(path: str, option: str, what: str, remedy: Optional[str] = None) -> OutputUnwritable:
    return OutputUnwritable(f"cannot write {path} ({option}): {what}",
                            remedy or f"choose a new path in a directory you own for {option}")


def _why(exc: OSError) -> str:
    if exc.errno == errno.ELOOP:
        return "it is a symbolic link (never followed, it could point anywhere)"
    return exc.strerror or str(exc)


def check(path: str, option: str, existing: Existing = Existing.REFUSE) -> None:
    """Refuse early (before anything is built) a target that open_output would refuse."""
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise _fail(path, option, f"the directory {parent} does not exist")
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        if not os.access(parent, os.W_OK):
            raise _fail(path, option, f"the directory {parent} is not writable") from None
        return
    except OSError as exc:
        raise _fail(path, option, _why(exc)) from None
    _check_existing(path, option, st, existing)


def _check_existing(path: str, option: str, st: os.stat_result, existing: Existing) -> None:
    if stat.S_ISLNK(st.st_mode):
        raise _fail(path, option, "it is a symbolic link (never followed, it could point anywhere)",
                    f"remove the link or choose another path for {option}")
    if not stat.S_ISREG(st.st_mode):
        raise _fail(path, option, "it exists and is not a regular file")
    if existing is Existing.REFUSE:
        hint = ("add --force to overwrite it or --append to add to it" if option == "--record"
                else f"remove it first, or choose a new path for {option}")
        raise _fail(path, option, "it already exists", hint)
    if st.st_uid != os.geteuid():
        raise _fail(path, option, f"it exists and belongs to uid {st.st_uid}, not to this user")


def open_output(path: str, option: str, existing: Existing = Existing.REFUSE) -> int:
    """A file descriptor open for writing at `path`: a new file (mode 0600), or per `existing`
    the old one replaced or opened for appending. Raises OutputUnwritable with the reason."""
    if existing is Existing.APPEND:
        try:
            fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise _fail(path, option, _why(exc)) from None
        else:
            try:
                _check_existing(path, option, os.fstat(fd), existing)
            except OutputUnwritable:
                os.close(fd)
                raise
            return fd
    elif existing is Existing.REPLACE:
        try:
            _check_existing(path, option, os.lstat(path), existing)
            os.unlink(path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise _fail(path, option, f"cannot replace it: {_why(exc)}") from None
    try:
        return os.open(path, _CREATE, MODE)
    except FileExistsError:
        # Exists now (perhaps planted between a check and this open): say what it is.
        try:
            st = os.lstat(path)
        except OSError:
            raise _fail(path, option, "it appeared while it was being created") from None
        _check_existing(path, option, st, Existing.REFUSE)
        raise _fail(path, option, "it already exists") from None
    except OSError as exc:
        raise _fail(path, option, _why(exc)) from None


def write_small(path: str, option: str, text: str, existing: Existing = Existing.REFUSE) -> None:
    """A small file written whole at once (a ready file)."""
    write_fd(open_output(path, option, existing), path, option, text)


def write_fd(fd: int, path: str, option: str, text: str) -> None:
    """Write `text` whole to a descriptor from open_output() and close it (a ready file opened
    before the privilege drop, written after it)."""
    try:
        data = text.encode()
        while data:
            data = data[os.write(fd, data):]
    except OSError as exc:
        raise _fail(path, option, _why(exc)) from None
    finally:
        os.close(fd)
