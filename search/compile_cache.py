"""JAX's compilations: a persistent cache shared by every process of every search, and a clock
of the seconds spent compiling, so that a trial's cost shows them apart.

On the GPU the first epoch of a trial carried 3-9 s of compilation (DESIGN.md), and each
worker compiled the same probe programs again. With the cache on disk, a program compiled by
one worker (or an earlier search, or the trial being refit for the export) is read back by
the others. Keys are JAX's own (program, device, versions), so one directory serves any study.

`SEARCH_JAX_CACHE` names the directory (default: `$XDG_CACHE_HOME/encoderkit/jax`, i.e.
`~/.cache/encoderkit/jax`); `off` turns the cache off. Nothing happens under Keras' other
backends."""

from __future__ import annotations

import os
import sys
from pathlib import Path

CACHE_ENV = "SEARCH_JAX_CACHE"
# Every program is kept, even the many small ones that Keras' eager ops compile while a model
# is built (JAX's default keeps only those that took 1 s or more). Reading one back takes about
# a millisecond; beyond MAX_BYTES the oldest entries go (`trim`).
MIN_COMPILE_SECONDS = 0.0
MAX_BYTES = 2 * 1024**3
ENTRY_SUFFIX = "-cache"  # JAX's name for a program's file
# JAX's events for tracing, lowering and compiling (or reading back) a program.
COMPILE_EVENTS = (
    "/jax/core/compile/jaxpr_trace_duration",
    "/jax/core/compile/jaxpr_to_mlir_module_duration",
    "/jax/core/compile/backend_compile_duration",
)

_state = {"enabled": False, "seconds": 0.0}


def cache_dir() -> Path | None:
    value = os.environ.get(CACHE_ENV)
    if value and value.strip().lower() == "off":
        return None
    if value:
        return Path(value)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "encoderkit" / "jax"


def enable() -> bool:
    """Turns the cache and the clock on in this process when Keras runs on JAX (idempotent).
    Returns whether the clock runs."""
    if _state["enabled"]:
        return True
    keras = sys.modules.get("keras")
    if keras is None or keras.backend.backend() != "jax":
        return False
    import jax

    directory = cache_dir()
    if directory is not None:
        try:
            directory.mkdir(parents=True, exist_ok=True)
            _check_writable(directory)
            jax.config.update("jax_compilation_cache_dir", str(directory))
            jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_SECONDS)
            # Not JAX's own size limit: it keeps an access-time file beside each entry, and once
            # one entry lacks it (a process killed between the two writes: a kill -9, an OOM
            # kill) every later write fails with a warning, so the cache silently stops growing
            # for good (found in this machine's cache; jax-ml/jax#39880, fixed after the JAX
            # pinned here). Unlimited there, trimmed here when a process starts, by age.
            jax.config.update("jax_compilation_cache_max_size", -1)
            trim(directory)
        except OSError:  # a read-only home or cache: compile as before (JAX warned at every program)
            pass
    jax.monitoring.register_event_duration_secs_listener(_count)
    _state["enabled"] = True
    return True


def _check_writable(directory: Path):
    """Raises OSError where no file can be written in `directory` (a read-only mount: `access`
    says yes to root)."""
    import tempfile

    with tempfile.NamedTemporaryFile(dir=directory, prefix=".write-check-"):
        pass


def trim(directory: Path, max_bytes: int = MAX_BYTES) -> None:
    """Removes the oldest entries (by the time they were written, not last read) until the
    cache holds at most `max_bytes`. Other processes may trim or read the same directory at
    the same time: an entry already gone is skipped, and a program removed under a reader is
    compiled again."""
    entries = []
    for path in directory.glob(f"*{ENTRY_SUFFIX}"):
        try:
            stat = path.stat()
        except FileNotFoundError:
            continue
        entries.append((stat.st_mtime, stat.st_size, path))
    total = sum(size for _, size, _ in entries)
    for _, size, path in sorted(entries):
        if total <= max_bytes:
            break
        for stale in (path, path.with_name(path.name.removesuffix(ENTRY_SUFFIX) + "-atime")):
            stale.unlink(missing_ok=True)
        total -= size


def programs_by_name() -> dict:
    """From now on in this process: {program name: [compilations, seconds]}, filled from JAX's
    log of each compilation (what benchmarks/compiles.py and the tests count)."""
    import logging

    import jax

    programs = {}

    class Compilations(logging.Handler):
        def emit(self, record):
            words = record.getMessage().split()  # "Finished XLA compilation of jit(NAME) in S sec"
            if words[:3] == ["Finished", "XLA", "compilation"]:
                count = programs.setdefault(words[4], [0, 0.0])
                count[0] += 1
                count[1] += float(words[6])

    jax.config.update("jax_log_compiles", True)
    logging.getLogger("jax").addHandler(Compilations())
    return programs


def _count(event, seconds, **kwargs):
    if event in COMPILE_EVENTS:
        _state["seconds"] += seconds


def seconds() -> float:
    """Seconds this process has spent compiling since `enable` (0 when it is off)."""
    return _state["seconds"]


def active() -> bool:
    return _state["enabled"]
