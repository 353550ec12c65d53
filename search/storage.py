"""The study's trial store, shared by every backend so the leaderboard, report, export and
optuna-dashboard read one schema: by default an Optuna RDB storage in DIR/study.db (SQLite);
with `storage=` a database server (`postgresql+psycopg://user@host/db`, MySQL, ...) or
Optuna's journal file on a shared filesystem (`journal:PATH`), which workers on other machines
join (`python -m search join URL --study NAME`).

A URL's password is never stored or printed: the manifest keeps the URL without it, this
process remembers it, extra workers get it through their environment, and other commands
take it from $SEARCH_STORAGE_PASSWORD (or PostgreSQL's own $PGPASSWORD and ~/.pgpass).

Crash safety comes from the database's transactions (a killed writer leaves the last
committed state) plus two ways of finding trials whose worker died while they were RUNNING:
the worker's PID on this host, and Optuna's heartbeat (RDB storages) for workers on other
hosts. Such trials are marked failed with a reason and their configuration is queued again."""

from __future__ import annotations

import os
import socket
import sqlite3
import warnings

from search.errors import SettingsError, StudyError, suggested_command

STUDY_NAME = "search"  # in a study's own SQLite file; in a shared storage, the study's name
PASSWORD_ENV = "SEARCH_STORAGE_PASSWORD"
JOURNAL = "journal:"
METADATA = "search_metadata"  # the study's user attribute holding manifest and space for `join`
BASELINES = "search_baselines"  # the baselines' CV scores, for a joiner's leaderboard
_PASSWORDS: dict = {}  # public URL -> password, for this process only
FINISHED = ("COMPLETE", "PRUNED")
SURPLUS = "surplus"  # attribute of a trial begun when the requested count was already reached (not run)
# Optuna's heartbeat in a database storage: a running trial beats every HEARTBEAT_SECONDS and is
# failed (its config queued again) after GRACE_BEATS beats of silence. `SEARCH_HEARTBEAT_SECONDS`
# sets the beat (every machine of a shared study should set the same), e.g. for a faster
# takeover of dead workers; checked when a command starts (faults.check_environment).
HEARTBEAT_ENV = "SEARCH_HEARTBEAT_SECONDS"
HEARTBEAT_SECONDS = 15
GRACE_BEATS = 4


def heartbeat_seconds() -> int:
    value = os.environ.get(HEARTBEAT_ENV, "").strip()
    if not value:
        return HEARTBEAT_SECONDS
    if not value.isdigit() or int(value) < 1:
        raise SettingsError(f"{HEARTBEAT_ENV}={value!r}: must be a whole number of seconds, 1 or more")
    return int(value)


def public_url(url: str) -> str:
    """A storage URL as the manifest and messages show it: checked, without its password
    (remembered for this process). `postgresql://` means psycopg 3 (the `postgres` extra, in `make setup`)."""
    if url.startswith(JOURNAL):
        path = url[len(JOURNAL):]
        if not path:
            raise SettingsError(f"storage: {url!r} names no file (journal:PATH)")
        folder = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(folder):
            raise SettingsError(f"storage: {url}: folder {folder} does not exist")
        _check_journal_file(url, path)
        return JOURNAL + os.path.abspath(path)
    from sqlalchemy.engine import URL, make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except ArgumentError:
        raise SettingsError(f"storage: not a database URL (postgresql://USER@HOST/DB, sqlite:///PATH) "
                            f"nor journal:PATH, got {_masked(url)!r}") from None
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    public = URL.create(parsed.drivername, parsed.username, None, parsed.host, parsed.port, parsed.database,
                        parsed.query).render_as_string()  # (URL.set takes password=None as "unchanged")
    if parsed.password is not None:
        _PASSWORDS[public] = parsed.password
    return public


def _check_journal_file(url: str, path: str):
    """An existing PATH must be an Optuna journal (a JSON operation per line): Optuna would
    append to any file, such as a user's notes, and then fail to read it back."""
    if os.path.isdir(path):
        raise SettingsError(f"storage: {url}: a folder, not a journal file (journal:FOLDER/NAME.journal)")
    if not os.path.isfile(path) or os.path.getsize(path) == 0:
        return  # Optuna starts it
    import json

    with open(path, "rb") as file:
        first = file.readline(1 << 20)
    try:
        entry = json.loads(first)
    except ValueError:  # also not UTF-8
        entry = None
    if not isinstance(entry, dict) or "op_code" not in entry:
        raise SettingsError(f"storage: {url}: not an Optuna journal file (give a new file name, or the journal "
                            "of a study)")


