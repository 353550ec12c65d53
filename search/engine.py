"""The Python API that the CLI is a thin layer over:

    import search
    result = search.run("digits", trials=20, study_dir="runs/digits")
    result.export_dir, result.best_params, result.leaderboard

`run` creates (or continues) a study, scores the baselines, runs the backend, exports the
best encoder and returns a `StudyResult`."""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from encoderkit.baselines import baselines_for
from encoderkit.data import load_dataset
from encoderkit.export import check_destination
from encoderkit.probe import METRICS, REFERENCE, cv_score, test_score
from search import compile_cache, devices
from search.backends import get_backend
from search.errors import Interrupted, SearchError, StudyError
from search.lock import check_free, study_lock
from search.preflight import check_installed, check_test_size, check_writable_study_dir, keras_backend_to_use
from search.faults import crash_point
from search.leaderboard import format_leaderboard, trial_rows
from search.problem import make_problem
from search.quiet import import_keras_quietly
from search.space import load_space
from search.storage import load, load_readonly, recover
from search.study import check_same_study, create_or_check, open_study
from search.suggest import FixedSuggest, sample, transformer_params


@dataclass(frozen=True)
class StudyResult:
    study_dir: Path
    export_dir: Path | None
    best_trial: int | None
    best_params: dict | None
    best_cv: float | None
    test: dict | None
    leaderboard: str
    notes: tuple = field(default_factory=tuple)


def run(
    data="digits",
    *,
    target=None,
    data_dir=None,
    space="default",
    scale=1.0,
    trials=30,
    timeout=None,
    backend="optuna",
    workers=1,
    gpus="auto",
    address=None,
    cpus_per_trial=1,
    gpus_per_trial=0,
    algorithm="random",
    max_failures=10,
    fresh_process=None,
    metric=None,
    seed=0,
    test_size=0.25,
    subsample=None,
    study_dir=None,
    progress=True,
    export=True,
) -> StudyResult:
    if int(workers) < 1:
        raise SearchError(f"workers: must be at least 1, got {workers}")
    if int(trials) < 1:
        raise SearchError(f"trials: must be at least 1, got {trials}")
    if int(max_failures) < 1:
        raise SearchError(f"max_failures: must be at least 1, got {max_failures}")
    if timeout is not None and float(timeout) <= 0:
        raise SearchError(f"timeout: must be positive seconds, got {timeout}")
    fresh_process = _trials_per_process(fresh_process, backend)
    if subsample is not None and int(subsample) < 1:
        raise SearchError(f"subsample: must be a positive number of rows, got {subsample}")
    if metric is not None and metric not in METRICS:
        raise SearchError(f"metric: unknown metric {metric!r} (known: {', '.join(METRICS)})")
    test_size = check_test_size(test_size)
    check_installed("keras_backend", keras_backend_to_use())  # before a manifest records it
    backend_settings = get_backend(backend).check_settings(
        workers=int(workers), address=address, cpus_per_trial=cpus_per_trial, gpus_per_trial=gpus_per_trial,
        algorithm=algorithm,
    )  # unknown backends and settings fail before any work
    gpu_ids = devices.resolve_gpus(gpus)
    loaded = load_space(space, scale)
    dataset = load_dataset(data, target, data_dir)
    restricted, notes = loaded.for_kind(dataset.kind)
    notes = [*dataset.notes, *notes]
    if backend == "kerastuner" and restricted.start:  # its oracles choose every value themselves
        notes.append("the kerastuner backend does not take the space's start points (optuna and ray do): skipped")
    problem = make_problem(
        dataset,
        test_size=test_size,
        seed=seed,
        metric=metric or loaded.probe_setting("metric"),
        folds=loaded.probe_setting("cv"),
        probe=loaded.probe_setting("model"),
        workers=workers,
        subsample=subsample,
    )
    notes.extend(problem.notes)
    study_dir = check_writable_study_dir(study_dir or f"studies/{dataset.name}-{time.strftime('%Y%m%d-%H%M%S')}")
    settings = {
        "data": str(data), "target": target, "data_dir": data_dir, "seed": int(seed), "test_size": test_size,
        "subsample": problem.subsample,
        "trials": int(trials), "timeout": timeout, "scale": scale, "backend": backend, "workers": int(workers),
        "max_failures": int(max_failures), "fresh_process": int(fresh_process), "gpus": gpu_ids,
        **backend_settings,
    }
    check_free(study_dir)
    check_same_study(study_dir, settings, problem, loaded)  # refused before the lock is touched
    created = _make_directory(study_dir)
    with study_lock(study_dir, "run"):
        try:
            study = create_or_check(study_dir, settings, loaded.source, problem, loaded)
        except BaseException:
            if created:  # a refused run leaves nothing behind
                shutil.rmtree(study_dir, ignore_errors=True)
            raise
        study.manifest.update({k: settings[k] for k in BUDGET_KEYS if k in settings})
        study.write_json("manifest.json", study.manifest)
        return _search_and_export(study, problem, restricted, progress, export, notes)


