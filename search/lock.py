"""One writer per study directory: `run`, `resume` and `export` hold an exclusive lock on
`STUDY/.lock` while they work, so a second command on the same study is refused at once with
the other process named, instead of both sampling the same configurations and both exporting.

The lock is `flock` on an open file: the kernel drops it when the last process holding that
open file ends, however it ends, so a lock left by a killed process (kill -9, a crash) is
taken over by the next command without anyone deleting a file. A run's extra worker
processes inherit the open file (`inherited_fd`), so the study stays locked while any of
them still writes to it."""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import time
from pathlib import Path

from search.errors import StudyError

LOCK_NAME = ".lock"
_held: dict[Path, int] = {}  # study directory -> the open, locked file of this process
TRIES = 5  # another command may be probing the lock this very moment: look again briefly


def check_free(directory):
    """`StudyError` naming the holder if a process holds the study's lock now; touches
    nothing (so a command can say "in use" before its other checks). A shared lock: two
    commands probing at once do not refuse each other."""
    try:
        fd = os.open(Path(directory) / LOCK_NAME, os.O_RDONLY)
    except OSError:  # no lock file (a new or older study) or unreadable: nobody to name
        return
    try:
        _take(fd, directory, fcntl.LOCK_SH)
    finally:
        os.close(fd)


def inherited_fd(directory) -> list[int]:
    """The locked file descriptor to pass to this study's extra worker processes."""
    fd = _held.get(Path(directory).resolve())
    return [fd] if fd is not None else []


def _take(fd, directory, mode):
    for attempt in range(TRIES):
        try:
            fcntl.flock(fd, mode | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if attempt + 1 < TRIES:
                time.sleep(0.1)
    holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
    raise StudyError(f"{directory}: in use by {holder}; wait for it to finish or use another study directory")


@contextlib.contextmanager
def study_lock(directory, command: str):
    """Holds the study's lock for the block; `StudyError` if another process holds it."""
    path = Path(directory) / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        writable = True
    except PermissionError:  # another user's lock file in a shared study: flock works read-only
        try:
            fd, writable = os.open(path, os.O_RDONLY), False
        except OSError as exc:
            raise StudyError(f"{path}: cannot be opened ({exc.strerror})") from None
    except OSError as exc:
        raise StudyError(f"{path}: cannot be opened ({exc.strerror})") from None
    try:
        _take(fd, directory, fcntl.LOCK_EX)
        if writable:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{command} (pid {os.getpid()} on {socket.gethostname()}, since "
                          f"{time.strftime('%Y-%m-%d %H:%M:%S')})".encode(), 0)
        _held[Path(directory).resolve()] = fd
        yield
    finally:
        _held.pop(Path(directory).resolve(), None)
        os.close(fd)  # releases the lock (once inheriting workers are gone too)