def has_password(url) -> bool:
    """Whether a storage URL carries a password (USER:PASSWORD@HOST)."""
    rest = str(url or "").partition("://")[2]
    return "@" in rest and ":" in rest.rpartition("@")[0]


def _masked(url: str) -> str:
    import re

    return re.sub(r"(//[^:/@]*:)[^@]*@", r"\1***@", url)


def _with_password(url: str) -> str:
    password = _PASSWORDS.get(url) or os.environ.get(PASSWORD_ENV)
    if not password or url.startswith(JOURNAL):
        return url
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    return parsed.set(password=password).render_as_string(hide_password=False) if parsed.password is None else url


def password_env(url: str) -> dict:
    """What an extra worker process needs in its environment to open the storage."""
    password = _PASSWORDS.get(url)
    return {PASSWORD_ENV: password} if password else {}


def open_storage(url: str):
    """An Optuna storage for a public URL (or the study's own SQLite file); a server that
    cannot be reached or refuses the credentials is a one-line `StudyError`."""
    import optuna

    if url.startswith(JOURNAL):
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        try:
            return JournalStorage(JournalFileBackend(url[len(JOURNAL):]))  # (it creates the file)
        except OSError as exc:
            raise _unwritable_journal(url, exc) from None
    from sqlalchemy.exc import SQLAlchemyError

    sqlite = url.startswith("sqlite")
    beat = heartbeat_seconds()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.storages.RDBStorage(
                _with_password(url),
                # A generous SQLite timeout lets several worker processes share the file
                # without "database is locked" errors; a server is asked each time if alive.
                engine_kwargs={"connect_args": {"timeout": 60}} if sqlite else {"pool_pre_ping": True},
                heartbeat_interval=beat,
                grace_period=GRACE_BEATS * beat,
                heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=1),
            )
    except (SQLAlchemyError, ImportError, ValueError) as exc:
        raise StudyError(f"storage {url}: cannot open it ({_first_line(exc)})") from None


def _first_line(exc) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    line = text.splitlines()[0] if text else type(exc).__name__
    return _masked(line)


def missing_file(public: str) -> str | None:
    """The file of a file-backed storage (journal, SQLite) where it does not exist, else None:
    opening it would create an empty one and leave it behind."""
    if public.startswith(JOURNAL):
        path = public[len(JOURNAL):]
    elif public.startswith("sqlite"):
        from sqlalchemy.engine import make_url

        path = make_url(public).database
    else:
        return None
    return path if path and path != ":memory:" and not os.path.exists(path) else None


def is_published(study) -> bool:
    """Whether a run has created the study in its shared storage. A run writes
    `"published": false` into the manifest until then (older studies lack the key: they
    published at once)."""
    return study.manifest.get("published", True) is not False


def storage(study, create: bool = False):
    """The study's storage. A shared one must already hold a published study unless `create`
    (its first run creates it there): a journal on a share that is not mounted, or a database
    restored without the study, would otherwise make `resume` start the study over, and
    opening a missing journal or SQLite file would create it."""
    url = study.storage_url
    if not study.manifest.get("storage") or create:
        return open_storage(url)
    where = f"storage {url}: holds no study named {study.study_name!r}"
    if not is_published(study):
        raise StudyError(f"{where}: the study's first run stopped before creating it there; "
                         f"{suggested_command('resume', study.directory)} begins it")
    where += f", where {study.directory}'s trials are stored"
    missing = missing_file(url)
    if missing:
        raise StudyError(f"{where} ({missing} is missing: is its shared folder mounted?); nothing was changed")
    opened = open_storage(url)
    try:
        opened.get_study_id_from_name(study.study_name)
    except KeyError:
        hint = "the right journal file?" if url.startswith(JOURNAL) else "the right server and database?"
        raise StudyError(f"{where} ({hint}); nothing was changed") from None
    return opened


