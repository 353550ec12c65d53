"""Fault injection for the crash tests: `SEARCH_CRASH_AT=POINT[:N]` makes the process SIGKILL
itself the N-th time (default 1st) it passes the named point, so a test can crash a search at
an exact moment (mid-trial, between storage writes, mid-export) instead of guessing with
sleeps. Unset, `crash_point` costs one dictionary lookup."""

from __future__ import annotations

import os
import signal

POINTS = ("epoch", "trial_written", "export_staged")
_passes: dict[str, int] = {}
_also_kill: list[int] = []  # a trial child kills its parent too: the point crashes the search


def crash_search_with(pid: int):
    """In a trial's child process: a crash point kills process `pid` (the worker) first."""
    _also_kill.append(pid)


def crash_point(name: str) -> None:
    wanted = os.environ.get("SEARCH_CRASH_AT")
    if not wanted:
        return
    point, _, count = wanted.partition(":")
    if point != name:
        return
    _passes[name] = _passes.get(name, 0) + 1
    if _passes[name] >= int(count or 1):
        for pid in _also_kill:
            os.kill(pid, signal.SIGKILL)
        os.kill(os.getpid(), signal.SIGKILL)
