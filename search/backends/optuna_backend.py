"""Optuna backend: seeded TPE over the space, a median pruner on intermediate probe scores,
SQLite storage in the study directory, and `workers` processes sharing it."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

from search.errors import FailedTrial, FatalSearchError
from search.objective import evaluate
from search.suggest import OptunaSuggest, sample

STUDY_NAME = "search"
FINISHED = ("COMPLETE", "PRUNED")
MAX_CONSECUTIVE_FAILURES = 10


def storage(study):
    import optuna

    # A generous SQLite timeout lets several worker processes share the file without
    # "database is locked" errors.
    return optuna.storages.RDBStorage(study.storage_url, engine_kwargs={"connect_args": {"timeout": 60}})


def load(study, worker: int = 0):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        sampler = optuna.samplers.TPESampler(
            seed=study.manifest["seed"] + worker, multivariate=True, group=True, n_startup_trials=8
        )
    pruner = optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=0)
    return optuna.create_study(
        study_name=STUDY_NAME,
        storage=storage(study),
        direction="maximize",
        sampler=sampler,
        pruner=pruner,
        load_if_exists=True,
    )


def finished_count(optuna_study) -> int:
    import optuna

    states = tuple(getattr(optuna.trial.TrialState, s) for s in FINISHED)
    return len(optuna_study.get_trials(deepcopy=False, states=states))


def make_objective(problem, space, seed):
    import optuna

    failures = {"in_a_row": 0}

    def objective(trial):
        candidate = sample(space, OptunaSuggest(trial))
        trial_seed = seed + trial.number
        trial.set_user_attr("candidate", candidate)
        trial.set_user_attr("seed", trial_seed)
        trial.set_user_attr("worker_pid", os.getpid())

        def report(step, value):
            trial.report(value, step)
            if trial.should_prune():
                raise optuna.TrialPruned(f"intermediate score {value:.4f} at epoch {step}")

        try:
            outcome = evaluate(problem, candidate, trial_seed, report)
        except FailedTrial as exc:
            failures["in_a_row"] += 1
            trial.set_user_attr("fail_reason", str(exc))
            if failures["in_a_row"] >= MAX_CONSECUTIVE_FAILURES:
                raise FatalSearchError(
                    f"{failures['in_a_row']} trials failed in a row; last: {exc}"
                ) from None
            raise
        failures["in_a_row"] = 0
        for key in ("score_std", "epochs_run", "seconds"):
            trial.set_user_attr(key, outcome[key])
        return outcome["score"]

    return objective


def optimize(study, problem, space, worker=0, callbacks=()):
    """Runs trials in this process until the study holds the requested number of finished
    trials (counted across all workers) or the timeout passes."""
    from optuna.study import MaxTrialsCallback
    from optuna.trial import TrialState

    optuna_study = load(study, worker)
    target = study.manifest["trials"]
    if finished_count(optuna_study) >= target:
        return optuna_study
    optuna_study.optimize(
        make_objective(problem, space, study.manifest["seed"]),
        n_trials=target * 3,  # an upper bound; MaxTrialsCallback stops at the target
        timeout=study.manifest.get("timeout"),
        catch=(FailedTrial,),
        callbacks=[MaxTrialsCallback(target, states=(TrialState.COMPLETE, TrialState.PRUNED)), *callbacks],
        gc_after_trial=True,
    )
    return optuna_study


def run(study, problem, space, progress=None):
    """Starts `workers - 1` extra processes and works as worker 0 in this one."""
    workers = int(study.manifest.get("workers", 1))
    log_dir = study.directory / "logs"
    log_dir.mkdir(exist_ok=True)
    procs = []
    for index in range(1, workers):
        log = open(log_dir / f"worker-{index}.log", "ab")
        cmd = [sys.executable, "-m", "search", "_worker", str(study.directory), "--index", str(index)]
        procs.append((subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=worker_env(index)), log))
    try:
        callbacks = [progress] if progress else []
        optimize(study, problem, space, worker=0, callbacks=callbacks)
    finally:
        for proc, log in procs:
            proc.wait()
            log.close()
    failed = [p for p, _ in procs if p.returncode != 0]
    if failed:
        raise FatalSearchError(
            f"{len(failed)} worker process(es) failed; see {log_dir}/worker-*.log"
        )


def worker_env(index: int) -> dict:
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # Workers must import the same `search` and `encoderkit` as this process, installed or not.
    import encoderkit
    import search

    roots = {str(Path(m.__file__).resolve().parents[1]) for m in (search, encoderkit)}
    env["PYTHONPATH"] = os.pathsep.join([*sorted(roots), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env