def load(study, sampler=None, pruner=None, create: bool = False):
    """The study's Optuna study; `create` only where a run begins it in a shared storage."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)  # failures are shown in the leaderboard
    try:
        return optuna.create_study(
            study_name=study.study_name,
            storage=storage(study, create),
            direction="maximize",
            sampler=sampler,
            pruner=pruner,
            load_if_exists=True,
        )
    except OSError as exc:  # a journal takes a lock file beside it, even to read
        raise _unwritable_journal(study.storage_url, exc) from None


def _unwritable_journal(url, exc: OSError):
    """A journal whose folder this user cannot write (permissions, a read-only mount), as one
    line; any other error (a full disk: named by the command) as it was."""
    import errno

    if exc.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
        return exc
    return StudyError(f"storage {url}: cannot write {exc.filename2 or exc.filename} ({exc.strerror}); "
                      "a worker needs write access to the journal's folder")


def publish(study, space_text: str, new: bool):
    """Writes what a worker on another machine needs into the storage itself: the manifest
    and the space (`join` reads them back). A `new` study is created there by this."""
    load(study, create=new).set_user_attr(METADATA, {"manifest": study.manifest, "space": space_text})


def publish_baselines(study):
    """The run's baselines in the shared storage: a join directory's leaderboard ranks the
    trials against them too (it showed none, so a trial below raw features ranked first)."""
    load(study).set_user_attr(BASELINES, study.baselines())


def fetch_baselines(study, optuna_study):
    """A join directory's copy of the baselines its run published (once it has)."""
    published = optuna_study.user_attrs.get(BASELINES)
    if published and not study.baselines():
        study.write_json("baselines.json", published)


def study_names(url: str) -> list:
    import optuna

    storage = open_storage(url)
    try:
        return [s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False)]
    except Exception as exc:  # noqa: BLE001  (a server error while listing)
        raise StudyError(f"storage {url}: cannot list its studies ({_first_line(exc)})") from None


def fetch_metadata(url: str, name: str) -> dict:
    """The manifest and space a study published (`publish`), for a joining worker."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    names = study_names(url)
    if name not in names:
        raise StudyError(f"storage {url}: no study named {name!r} (it holds: {', '.join(names) or 'none'})")
    metadata = optuna.load_study(study_name=name, storage=open_storage(url)).user_attrs.get(METADATA)
    if not metadata:
        raise StudyError(f"storage {url}: study {name!r} was not made by `python -m search run` (no manifest)")
    return metadata


def load_readonly(study):
    """The study's trials for commands that only read (`report`): a consistent snapshot of
    study.db taken through SQLite's read-only mode, so a read-only (archived, shared) study
    works and a study in use by a search is neither locked nor written."""
    import atexit
    import shutil
    import tempfile

    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    if study.manifest.get("storage"):  # a shared storage: read it as it is
        return optuna.load_study(study_name=study.study_name, storage=storage(study))
    check_database(study)
    path = study.directory / "study.db"
    if not path.is_file():
        return optuna.create_study(study_name=STUDY_NAME, direction="maximize")  # nothing ran yet
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


def check_database(study):
    """Refuses a study whose trials ran and were exported (export.json) but whose study.db
    went missing or empty: resuming would start over and score the test part again."""
    if study.manifest.get("storage"):
        if is_published(study):
            storage(study)  # refused where the shared storage lost the study
        return
    path = study.directory / "study.db"
    if not (study.directory / "export.json").is_file():
        return
    if not path.is_file() or path.stat().st_size == 0:
        raise StudyError(f"{path}: {'missing' if not path.is_file() else 'empty'}, though export.json holds the "
                         "study's winner (restore study.db from a copy; the trials are stored only there)")


def finished_count(optuna_study) -> int:
    import optuna

    states = tuple(getattr(optuna.trial.TrialState, s) for s in FINISHED)
    return len(optuna_study.get_trials(deepcopy=False, states=states))


def complete_trials(optuna_study) -> list:
    """The study's completed trials (the ones with a score), oldest first."""
    import optuna

    return optuna_study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))


def worker_identity() -> dict:
    """Stored on each trial: where it ran, so a resume can tell a dead worker's trial."""
    return {
        "worker_host": socket.gethostname(),
        "worker_pid": os.getpid(),
        "worker_pid_ns": _pid_namespace(),
        "device": os.environ.get("CUDA_VISIBLE_DEVICES") or "cpu",
    }


def _pid_namespace() -> str | None:
    """Which PIDs a worker's PID is one of: containers on one host may share its hostname."""
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return None


def runs_here(attrs: dict) -> bool:
    """Whether a trial's worker ran on this host, where its PID tells whether it is alive
    (a trial stored before 2026-12-03 has no PID namespace: its hostname decides)."""
    namespace = attrs.get("worker_pid_ns")
    return attrs.get("worker_host") == socket.gethostname() and namespace in (None, _pid_namespace())


