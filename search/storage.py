"""The study's trial store: an Optuna RDB storage in DIR/study.db, shared by every backend so
the leaderboard, report, export and optuna-dashboard read one schema.

Crash safety comes from SQLite's transactions (a killed writer leaves the last committed
state) plus two ways of finding trials whose worker died while they were RUNNING: the worker's
PID on this host, and Optuna's heartbeat for workers on other hosts. Such trials are marked
failed with a reason and their configuration is queued to run again."""

from __future__ import annotations

import os
import socket
import sqlite3
import warnings

from search.errors import StudyError

STUDY_NAME = "search"
FINISHED = ("COMPLETE", "PRUNED")
HEARTBEAT_SECONDS = 15
GRACE_SECONDS = 60


def storage(study):
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.storages.RDBStorage(
            study.storage_url,
            # A generous SQLite timeout lets several worker processes share the file
            # without "database is locked" errors.
            engine_kwargs={"connect_args": {"timeout": 60}},
            heartbeat_interval=HEARTBEAT_SECONDS,
            grace_period=GRACE_SECONDS,
            heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=1),
        )


def load(study, sampler=None, pruner=None):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)  # failures are shown in the leaderboard
    return optuna.create_study(
        study_name=STUDY_NAME,
        storage=storage(study),
        direction="maximize",
        sampler=sampler,
        pruner=pruner,
        load_if_exists=True,
    )


def load_readonly(study):
    """The study's trials for commands that only read (`report`): a consistent snapshot of
    study.db taken through SQLite's read-only mode, so a read-only (archived, shared) study
    works and a study in use by a search is neither locked nor written."""
    import atexit
    import shutil
    import tempfile

    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    path = study.directory / "study.db"
    if not path.is_file():  # nothing ran yet
        return optuna.create_study(study_name=STUDY_NAME, direction="maximize")
    folder = tempfile.mkdtemp(prefix="search-report-")
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    snapshot = os.path.join(folder, "study.db")
    try:
        with sqlite3.connect(f"file:{path.resolve()}?mode=ro", uri=True) as source, sqlite3.connect(snapshot) as copy:
            source.backup(copy)
    except sqlite3.DatabaseError as exc:
        raise StudyError(f"{path}: not a readable SQLite database ({exc})") from None
    try:
        return optuna.load_study(study_name=STUDY_NAME, storage=f"sqlite:///{snapshot}")
    except KeyError:
        raise StudyError(f"{path}: holds no study named {STUDY_NAME!r}") from None


def finished_count(optuna_study) -> int:
    import optuna

    states = tuple(getattr(optuna.trial.TrialState, s) for s in FINISHED)
    return len(optuna_study.get_trials(deepcopy=False, states=states))


def worker_identity() -> dict:
    """Stored on each trial: where it ran, so a resume can tell a dead worker's trial."""
    return {
        "worker_host": socket.gethostname(),
        "worker_pid": os.getpid(),
        "device": os.environ.get("CUDA_VISIBLE_DEVICES") or "cpu",
    }


def recover(study) -> list[str]:
    """Fails the RUNNING trials whose worker is gone and queues their configs again. Returns
    one note per recovered trial."""
    import optuna

    check_integrity(study)
    optuna_study = load(study)
    host, notes = socket.gethostname(), []
    for trial in optuna_study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        attrs = trial.user_attrs
        pid = attrs.get("worker_pid")
        if attrs.get("worker_host") != host or pid is None or _alive(int(pid)):
            continue  # another host's worker: the heartbeat decides; a live one: leave it
        storage_ = optuna_study._storage
        storage_.set_trial_user_attr(trial._trial_id, "fail_reason", f"worker {pid} died during the trial")
        try:
            storage_.set_trial_state_values(trial._trial_id, state=optuna.trial.TrialState.FAIL)
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # another process got there first
        optuna_study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number})
        notes.append(f"trial {trial.number} was left running by worker {pid}: marked failed, its config queued again")
    return notes


def check_integrity(study):
    path = study.directory / "study.db"
    if not path.exists():
        return
    try:
        with sqlite3.connect(path) as db:
            verdict = db.execute("PRAGMA integrity_check").fetchone()[0]
    except sqlite3.DatabaseError as exc:
        raise StudyError(f"{path}: not a readable SQLite database ({exc})") from None
    if verdict != "ok":
        raise StudyError(f"{path}: integrity check failed ({verdict})")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
