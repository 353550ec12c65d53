"""One writer per study directory: `run`, `resume` and `export` hold an exclusive lock on
`STUDY/.lock` while they work, so a second command on the same study is refused at once with
the other process named, instead of both sampling the same configurations and both exporting.

The lock is `flock` on an open file: the kernel drops it when its process ends, however it
ends, so a lock left by a killed process (kill -9, a crash) is taken over by the next command
without anyone deleting a file. The extra worker processes of a run work under their parent's
lock."""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import time
from pathlib import Path

from search.errors import StudyError

LOCK_NAME = ".lock"


def check_free(directory):
    """`StudyError` naming the holder if a process holds the study's lock now; touches
    nothing (so a command can say "in use" before its other checks)."""
    try:
        fd = os.open(Path(directory) / LOCK_NAME, os.O_RDONLY)
    except OSError:  # no lock file (a new or older study) or unreadable: nobody to name
        return
    try:
        _take(fd, directory)
    finally:
        os.close(fd)


def _take(fd, directory):
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
        raise StudyError(f"{directory}: in use by {holder}; wait for it to finish or use another study directory") from None


@contextlib.contextmanager
def study_lock(directory, command: str):
    """Holds the study's lock for the block; `StudyError` if another process holds it."""
    path = Path(directory) / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        _take(fd, directory)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{command} (pid {os.getpid()} on {socket.gethostname()}, since "
                      f"{time.strftime('%Y-%m-%d %H:%M:%S')})".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock
