"""`python -m search join URL --study NAME`: a worker on another machine adds trials to a study
whose trials live in a shared storage (a database server, or a journal file on a shared
filesystem).

Everything the worker needs comes from the storage, where `run` published it (manifest and
space), except the data: built-in datasets load as anywhere; a file is read from the path
the study recorded or from `--data` (this machine's copy); in-memory data needs `--data`
pointing at a copy of the study's data.npz. Either way its content is checked against the
study's split hash, so other data is refused in one line. The worker keeps a local study
directory (manifest, space, logs) from which `report` and `export` work as well."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import time
from pathlib import Path

from encoderkit.data import IN_MEMORY, content_hash, is_file_name, load_dataset
from encoderkit.errors import DataError
from search.errors import Interrupted, OtherData, StudyError, disk_full_named, suggested_command
from search.lock import LOCK_NAME, study_lock
from search.preflight import check_installed, check_writable_study_dir, use_keras_backend
from search.storage import (JOURNAL, fetch_baselines, fetch_metadata, finished_count, load, missing_file, public_url,
                            recover, where_running)
from search.study import DATA_FILE, Study, is_join_directory, open_study


def join(url: str, name: str, *, data=None, study_dir=None, progress=True) -> dict:
    """Runs trials of study `name` in storage `url` in this process until the study holds
    its requested count (counted across every machine) or its timeout passes. Returns what
    this worker did: trials finished here, the study's count and target."""
    from optuna.trial import TrialState

    from search import devices, engine
    from search.backends.optuna_backend import DEADLINE, optimize
    from search.settings import Budget, OptunaOptions
    from search.trial_process import prepare_for_trials

    public = public_url(url)
    _check_file_exists(public)
    metadata = fetch_metadata(public, name)
    # This machine reaches the storage by the URL it was given (the run's host may be "localhost").
    manifest, space_text = {**metadata["manifest"], "storage": public}, metadata["space"]
    target = Budget.from_manifest(manifest).trials
    done = finished_count(load(Study(Path("."), manifest)))
    if done >= target:  # nothing left to do: no directory, no data, no Keras
        return {"study": name, "storage": public, "directory": None, "trials_here": 0, "finished": done,
                "target": target}
    if manifest.get("backend") != "optuna":
        raise StudyError(f"storage {public}: study {name!r} runs on backend {manifest.get('backend')}; "
                         "only optuna studies take joining workers")
    local = check_writable_study_dir(study_dir or f"studies/{name}-join-{socket.gethostname()}")
    check_join_directory(local, public, name)
    check_installed("keras_backend", manifest.get("keras_backend") or "tensorflow")
    created = not local.exists()
    had_space = (local / "space.yaml").is_file()  # an empty folder made by the user: what a refusal leaves
    local.mkdir(parents=True, exist_ok=True)
    with study_lock(local, "join"):
        try:
            # "joined": this directory's commands leave the export to the study's run (one look at the test part)
            manifest = {**with_local_data(manifest, local, data, name, public), "workers": 1, "joined": True}
            study = Study(local, manifest)
            try:
                problem = study.problem()  # other data is refused here (split hash)
            except OtherData as exc:  # named as the user gave it (this worker's copy is removed)
                raise StudyError(f"{data or manifest['data']}: not the data of study {name!r} ({exc.what})") from None
            except DataError as exc:
                raise DataError(str(exc).replace(str(local / DATA_FILE), str(data))) from None
            (local / "space.yaml").write_text(space_text)  # the study's own (another study's folder was refused)
            space = study.space()
            # Only now: a join refused for other data left an earlier join directory's manifest
            # naming that data, and every later command there refused the study.
            study.write_json("manifest.json", manifest)
            fetch_baselines(study, load(study))  # where the run has scored them: a report here shows them
        except BaseException:
            if created:  # a refused join leaves nothing behind
                shutil.rmtree(local, ignore_errors=True)
            elif not had_space:  # a folder the user made for it: as empty as it was (but the lock)
                (local / "space.yaml").unlink(missing_ok=True)
            raise
        use_keras_backend(manifest.get("keras_backend"))  # also for the trial processes
        options = OptunaOptions.from_manifest(manifest)  # only optuna studies are joined
        prepare_for_trials(options.fresh_process, devices.cores_per_worker(options.workers))
        for note in recover(study):  # this machine's trials left running by a killed join
            print(f"note: {note}")
        before = _mine(load(study))
        bar = engine.ProgressBar(Budget.from_manifest(manifest).trials) if progress else None
        try:
            # A sampler seed of its own: this worker's trials differ from every other worker's.
            with disk_full_named(local, suggested_command("resume", local)), _interrupted_with_leaderboard(study):
                # A database's heartbeat tells a dead machine's trial: wait for the others' last
                # trials and take over any that fail (the run's machine may be the one gone).
                # A journal has none: a trial left running there would be waited for for ever.
                optuna_study = optimize(study, problem, space, worker=1000 + os.getpid() % 100000,
                                        callbacks=[bar] if bar else (), until_count=not public.startswith(JOURNAL))
        finally:
            if bar:
                bar.close()
        fetch_baselines(study, optuna_study)  # (the run scores them after publishing the study)
    deadline = optuna_study.user_attrs.get(DEADLINE)
    running = optuna_study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    return {"study": name, "storage": public, "directory": str(local), "trials_here": _mine(optuna_study) - before,
            "finished": finished_count(optuna_study), "target": Budget.from_manifest(manifest).trials,
            "timed_out": deadline is not None and time.time() >= deadline,
            "running": [where_running(t) for t in running]}