def _make_directory(directory: Path) -> bool:
    """Creates the study directory; whether this call created it (atomically: of two runs
    started at once, only one did)."""
    directory.parent.mkdir(parents=True, exist_ok=True)
    try:
        directory.mkdir()
    except FileExistsError:
        return False
    return True


# Optuna trials run in a child process replaced every this many trials unless told otherwise:
# TensorFlow keeps what it traced for every fit, so a long-lived process grows ~6 MiB per
# trial (tensorflow#61791); a child per 25 trials bounds that for the price of one TensorFlow
# import per 25 trials, started while the last child finishes (benchmarks/results/memory.md).
DEFAULT_TRIALS_PER_PROCESS = 25


def _trials_per_process(value, backend) -> int:
    """`fresh_process`: None = the backend's default, 0 = every trial in this process, K =
    a child process replaced every K trials (True means 1, a new process per trial)."""
    if value is None:
        return DEFAULT_TRIALS_PER_PROCESS if backend == "optuna" else 0
    if int(value) < 0:
        raise SearchError(f"fresh_process: must be a number of trials per process, got {value}")
    if int(value) and backend != "optuna":
        raise SearchError(f"fresh_process: not an option of backend {backend}")
    return int(value)


# Settings a re-run of `run` on an existing study may change: how much to search, not what.
BUDGET_KEYS = (
    "trials", "timeout", "workers", "backend", "data_dir", "max_failures", "fresh_process", "gpus",
    "address", "cpus_per_trial", "gpus_per_trial", "algorithm",
)


def resume(study_dir, *, progress=True, export=True) -> StudyResult:
    """Continues a stopped or crashed study to its requested number of trials."""
    study = open_study(study_dir)
    check_writable_study_dir(study.directory)
    check_free(study.directory)
    check_installed("backend", study.manifest["backend"])
    check_installed(f"{study.directory}: Keras backend", study.manifest.get("keras_backend") or "tensorflow")
    problem, space = study.problem(), study.space()  # a changed space or data refuses before the lock
    with study_lock(study.directory, "resume"):
        return _search_and_export(study, problem, space, progress, export, ())


def _search_and_export(study, problem, space, progress, export, notes):
    from encoderkit.export import remove_leftovers

    if study.manifest["backend"] == "optuna":  # worker 0 is this process: its GPU before TF starts
        os.environ.update(devices.for_worker(study.manifest.get("gpus"), 0))
    _use_keras_backend(study.manifest.get("keras_backend"))
    import_keras_quietly()
    compile_cache.enable()  # JAX: programs compiled once serve every worker, trial and export
    devices.limit_threads(devices.cores_per_worker(study.manifest.get("workers", 1)))
    notes = (*notes, *recover(study))
    remove_leftovers(study.export_dir)  # half-written exports of a killed run
    for note in notes:
        print(f"note: {note}")
    if not study.baselines():
        study.write_json("baselines.json", score_baselines(problem))
    backend = get_backend(study.manifest["backend"])
    bar = _ProgressBar(study.manifest["trials"]) if progress else None
    try:
        backend.run(study, problem, space, progress=bar)
    except KeyboardInterrupt:
        raise Interrupted(result_of(study, notes=notes)) from None
    finally:
        from search.objective import thaw_heap

        thaw_heap()
        if bar:
            bar.close()
    exported = _export(study, problem, space) if export else None
    return result_of(study, exported, notes)


