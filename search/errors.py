"""Errors of the search engine. `SearchError` and encoderkit's errors are user errors: the CLI
prints them as one line and exits with status 2 (`DiskFull`: 1, the machine's, not the input's)."""

import contextlib
import errno


class SearchError(Exception):
    """Root of every error the engine raises on purpose about user input."""


class SettingsError(SearchError, ValueError):
    """A setting (an argument, flag or environment variable) has a value the engine cannot
    take; the message names the setting and the value. A ValueError, as scikit-learn raises
    for an estimator's invalid parameters."""


class SpaceError(SearchError, ValueError):
    """A search space file is malformed; the message names the file, key path and value."""


class StudyError(SearchError):
    """A study directory is missing, inconsistent or belongs to another configuration."""


class OtherStudy(StudyError):
    """A study directory holds a study of other settings or data than a run asks for."""


class OtherData(StudyError):
    """The data given is not the study's (its split or content hash differs): `what` says how."""

    def __init__(self, message: str, what: str = ""):
        super().__init__(message)
        self.what = what


class FailedTrial(Exception):
    """This trial failed (bad shape, NaN loss, ...): record it as failed and go on."""


class PruneTrial(Exception):
    """The pruner stopped this trial early; each backend maps it to its own signal."""


class FatalSearchError(SearchError):
    """The search cannot go on (e.g. too many trials failed in a row). Raised by a run, it
    carries `result`, the study's leaderboard so far (each failed trial with its reason)."""

    result = None


class DiskFull(SearchError, OSError):
    """The disk holding a study filled up during a command. What was stored stays whole
    (SQLite rolls back the write it could not make; our files are written whole or not at
    all), so the message says what to run once there is space. An OSError (ENOSPC), as the
    failed write was."""

    exit_status = 1

    def __init__(self, message: str):
        super().__init__(message)
        self.errno = errno.ENOSPC


def exception_chain(exc: BaseException):
    """`exc` and the exceptions it was raised from, as a traceback shows them (`raise ... from
    None` translates on purpose and ends the chain)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)


def _full_disk_writes(exc: BaseException) -> list:
    return [e for e in exception_chain(exc) if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT)]


def is_disk_full(exc: BaseException) -> bool:
    """Whether `exc`, or an exception it was raised from, is a write to a full disk or quota:
    an OSError, or SQLite's "database or disk is full" (wrapped by SQLAlchemy and Optuna)."""
    return bool(_full_disk_writes(exc)) or any("database or disk is full" in str(e) for e in exception_chain(exc))


def _full_file(exc: BaseException):
    """The file whose write hit the full disk, where the OSError in the chain names one."""
    return next((e.filename for e in _full_disk_writes(exc) if e.filename), None)


@contextlib.contextmanager
def disk_full_named(directory, then: str):
    """A full disk inside the block becomes one `DiskFull` naming `directory`, its free space
    and `then`, the command that goes on once there is space."""
    try:
        yield
    except DiskFull:
        raise
    except Exception as exc:
        if not is_disk_full(exc):
            raise
        import os
        import shutil

        full = _full_file(exc)
        inside = full is None or os.path.abspath(full).startswith(os.path.abspath(directory) + os.sep)
        where = directory if inside else os.path.dirname(os.path.abspath(full))
        try:
            free = f"{shutil.disk_usage(where).free / 2**20:.1f} MiB free now"
        except OSError:
            free = "free space unknown"
        disk = "its disk" if inside else f"the disk of {full}"
        raise DiskFull(f"{directory}: no space left on {disk} ({free}); what the study stored is kept: "
                       f"free some space, then run `{then}`") from exc


class Interrupted(KeyboardInterrupt):
    """Ctrl-C stopped the search; `result` holds the leaderboard of what had finished."""

    def __init__(self, result):
        super().__init__("interrupted")
        self.result = result


_as_flags = False  # whether settings are named as the command line's flags (inside `settings_as_flags`)
# How a run names settings, handed to the worker processes it starts: a run from Python has its
# workers' messages (a worker's log, its error in the run's) name `max_failures=3`, not the flag.
SETTINGS_NAMED_ENV = "SEARCH_SETTINGS_NAMED"


def settings_naming_env() -> dict:
    """The environment that makes a worker process name settings as this process does."""
    return {SETTINGS_NAMED_ENV: "flags" if _as_flags else "keywords"}


@contextlib.contextmanager
def settings_as_flags(on: bool = True):
    """The command line's block: messages inside it name settings as its flags (`on`)."""
    global _as_flags
    before, _as_flags = _as_flags, on
    try:
        yield
    finally:
        _as_flags = before


def setting(name: str, value=None) -> str:
    """A setting named in a message as the user gives it: `max_failures=10` to `search.run`
    or `EncoderSearch`, `--max-failures 10` on the command line."""
    if _as_flags:
        flag = "--" + name.replace("_", "-")
        return flag if value is None else f"{flag} {value}"
    return name if value is None else f"{name}={value!r}"


def suggested_command(*words) -> str:
    """`python -m search WORDS...` as a user can paste it: each word shell-quoted, so a study
    directory or storage URL with spaces or quotes in its name still works."""
    import shlex

    return " ".join(["python -m search", *(shlex.quote(str(word)) for word in words)])