def _check_file_exists(public: str):
    """A study to join lives in an existing storage (opening a missing file would create it)."""
    path = missing_file(public)
    if path:
        raise StudyError(f"storage {public}: {path} does not exist (no study to join)")


def check_join_directory(local: Path, public: str, name: str):
    """A local directory is this study's join directory, or new."""
    if (local / "manifest.json").is_file():
        study = open_study(local)
        existing = study.manifest
        if existing.get("storage") != public or existing.get("study_name") != name:
            raise StudyError(f"{local}: holds another study ({existing.get('study_name') or 'a local one'}); "
                             "give another --study-dir")
        if not is_join_directory(study):  # the run's own: its manifest and export are the run's
            raise StudyError(f"{local}: the study's own run directory, not a join directory; give another "
                             f"--study-dir (or continue the run there: {suggested_command('resume', local)})")
    elif local.exists() and any(p.name not in (LOCK_NAME, DATA_FILE) and not p.name.startswith(f".{DATA_FILE}.tmp-")
                                for p in local.iterdir()):  # (what a refused or killed join may leave)
        raise StudyError(f"{local}: exists and is not a study directory; give another --study-dir")


def with_local_data(manifest: dict, local: Path, data, name: str, public: str) -> dict:
    """The manifest with this machine's data: a copy of in-memory data's data.npz, or a file
    path of its own; the split hash decides whether it is the study's data."""
    in_memory = manifest["data"].startswith(IN_MEMORY)
    if data is None:
        if in_memory:
            raise StudyError(f"study {name!r} searches in-memory data: give this machine's copy of its "
                             f"{DATA_FILE} with --data")
        if is_file_name(manifest["data"]) and not Path(manifest["data"]).is_file():
            raise StudyError(f"{manifest['data']}: no such file on this machine (the study's data); give this "
                             f"machine's copy: {suggested_command('join', public, '--study', name, '--data', 'PATH')}")
        return manifest
    if not Path(data).is_file():
        raise StudyError(f"--data {data}: {'a folder, not a file' if Path(data).is_dir() else 'no such file'}")
    if in_memory:
        if Path(data).resolve() != (local / DATA_FILE).resolve():  # (resume gives the copy already here)
            # staged (under any name the user's copy has) and checked before it replaces this
            # directory's own copy: other arrays were refused only after they had replaced it
            staged = local / f".{DATA_FILE}.tmp-join.npz"
            try:
                shutil.copyfile(data, staged)
                given = IN_MEMORY + content_hash(load_dataset(staged))
                if given != manifest["data"]:
                    study_hash = manifest["data"].removeprefix(IN_MEMORY)
                    raise StudyError(f"{data}: not the data of study {name!r} (content hash "
                                     f"{given.removeprefix(IN_MEMORY)}, study: {study_hash})")
                os.replace(staged, local / DATA_FILE)  # whole or not at all
            except DataError as exc:
                raise DataError(str(exc).replace(str(staged), str(data))) from None
            finally:
                staged.unlink(missing_ok=True)
        return manifest
    return {**manifest, "data": os.path.abspath(data)}


@contextlib.contextmanager
def _interrupted_with_leaderboard(study):
    """Ctrl-C or SIGTERM: the study's leaderboard as this machine sees it, and `resume` of this
    directory to join again, as `run` says them (it printed "interrupted" alone)."""
    from search import interrupts

    try:
        yield
    except BaseException as exc:
        if not interrupts.is_interrupt(exc):
            raise
        from search.results import result_of

        try:
            fetch_baselines(study, load(study))
            result = result_of(study)
        except Exception:  # noqa: BLE001  (the storage gone too: the interrupt as it was)
            raise exc from None
        raise Interrupted(result) from None


def _mine(optuna_study) -> int:
    """Finished trials run by this process."""
    host, pid = socket.gethostname(), os.getpid()
    return sum(1 for t in optuna_study.get_trials(deepcopy=False)
               if t.state.name in ("COMPLETE", "PRUNED") and t.user_attrs.get("worker_pid") == pid
               and t.user_attrs.get("worker_host") == host)


def rejoin(study, data=None, progress=True) -> tuple[dict, str]:
    """`resume` on a join directory: joins again (its dead trials failed and run again) and
    leaves the export to the study's run. Returns `join`'s summary and a line saying it."""
    manifest = study.manifest
    if data is None:  # this machine's copy, as the last join recorded it
        data = study.directory / DATA_FILE if manifest["data"].startswith(IN_MEMORY) else None
        if data is None and is_file_name(manifest["data"]):
            data = manifest["data"]
    done = join(manifest["storage"], manifest["study_name"], data=data, study_dir=study.directory, progress=progress)
    return done, summary(done)


def summary(done: dict) -> str:
    """What a join did, in a line."""
    if done["directory"] is None:
        return f"study {done['study']} has its {done['target']} trials already; nothing to join"
    timed_out = "; its run's timeout has passed, so no trial starts" if done.get("timed_out") else ""
    running = done.get("running")
    if running and done["finished"] < done["target"]:  # a journal's: its worker may be dead (no heartbeat tells)
        timed_out += (f"; still running: {', '.join(running[:5])}{' ...' if len(running) > 5 else ''} (a "
                      "worker that died there leaves its trial so: `resume` of its directory on its machine runs it "
                      "again)")
    return (f"joined study {done['study']}: {done['trials_here']} trial(s) finished here; the study has "
            f"{done['finished']} of {done['target']}{timed_out}. Its run exports the winner (if that machine is "
            f"gone: {suggested_command('export', done['directory'])})")