def where_running(trial) -> str:
    """A running trial as a wait or a summary names it: `#5 on HOST (pid 123)`."""
    attrs = trial.user_attrs
    return f"#{trial.number} on {attrs.get('worker_host', '?')} (pid {attrs.get('worker_pid', '?')})"


def recover(study) -> list[str]:
    """Fails the RUNNING trials whose worker is gone and queues their configs again. Returns
    one note per recovered trial."""
    import optuna

    check_integrity(study)
    optuna_study = load(study)
    notes = []
    for trial in optuna_study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        attrs = trial.user_attrs
        pid = attrs.get("worker_pid")
        if pid is None:
            if study.manifest.get("storage"):
                continue  # another machine's worker may be between Optuna's `ask` and signing it
            # A local study's workers all hold its lock, which this command now holds: nobody
            # runs this trial; its worker died between asking for it and storing who it is.
            why, who = "its worker died before it was recorded", "worker unknown"
        elif not runs_here(attrs):
            continue  # another host's worker (or another container's): the heartbeat decides
        elif int(pid) == os.getpid():
            # This process runs no trial yet: an earlier call in it (a notebook's) was stopped
            # while Optuna stored the trial's state, e.g. by a second Ctrl-C.
            why = "its result was lost while it was being stored (the call was stopped)"
            who = "an earlier call in this process"
        elif _alive(int(pid)):
            continue  # a live worker: leave it
        else:
            why, who = f"worker {pid} died during the trial", f"worker {pid}"
        note = _fail_and_queue_again(optuna_study, trial, why, who)
        if note:
            notes.append(note)
    return notes


def fail_dead_local_trials(optuna_study) -> list[str]:
    """`recover` while workers run (a run waiting for the others' last trials), on a journal,
    which has no heartbeat to tell a dead worker: only the trials of this host's workers that
    are gone, since a live one may be between Optuna's `ask` and signing its trial. A joiner
    killed on this machine was waited for in silence, for ever."""
    import optuna
    from optuna.storages.journal import JournalStorage

    if not isinstance(optuna_study._storage, JournalStorage):  # a database's heartbeat fails them
        return []
    notes = []
    for trial in optuna_study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        pid = trial.user_attrs.get("worker_pid")
        if pid is not None and runs_here(trial.user_attrs) and int(pid) != os.getpid() and not _alive(int(pid)):
            note = _fail_and_queue_again(optuna_study, trial, f"worker {pid} died during the trial", f"worker {pid}")
            if note:
                notes.append(note)
    return notes


def _fail_and_queue_again(optuna_study, trial, why, who) -> str | None:
    """Fails a trial whose worker is gone and queues its config again; the note saying so, or
    None where another process got there first."""
    import optuna

    from search.backends.records import cut_short

    attrs = trial.user_attrs
    ended = "fail_reason" in attrs  # it failed or was cut short; only its state was not stored
    # Optuna has no public way to set an attribute on another process's trial (a Trial
    # needs its private id); the state goes through the public `tell`.
    try:  # (another process may fail it first: the run's heartbeat check, a joiner's recover)
        if not ended:
            optuna_study._storage.set_trial_user_attr(trial._trial_id, "fail_reason", why)
        optuna_study.tell(trial.number, state=optuna.trial.TrialState.FAIL)
    except (optuna.exceptions.UpdateFinishedTrialError, ValueError):
        return None  # another process got there first
    if ended:  # its own reason stands
        note = f"trial {trial.number} ended ({attrs['fail_reason']}) before its state was stored: marked failed"
        # An interrupted one queues its config itself, unless a second stop came in between.
        if trial.number in dict(cut_short(optuna_study)):
            optuna_study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number})
            note += ", its config queued again"
        return note
    if not trial.params:  # it died before sampling: nothing to run again
        return f"trial {trial.number} was left running by {who} before it had a config: marked failed"
    optuna_study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number})
    return f"trial {trial.number} was left running by {who}: marked failed, its config queued again"


def check_integrity(study):
    path = study.directory / "study.db"
    if study.manifest.get("storage") or not path.exists():  # a server checks its own
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
    return not _zombie(pid)


def _zombie(pid: int) -> bool:
    """A process that ended and that its parent has not reaped yet (a run's own worker, until
    the run's wait ends): `kill(pid, 0)` still finds it."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rpartition(")")[2].split()[0] == "Z"
    except (OSError, IndexError):
        return False