def _use_keras_backend(name):
    """A study keeps the Keras backend it began with (resume included); workers inherit it."""
    import sys

    if not name:
        return
    if "keras" in sys.modules:
        active = sys.modules["keras"].backend.backend()
        if active != name:
            raise StudyError(f"study uses Keras backend {name!r} but this process already runs {active!r}; "
                             f"set KERAS_BACKEND={name}")
        return
    os.environ["KERAS_BACKEND"] = name


def score_baselines(problem) -> dict:
    """Raw and PCA codes scored exactly like a candidate: CV on the rows trials see."""
    scores = {}
    for name, make in baselines_for(problem.dataset).items():
        transformer = make().fit(problem.trial_X)
        codes = transformer.transform(problem.trial_X)
        mean, std = cv_score(
            codes, problem.trial_y, problem.metric, problem.folds, problem.seed, problem.probe, problem.probe_jobs
        )
        scores[name] = {"cv_mean": mean, "cv_std": std, "detail": f"{codes.shape[1]} features"}
    return scores


def export_best(study_dir, trial=None, out=None) -> dict:
    """Refits the best (or the given) trial on the whole search part with its seed (also when
    trials saw a subsample of it), scores the test part once, and writes the export: to
    `STUDY/export` for the best trial, `STUDY/export-trial-N` for another one, or to `out`,
    which must not exist yet or be an export directory (replaced as a whole). Every use of
    the test part is recorded in the study (`test_uses`). Returns the export manifest."""
    study = open_study(study_dir)
    check_writable_study_dir(study.directory)
    check_free(study.directory)
    destination = export_destination(study, trial, out)
    check_destination(destination)  # before minutes of refitting
    _pick_trial(load_readonly(study), trial, study.directory)  # a bad --trial touches nothing
    with study_lock(study.directory, "export"):
        return _export(study, trial=trial, out=destination)


def export_destination(study, trial=None, out=None) -> Path:
    if out is not None:
        if trial is not None and Path(out).resolve() == study.export_dir.resolve():
            raise StudyError(f"{out}: holds the study's best trial; write trial {trial} elsewhere "
                             f"(default: {study.directory / f'export-trial-{int(trial)}'})")
        return Path(out)
    return study.export_dir if trial is None else study.directory / f"export-trial-{int(trial)}"


def _export(study, problem=None, space=None, trial=None, out=None) -> dict:
    from encoderkit.export import save_export
    from encoderkit.transformer import AutoencoderTransformer

    import_keras_quietly()
    compile_cache.enable()
    problem = problem or study.problem()
    space = space or study.space()
    optuna_study = load(study)
    chosen = _pick_trial(optuna_study, trial, study.directory)
    candidate = _replayed_candidate(space, chosen, study.directory)
    seed = int(chosen.user_attrs["seed"])
    transformer = AutoencoderTransformer(**transformer_params(candidate, seed, problem.dataset.shape))
    transformer.fit(_named(problem, problem.X))  # a CSV's column names travel with the export
    X_test, y_test = problem.test_part()
    test = _held_out_score(problem, transformer, X_test, y_test)
    baselines_test = {
        name: _held_out_score(problem, make().fit(_named(problem, problem.X)), X_test, y_test) for name, make in baselines_for(problem.dataset).items()
    }
    manifest = {
        "trial": chosen.number,
        "candidate": candidate,
        "transformer_params": transformer.get_params(),
        "cv_score": chosen.value,
        "cv_std": chosen.user_attrs.get("score_std"),
        "metric": problem.metric,
        "test": test,
        "baselines_test": baselines_test,
        "n_test_rows": int(len(y_test)),
        "n_fit_rows": int(len(problem.y)),  # the export's training rows: the whole search part
        "n_trial_rows": int(len(problem.trial_y)),  # what each trial trained and was scored on
        "data": {
            "name": problem.dataset.name,
            "kind": problem.dataset.kind,
            "shape": list(problem.dataset.shape),
            "n_features": int(problem.X.shape[1]),
            "feature_names": list(problem.dataset.feature_names) if problem.dataset.feature_names else None,
            "target_name": problem.dataset.target_name,
        },
        "split_hash": study.manifest["split_hash"],
        "space_digest": study.manifest["space_digest"],
        "seed": seed,
        "study": str(study.directory.resolve()),
    }
    destination = Path(out) if out else study.export_dir
    # Recorded as soon as it is made: the look at the test part counts even if writing fails.
    study.record_test_use(trial=chosen.number, metric=problem.metric, test=test, destination=destination,
                          best=chosen.number == _pick_trial(optuna_study, None, study.directory).number)
    save_export(destination, transformer, manifest, before_publish=lambda: crash_point("export_staged"))
    if trial is None and destination.resolve() == study.export_dir.resolve():  # the study's own export
        study.write_json("export.json", manifest)
    return manifest


