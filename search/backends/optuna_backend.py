"""Optuna backend: seeded TPE over the space, a median pruner on intermediate probe scores,
SQLite storage in the study directory, and `workers` processes sharing it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import warnings
from pathlib import Path

from search import interrupts
from search.errors import FailedTrial, FatalSearchError, PruneTrial
from search.faults import crash_point
from search.objective import evaluate, evaluate_in_subprocess
from search.storage import FINISHED, finished_count, load, worker_identity
from search.suggest import OptunaSuggest, sample

DEFAULT_MAX_FAILURES = 10


def load_for_search(study, worker: int = 0):
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        sampler = optuna.samplers.TPESampler(
            seed=study.manifest["seed"] + worker, multivariate=True, group=True, n_startup_trials=8
        )
    pruner = optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=0)
    return load(study, sampler, pruner)


def make_objective(problem, space, manifest):
    """The Optuna objective: sample, evaluate, record. A failing trial is recorded with its
    reason and the search goes on; `max_failures` failures in a row end the search."""
    import optuna

    seed = manifest["seed"]
    max_failures = int(manifest.get("max_failures", DEFAULT_MAX_FAILURES))
    run_trial = evaluate_in_subprocess if manifest.get("fresh_process") else evaluate
    failures = {"in_a_row": 0}

    def objective(trial):
        candidate = sample(space, OptunaSuggest(trial))
        trial_seed = seed + trial.number
        trial.set_user_attr("candidate", candidate)
        trial.set_user_attr("seed", trial_seed)
        for key, value in worker_identity().items():
            trial.set_user_attr(key, value)

        def report(step, value):
            trial.report(value, step)
            if trial.should_prune():
                raise PruneTrial(f"intermediate score {value:.4f} at epoch {step}")

        try:
            outcome = run_trial(problem, candidate, trial_seed, report)
        except PruneTrial as exc:
            raise optuna.TrialPruned(str(exc)) from None
        except FailedTrial as exc:
            failures["in_a_row"] += 1
            trial.set_user_attr("fail_reason", str(exc))
            if failures["in_a_row"] >= max_failures:
                raise FatalSearchError(
                    f"{failures['in_a_row']} trials failed in a row (--max-failures {max_failures}); last: {exc}"
                ) from None
            raise
        except KeyboardInterrupt:
            trial.set_user_attr("fail_reason", "interrupted (Ctrl-C)")
            raise
        failures["in_a_row"] = 0
        for key in ("score_std", "epochs_run", "seconds", "retried_batch_size"):
            if key in outcome:
                trial.set_user_attr(key, outcome[key])
        crash_point("trial_written")  # attributes stored, final state not yet
        return outcome["score"]

    return objective


def optimize(study, problem, space, worker=0, callbacks=()):
    """Runs trials in this process until the study holds the requested number of finished
    trials (counted across all workers) or the timeout passes."""
    from optuna.study import MaxTrialsCallback
    from optuna.trial import TrialState

    optuna_study = load_for_search(study, worker)
    target = study.manifest["trials"]
    if finished_count(optuna_study) >= target:
        return optuna_study
    with interrupts.graceful():
        optuna_study.optimize(
            make_objective(problem, space, study.manifest),
            n_trials=None,  # MaxTrialsCallback stops at the target; --max-failures guards a loop of failures
            timeout=study.manifest.get("timeout"),
            catch=(FailedTrial,),
            callbacks=[
                MaxTrialsCallback(target, states=tuple(getattr(TrialState, s) for s in FINISHED)),
                *callbacks,
                lambda optuna_study, trial: interrupts.check(),  # Ctrl-C between trials
            ],
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
    except KeyboardInterrupt:
        for proc, _ in procs:  # a terminal sends Ctrl-C to all; a `kill -INT` only to us
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        raise
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
