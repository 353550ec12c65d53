"""Fault injection for the crash tests (contributors only): `SEARCH_CRASH_AT=POINT[:N][:self]`
makes the search SIGKILL itself the N-th time (default 1st) a process passes the named point,
so a test can crash a search at an exact moment (mid-trial, between storage writes,
mid-export) instead of guessing with sleeps. In a trial's child process the point kills the
worker too (the whole search crashes, as with kill -9), unless `:self` asks to kill only the
process that passes it.

The hook stays out of a user's way: it is read once, when a command or `search.run` starts
(`check_environment`: a malformed value is a one-line error before any work), and taken out
of the environment then, so nothing the search starts inherits it by accident; the processes
that need it (extra Optuna workers, trial child processes) are handed it explicitly
(`hook_env`, `armed`/`arm`). It says on stderr what it kills and why before it kills."""

from __future__ import annotations

import os
import signal
import sys

from search.errors import SettingsError

VARIABLE = "SEARCH_CRASH_AT"
POINTS = ("epoch", "trial_written", "export_staged")
_armed: str | None = None  # the hook's value, once taken out of the environment
_passes: dict[str, int] = {}
_also_kill: list[int] = []  # in a trial child: the worker, killed with it


def crash_search_with(pid: int):
    """In a trial's child process: a crash point kills process `pid` (the worker) first."""
    _also_kill.append(pid)


def parse(value: str) -> tuple[str, int, bool]:
    """(point, count, only this process) from `POINT[:N][:self]`."""
    parts = value.split(":")
    only_self = parts[-1] == "self"
    if only_self:
        parts = parts[:-1]
    point, count = parts[0], parts[1] if len(parts) > 1 else "1"
    if point not in POINTS or len(parts) > 2 or not count.isdigit() or int(count) < 1:
        raise SettingsError(f"{VARIABLE}={value!r}: expected POINT[:N][:self] with POINT one of "
                            f"{', '.join(POINTS)} and N a positive count (a test hook; unset it)")
    return point, int(count), only_self


# Seconds of training a trial must have left to take intermediate scores (search/objective.py).
MIN_SAVING_ENV = "SEARCH_CHECKPOINT_MIN_SAVING"


def check_environment():
    """The environment settings a search reads in every trial, checked once up front: a
    malformed one is a one-line error before any work, not a failure of every trial."""
    value = os.environ.pop(VARIABLE, None)
    if value:
        arm(value)
    saving = os.environ.get(MIN_SAVING_ENV)
    if saving is not None:
        try:
            valid = float(saving) >= 0
        except ValueError:
            valid = False
        if not valid:
            raise SettingsError(f"{MIN_SAVING_ENV}={saving!r}: must be a number of seconds, 0 or more")
    from search.storage import heartbeat_seconds

    heartbeat_seconds()  # raises on a malformed SEARCH_HEARTBEAT_SECONDS


def arm(value: str | None):
    """Sets the hook in this process (a trial child is handed its parent's); None disarms."""
    global _armed
    if value:
        parse(value)
    _armed = value or None


def armed() -> str | None:
    return _armed


def hook_env() -> dict:
    """The environment a process that needs the hook (an extra worker) is started with."""
    return {VARIABLE: _armed} if _armed else {}


def crash_point(name: str) -> None:
    if _armed is None:
        return
    point, count, only_self = parse(_armed)
    if point != name:
        return
    _passes[name] = _passes.get(name, 0) + 1
    if _passes[name] >= count:
        print(f"{VARIABLE}={_armed}: test hook kills process {os.getpid()} at {name!r}", file=sys.stderr, flush=True)
        for pid in () if only_self else _also_kill:
            os.kill(pid, signal.SIGKILL)
        if _also_kill:  # a trial child leads a process group: take its workers along
            os.killpg(0, signal.SIGKILL)
        os.kill(os.getpid(), signal.SIGKILL)