def replay(study_dir, trial: int) -> dict:
    """Re-scores a completed trial exactly as the search did (same config, seed, split and
    CV folds) and returns the stored and replayed CV scores."""
    from search.objective import evaluate

    import_keras_quietly()
    study = open_study(study_dir)
    chosen = _pick_trial(load(study), trial, study.directory)
    candidate = _replayed_candidate(study.space(), chosen, study.directory)
    # The same checkpoint callbacks run as in the search; nothing is pruned.
    outcome = evaluate(study.problem(), candidate, int(chosen.user_attrs["seed"]), report=lambda step, value: None)
    return {"trial": chosen.number, "metric": study.manifest["metric"], "stored": chosen.value,
            "replayed": outcome["score"], "seconds": outcome["seconds"]}


def _replayed_candidate(space, chosen, directory) -> dict:
    """The trial's config rebuilt from its stored parameters through the same sampling path."""
    candidate = sample(space, FixedSuggest(chosen.params))
    if candidate != chosen.user_attrs.get("candidate", candidate):
        raise StudyError(f"{directory}: trial {chosen.number} does not replay to its stored config")
    return candidate


def _held_out_score(problem, fitted, X_test, y_test) -> dict:
    """The reference probe fit on the search part's features, scored once on the test part
    (whatever cheaper probe ranked the candidates)."""
    score, low, high = test_score(
        fitted.transform(_named(problem, problem.X)), problem.y, fitted.transform(_named(problem, X_test)), y_test,
        problem.metric, seed=problem.seed, probe=REFERENCE,
    )
    return {"score": score, "low": low, "high": high}


def _named(problem, X):
    """X as a DataFrame with the dataset's column names where it has them (a CSV's header),
    so the exported encoder knows its columns by name."""
    names = problem.dataset.feature_names
    if not names:
        return X
    import pandas as pd

    return pd.DataFrame(X, columns=list(names))


def _pick_trial(optuna_study, number, directory):
    complete = [t for t in optuna_study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
    if number is None:
        if not complete:
            raise StudyError(f"{directory}: no completed trial to export")
        return max(complete, key=lambda t: t.value)
    match = [t for t in complete if t.number == int(number)]
    if not match:
        raise StudyError(f"trial {number}: not a completed trial of {directory}")
    return match[0]


def result_of(study, exported=None, notes=(), optuna_study=None, top=10) -> StudyResult:
    optuna_study = optuna_study or load(study)
    rows = trial_rows(optuna_study)
    if exported is None and (study.directory / "export.json").is_file():
        import json

        exported = json.loads((study.directory / "export.json").read_text())
    board = format_leaderboard(rows, study.baselines(), study.manifest["metric"], exported, top=top,
                               test_uses=study.test_uses())
    best = exported or {}
    return StudyResult(
        study_dir=study.directory,
        export_dir=study.export_dir if exported else None,
        best_trial=best.get("trial"),
        best_params=best.get("transformer_params"),
        best_cv=best.get("cv_score"),
        test=best.get("test"),
        leaderboard=board,
        notes=tuple(notes),
    )


class _ProgressBar:
    """An Optuna callback driving a tqdm bar with finished trials and the best score so far,
    read from the shared storage so it counts the trials of every worker."""

    def __init__(self, total):
        from tqdm import tqdm

        self.bar = tqdm(total=total, desc="trials", unit="trial", dynamic_ncols=True)

    def __call__(self, optuna_study, trial):
        from search.storage import finished_count

        self.bar.n = min(finished_count(optuna_study), self.bar.total)
        values = [t.value for t in optuna_study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
        if values:
            self.bar.set_postfix(best=f"{np.max(values):.4f}")
        self.bar.refresh()

    def close(self):
        self.bar.close()
