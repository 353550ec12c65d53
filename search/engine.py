"""Run and resume: the searching half of the Python API that the CLI is a thin layer over.

    import search
    result = search.run(X, y, trials=20, study_dir="runs/mine")     # or "digits", "my.csv"
    print(result); result.to_frame(); result.best_estimator

`run` creates (or continues) a study, scores the baselines, runs the backend, exports the
best encoder (search/refit.py) and returns a `StudyResult` (search/results.py)."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import time
import warnings
from pathlib import Path

import numpy as np
import optuna  # noqa: F401  (here, not first inside `run`: optuna keeps the tracebacks of its
# optional imports, which would pin the caller's frames, and their arrays, for good)

from encoderkit.baselines import baseline_notes, baselines_for
from encoderkit.data import IN_MEMORY, load_dataset
from encoderkit.errors import DataWarning
from encoderkit.export import check_destination
from encoderkit.probe import cv_score, resolve_probe
from search import devices, faults, interrupts
from search.backends import get_backend
from search.errors import (FatalSearchError, Interrupted, SettingsError, StudyError, disk_full_named, setting,
                           suggested_command)
from search.lock import check_free, study_lock
from search.preflight import (check_installed, check_machine, check_writable_study_dir, choose_keras_backend,
                              check_jax_platforms, connect_ray, keras_backend_to_use, use_keras_backend)
from search.problem import make_problem
from search.refit import current_export, refit_and_export
from search.results import StudyResult, result_of
from search.settings import BackendOptions, Budget, StudySpec, option_keys
from search.space import load_space
from search.storage import check_database, is_published, publish, publish_baselines, recover, study_names
from search.study import check_same_study, create_or_check, is_join_directory, open_study, tuner_version
from search.trial_process import ChildDied, held, prepare_for_trials


def run(
    data=StudySpec.data,
    y=None,
    *,
    target=StudySpec.target,
    data_dir=None,
    space="default",
    scale=1.0,
    trials=Budget.trials,
    timeout=Budget.timeout,
    backend="optuna",
    workers=BackendOptions.workers,
    gpus=None,
    address=None,
    cpus_per_trial=None,
    gpus_per_trial=None,
    algorithm=None,
    max_failures=Budget.max_failures,
    fresh_process=None,
    storage=None,
    metric=StudySpec.metric,
    cv=StudySpec.cv,
    seed=StudySpec.seed,
    test_size=StudySpec.test_size,
    subsample=StudySpec.subsample,
    study_dir=None,
    keras_backend=None,
    progress=True,
    verbose=True,
    export=True,
) -> StudyResult:
    """Searches autoencoder architectures for `data`, scored by a probe on its labels, and
    exports the best encoder.

    Data
        data: a NumPy array X (2-D tabular (n, F), 3-D sequences (n, T, F), 4-D images
            (n, H, W, C): the shape sets the data kind) with labels `y`; a pandas DataFrame
            (its column names travel with the export) with labels in `y` or in the column
            named by `target` (default "target"); a tuple (X, y); or a dataset name
            ("digits", "fashion-mnist:n=10000", "insurance", "ucr:GunPoint": a UCR/UEA dataset
            bundled with aeon, its official test split held out) or a .csv/.npy/.npz path (str
            or PathLike), whose `target` names the label column. In-memory data is stored in the
            study (`data.npz`) and named by its content hash: re-running on other data refuses.
        data_dir: where fashion-mnist's files are.
    What is measured (fixed for the study's life)
        space: a shipped space name ("default", "image", "sequence", "article", ...), a
            YAML file, or a dict in the same format (`search.read_space("default")` gives a
            shipped one to edit); scale: shrinks epochs, units and filters (0, 1].
        metric: accuracy, roc_auc, balanced_accuracy, f1_macro or auto (None: the space's).
        cv: the number of the probe's stratified cross-validation folds (None: the space's
            probe.cv, 5; a number, not a scikit-learn splitter: the folds are stratified K-fold).
        seed: seeds the split, the sampler and each trial. test_size: the held-out fraction,
            scored once at export. subsample: rows of the search part each trial sees.
    Budget and backend (may change between runs of one study)
        trials: finished trials to reach; timeout: seconds after which no trial starts;
        max_failures: failed trials in a row that stop the search.
        backend: "optuna" (workers: processes sharing the study; gpus: "auto", "none" or
            "0,1"; fresh_process: trials per child process, 0 = in this process; storage:
            None = the study's own SQLite file, or a database URL or journal:PATH that
            workers on other machines join), "ray"
            (address, cpus_per_trial, gpus_per_trial; workers: concurrent trials) or
            "kerastuner" (algorithm: random, bayesian or hyperband). A backend option left
            None takes its backend's default (gpus "auto", cpus_per_trial 1, gpus_per_trial 0,
            algorithm "random"); one set for another backend is refused.
        keras_backend: "tensorflow", "jax" or "torch" for a new study (None: $KERAS_BACKEND,
            else TensorFlow); set before Keras is first imported in this process. A study
            keeps the backend it began with.
    Output
        study_dir: the study directory (default studies/NAME-TIME); a directory holding the
            same study is continued. progress: a progress bar; verbose: print notes (without
            it, notes on the data, such as a DataFrame column 'target' taken as a feature, are
            `encoderkit.errors.DataWarning`s);
            export: refit and export the best trial (STUDY/export).

    Returns a `StudyResult` (`print(result)` shows the leaderboard; `result.best_estimator`
    is the fitted export; `result.to_frame()` the trials).
    Raises `search.errors.SettingsError` (bad settings, named by parameter: "workers: must be
    at least 1, got 0"; a ValueError), other `search.errors.SearchError`s (`StudyError` for a
    study directory that measures something else)
    and `encoderkit.errors.DataError` (unusable data, also a ValueError), before anything is
    written; `search.errors.Interrupted` on Ctrl-C, carrying the result so far."""
    # Ctrl-C waits for the imports and checks (seconds): inside an import it broke the process
    with interrupts.deferred():
        faults.check_environment()
        choose_keras_backend(keras_backend)
        budget = Budget(trials=trials, timeout=timeout, max_failures=max_failures)
        backend_module = get_backend(backend)  # unknown backends and their settings fail before any work
        chosen = dict(gpus=gpus, fresh_process=fresh_process, storage=storage, address=address,
                      cpus_per_trial=cpus_per_trial, gpus_per_trial=gpus_per_trial, algorithm=algorithm)
        options = backend_module.Options.for_backend(
            backend, workers=workers, **{k: v for k, v in chosen.items() if v is not None})
        machine_notes = check_machine(backend, options)
        spec = StudySpec(data="?", target=target, seed=seed, test_size=test_size, metric=metric, subsample=subsample,
                         cv=cv)
        running = keras_backend_to_use()  # --keras-backend, or $KERAS_BACKEND
        check_installed("keras_backend", running)  # before a manifest records it
        check_jax_platforms(running)
        loaded = load_space(space, scale)
        dataset, data_name = _dataset(data, y, target, data_dir)
        spec = dataclasses.replace(spec, data=data_name)
        loaded.check_kind(dataset.kind)
        restricted, notes = loaded.for_kind(dataset.kind)
        if hasattr(backend_module, "check_space"):  # e.g. Hyperband's epochs range
            backend_module.check_space(restricted, options)
        data_notes = [*dataset.notes, *unused_data_settings(dataset, data_name, data_dir, spec.test_size)]
        if not verbose:  # printed as notes otherwise: a quiet run still hears about its data, as scikit-learn warns
            for note in data_notes:
                warnings.warn(note, DataWarning, stacklevel=2)
        notes = [*machine_notes, *data_notes, *notes, *baseline_notes(dataset)]
        if not reads_data_dir(data_name):
            data_dir = None  # recorded as unused
        if restricted.start and not options.takes_start_points:
            notes.append(f"the {backend} backend does not take the space's start points (optuna and ray do): skipped")
        problem = make_problem(
            dataset,
            test_size=spec.test_size,
            seed=spec.seed,
            metric=spec.metric or loaded.probe_setting("metric"),
            folds=spec.cv or loaded.probe_setting("cv"),
            probe=loaded.probe_setting("model"),
            workers=options.workers,
            subsample=spec.subsample,
        )
        notes.extend(problem.notes)
        if not verbose:  # e.g. a subsample the data is too small for: a setting the data does not use
            for note in problem.notes:
                warnings.warn(note, DataWarning, stacklevel=2)
        study_dir = check_writable_study_dir(
            f"studies/{dataset.name}-{time.strftime('%Y%m%d-%H%M%S')}" if study_dir is None else study_dir)
        # What the manifest records: the spec (the subsample the problem kept), the budget, the
        # backend and its options, and where a built-in dataset's files are.
        settings = {
            **spec.to_manifest(), "subsample": problem.subsample, **budget.to_manifest(), "backend": backend,
            **options.to_manifest(), "data_dir": data_dir, "scale": float(scale),  # load_space checked it
        }
        check_free(study_dir)
        existing = check_same_study(study_dir, settings, problem, loaded)  # refused before the lock is touched
        if existing and is_join_directory(existing):  # its run would publish a deadline and export from a worker
            name = existing.manifest.get("study_name")
            raise StudyError(f"{existing.directory}: a worker's directory of study {name!r}; "
                             f"add trials with: {suggested_command('resume', existing.directory)} (it joins again)")
        if existing:
            check_database(existing)
            existing.check_records()
            if export:  # a read-only export: refused now, not after the search and a look at the test part
                check_destination(existing.export_dir)
            if hasattr(backend_module, "check_continues"):  # e.g. keras-tuner's saved oracle
                backend_module.check_continues(existing.directory, options)
            if existing.manifest["backend"] != backend:  # allowed (one storage, one schema), but said
                notes.append(backend_switch_note(existing, backend))
            kept = existing.manifest.get("keras_backend") or "tensorflow"
            if running != kept:  # its trials and export stay comparable
                notes.append(f"the study runs Keras backend {kept}, as it began; {running} "
                             f"({setting('keras_backend')} or KERAS_BACKEND) is not used for it")
        if settings.get("storage"):  # a shared storage names each study; the name must be free
            settings["study_name"] = (existing.study_name if existing
                                      else _free_study_name(settings["storage"], study_dir))
    created = _make_directory(study_dir)
    with study_lock(study_dir, "run"):
        try:
            study = create_or_check(study_dir, settings, space, problem, loaded)
        except BaseException:
            if created:  # a refused run leaves nothing behind
                shutil.rmtree(study_dir, ignore_errors=True)
            raise
        for key in option_keys():  # another backend's options would be stale
            study.manifest.pop(key, None)
        study.manifest.update({k: settings[k] for k in BUDGET_KEYS if k in settings})
        for name, version in tuner_version(backend).items():  # a study gone on with ray or keras-tuner
            study.manifest.setdefault("packages", {}).setdefault(name, version)
        if not study.manifest["data"].startswith(IN_MEMORY):  # arrays stay arrays, whatever file had their copy
            study.manifest["data"] = settings["data"]  # where a moved data file is now (its contents were checked)
        if study.manifest.get("storage"):
            _publish(study, first=existing is None or not is_published(existing))
        study.write_json("manifest.json", study.manifest)
        return _search_and_export(study, problem, restricted, progress, export, notes, verbose)


def _publish(study, first: bool):
    """Puts what workers joining from other machines need into the shared storage; `first`
    creates the study there. Until that is done the manifest says `"published": false`, so a
    run stopped before it is begun again by `resume`, not refused as a study the storage lost."""
    study.manifest.pop("published", None)
    if first:
        study.write_json("manifest.json", {**study.manifest, "published": False})
    publish(study, (study.directory / "space.yaml").read_text(), new=first)


def backend_switch_note(study, backend) -> str:
    """Said when a study goes on with another backend; configs that the optuna backend queued
    to run again (a trial cut short) wait for an optuna run."""
    from search.storage import load

    before = study.manifest["backend"]
    queued = sum(t.state.name == "WAITING" for t in load(study).get_trials(deepcopy=False))
    waiting = (f"; its {queued} queued config(s) run only with {setting('backend', 'optuna')}, and `resume` now "
               f"uses {backend}: "
               f"{suggested_command('run', '--backend', 'optuna', '--study-dir', study.directory)} runs them"
               if queued and backend != "optuna" else "")
    return f"the study ran with backend {before}; this run uses {backend}{waiting}"


def _dataset(data, y, target, data_dir):
    """The data, and how the study's settings name it: a dataset name or file path as given,
    in-memory data by its content hash (so a re-run on other arrays is refused)."""
    from encoderkit.data import IN_MEMORY, content_hash, from_memory, is_builtin, is_file_name

    if isinstance(data, tuple) and len(data) == 2 and y is None:  # run((X, y))
        data, y = data
    if isinstance(data, (str, os.PathLike)):
        if y is not None:
            raise SettingsError(f"y: a dataset name or file ({os.fspath(data)}) brings its own labels; "
                                "name its label column with target=")
        if target is not None and is_builtin(data):  # a built-in's labels are fixed
            raise SettingsError(f"target={target!r}: {os.fspath(data)} brings its own labels; target names a "
                                "column of a .csv or .npy file or an array of a .npz file")
        dataset = load_dataset(data, target, data_dir)
        # A file by its absolute path: resume, export and report then work from any folder.
        return dataset, os.path.abspath(data) if is_file_name(data) else os.fspath(data)
    dataset = from_memory(data, y, target)
    return dataset, IN_MEMORY + content_hash(dataset)


def reads_data_dir(data_name: str) -> bool:
    """Whether this data is read from `data_dir` (only fashion-mnist's files are)."""
    return data_name.startswith("fashion-mnist")


def unused_data_settings(dataset, data_name: str, data_dir, test_size) -> list[str]:
    """Notes on settings that this data does not use (they were taken in silence)."""
    notes = []
    if data_dir is not None and not reads_data_dir(data_name):
        notes.append(f"data_dir {data_dir}: not used; only fashion-mnist reads its files from one")
    if dataset.test_rows is not None and test_size != StudySpec.test_size:
        notes.append(f"test_size {test_size}: not used; {data_name} brings its own test part "
                     f"({len(dataset.test_rows)} rows)")
    return notes


def _free_study_name(url, study_dir) -> str:
    name = Path(study_dir).resolve().name
    if name in study_names(url):
        raise StudyError(f"storage {url}: already holds a study named {name!r} (choose another {setting('study_dir')} "
                         f"name, or add workers to it: {suggested_command('join', url, '--study', name)})")
    return name


def _make_directory(directory: Path) -> bool:
    """Creates the study directory; whether this call created it (atomically: of two runs
    started at once, only one did)."""
    directory.parent.mkdir(parents=True, exist_ok=True)
    try:
        directory.mkdir()
    except FileExistsError:
        return False
    return True


# Settings a re-run of `run` on an existing study may change: how much to search, not what.
BUDGET_KEYS = ("trials", "timeout", "max_failures", "backend", "data_dir", *sorted(option_keys()))


def resume(study_dir, *, data=None, progress=True, verbose=True, export=True) -> StudyResult:
    """Continues a stopped or crashed study to its requested number of trials (its data,
    space and settings as stored in the study) and exports its best trial. `data`: where the
    study's data file is now, if it moved (its contents must be the same: the split hash is
    checked). Returns a `StudyResult`; raises as `run` does."""
    faults.check_environment()
    study = open_study(study_dir)
    if is_join_directory(study):  # a worker's directory: join again; the study's run exports
        from search.join import rejoin

        done, line = rejoin(study, data=data, progress=progress)
        if verbose:
            print(f"note: {line}")
        return result_of(open_study(study_dir), notes=(line,))
    with interrupts.deferred():  # as in run
        if data is not None:
            study.move_data(data)  # checked with the split hash below, written under the lock
        check_database(study)
        study.check_records()
        check_writable_study_dir(study.directory)
        if export:  # as in run
            check_destination(study.export_dir)
        check_free(study.directory)
        check_installed("backend", study.manifest["backend"])
        check_installed(f"{study.directory}: Keras backend", study.manifest.get("keras_backend") or "tensorflow")
        check_jax_platforms(study.manifest.get("keras_backend") or "tensorflow")
        problem, space = study.problem(), study.space()  # a changed space or data refuses before the lock
        backend_module = get_backend(study.manifest["backend"])
        if hasattr(backend_module, "check_space"):  # a study made before the space was checked up front
            backend_module.check_space(space, backend_module.Options.from_manifest(study.manifest))
        address = study.manifest.get("address") if study.manifest["backend"] == "ray" else None
        if address and _trials_to_run(study):  # a finished study's export or report needs no cluster
            again = suggested_command("run", "--backend", "ray", "--address", "HOST:PORT", "--study-dir", study.directory)
            connect_ray(address, again=f"another cluster: {again} (with the study's other settings)")
    with study_lock(study.directory, "resume"):
        if not is_published(study):  # its first run stopped before the shared storage held it
            _publish(study, first=True)
        study.write_json("manifest.json", study.manifest)  # a moved data file's new path, for later commands
        return _search_and_export(study, problem, space, progress, export, (), verbose)


def _trials_to_run(study) -> bool:
    from search.storage import finished_count, load

    return finished_count(load(study)) < Budget.from_manifest(study.manifest).trials


def _search_and_export(study, problem, space, progress, export, notes, verbose):
    from search.storage import password_env

    backend = get_backend(study.manifest["backend"])
    options = backend.Options.from_manifest(study.manifest)
    # e.g. the driver's GPU, before TensorFlow starts, and a shared storage's password (given in
    # its URL) for the trial child that refits; put back after, so that a notebook's next run (or
    # its own code) sees the environment it had
    env = {**options.process_env(), **password_env(study.storage_url)}
    with environment(env), disk_full_named(study.directory, suggested_command("resume", study.directory)):
        return _search_and_export_with(backend, options, study, problem, space, progress, export, notes, verbose)


@contextlib.contextmanager
def environment(values: dict):
    """os.environ with `values` set, as it was after."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _search_and_export_with(backend, options, study, problem, space, progress, export, notes, verbose):
    from encoderkit.export import remove_leftovers

    # Where this process runs its trials in child processes, it holds one child for the whole
    # command: the baselines and the refit run there too, and this process never imports Keras.
    every = options.trials_per_child
    try:  # Ctrl-C or SIGTERM in any stage (a scheduler's time limit may land in the refit): what is stored so far
        with interrupts.deferred():  # Keras' import, which a Ctrl-C inside would break for the process
            use_keras_backend(study.manifest.get("keras_backend"))
            prepare_for_trials(every, devices.cores_per_worker(options.workers))
            notes = (*notes, *recover(study))
            remove_leftovers(study.export_dir)  # half-written exports of a killed run
        with held(problem, every) as child:
            def here_or_in_child(what, function, *args):
                if child is None:
                    return function(problem, *args)
                try:
                    return child.call(function, *args)
                except ChildDied as exc:
                    raise ChildDied(f"{study.directory}: {exc} while {what}; what is stored is kept, and "
                                    f"{suggested_command('resume', study.directory)} goes on") from None

            for note in notes if verbose else ():
                print(f"note: {note}")
            if not study.baselines():
                study.write_json("baselines.json", here_or_in_child("scoring the baselines", score_baselines))
            if study.manifest.get("storage"):
                publish_baselines(study)
            short = _search(backend, study, problem, space, progress)
            if export:
                _refuse_without_complete_trial(study, short)  # its one line says why the search ended short
            if short:
                notes = (*notes, short)
                if verbose:
                    print(f"note: {short}")
            exported = current_export(study) if export else None
            if exported is not None:
                notes = (*notes, f"trial {exported['trial']} is still the best and already exported: "
                                 "its export is kept (the test part is not scored again)")
                if verbose:
                    print(f"note: {notes[-1]}")
            elif export:
                exported = here_or_in_child("refitting the best trial", refit_study, study, space)
    except (FatalSearchError, ChildDied) as exc:  # e.g. --max-failures: the failed trials' reasons on the leaderboard
        exc.result = result_of(study, notes=notes)
        raise
    except BaseException as exc:
        if not interrupts.is_interrupt(exc):
            raise
        raise Interrupted(result_of(study, notes=notes)) from None
    return result_of(study, exported, notes)


def refit_study(problem, study, space) -> dict:
    """`refit_and_export` of the study's best trial, called with the problem first (as the
    held child calls a function)."""
    return refit_and_export(study, problem, space)


def _refuse_without_complete_trial(study, ended_short):
    """Nothing to export: said with the leaderboard of what failed, and why (as an error raised
    by the export would say it without)."""
    from search.refit import nothing_to_export
    from search.storage import complete_trials, load

    optuna_study = load(study)
    if not complete_trials(optuna_study):
        raise FatalSearchError(nothing_to_export(optuna_study, study.directory, ended_short))


def _search(backend, study, problem, space, progress) -> str | None:
    """Runs the backend to the trial count: a note where it ended short of it (the timeout, or
    the backend's own reason)."""
    from search.storage import finished_count, load

    budget = Budget.from_manifest(study.manifest)
    done = finished_count(load(study))
    bar = ProgressBar(budget.trials, done) if progress and done < budget.trials else None  # none at 0 to go
    started = time.time()
    try:
        ended_short = backend.run(study, problem, space, progress=bar)  # a backend's note, where it stopped short
    finally:
        from search.objective import thaw_heap

        thaw_heap()
        if bar:
            bar.close()
    done = finished_count(load(study))
    if budget.timeout and done < budget.trials and time.time() - started >= budget.timeout:
        return (f"the timeout ({budget.timeout:g} s) ended the search at {done} of {budget.trials} finished trials; "
                f"resume continues it ({suggested_command('resume', study.directory)})")
    return ended_short if done < budget.trials else None


def score_baselines(problem) -> dict:
    """Each baseline's features scored exactly like a candidate's codes: the transformer is fit
    on the rows trials see (unsupervised, as an autoencoder trains on them), then the probe's
    CV on those rows."""
    scores = {}
    for name, make in baselines_for(problem.dataset, len(problem.y)).items():
        transformer = make().fit(problem.trial_X)
        codes = transformer.transform(problem.trial_X)
        mean, std = cv_score(
            codes, problem.trial_y, problem.metric, problem.folds, problem.seed, problem.probe, problem.probe_jobs
        )
        scores[name] = {"cv_mean": mean, "cv_std": std, "detail": f"{codes.shape[1]} features",
                        "probe": resolve_probe(problem.probe)}  # as each trial records its own
    return scores


class ProgressBar:
    """An Optuna callback driving a tqdm bar with finished trials and the best score so far,
    read from the shared storage so it counts the trials of every worker."""

    def __init__(self, total, done=0):
        from tqdm import tqdm

        self.bar = tqdm(total=total, initial=done, desc="trials", unit="trial", dynamic_ncols=True)

    def __call__(self, optuna_study, trial):
        from search.storage import complete_trials, finished_count

        self.bar.n = min(finished_count(optuna_study), self.bar.total)
        values = [t.value for t in complete_trials(optuna_study)]
        if values:
            self.bar.set_postfix(best=f"{np.max(values):.4f}", refresh=False)
        self.bar.refresh()  # one write per finished trial: a job log gets one line each, not two

    def close(self):
        self.bar.close()
