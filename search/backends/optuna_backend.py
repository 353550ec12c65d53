"""Optuna backend: seeded TPE over the space, a median pruner on intermediate probe scores,
SQLite storage in the study directory, and `workers` processes sharing it, each on its own
GPU (round-robin over `--gpus`) when there are GPUs."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path

from search import interrupts
from search import devices
from search.backends.records import TrialLifecycle, interrupted
from search.errors import FailedTrial, FatalSearchError, PruneTrial, settings_naming_env, suggested_command
from search import faults
from search.faults import crash_point
from search.lock import inherited_fd
from search.trial_process import PARENT_ENV
from search.trial_process import trial_runner
from search.settings import Budget, OptunaOptions
from search.storage import FINISHED, SURPLUS, finished_count, load, password_env
from search.suggest import OptunaSuggest, sample

Options = OptunaOptions


def load_for_search(study, worker: int = 0):
    """The study with a TPE sampler seeded by the study's seed, this worker and the trials
    already stored: a resumed or extended study draws new candidates (seeded by the study's
    seed alone, every run's random start-up draws repeated the first run's trials)."""
    import numpy as np
    import optuna

    optuna_study = load(study, pruner=optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=0))
    stored = len(optuna_study.get_trials(deepcopy=False))
    seed = int(np.random.SeedSequence([int(study.manifest["seed"]), worker, stored]).generate_state(1)[0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna_study.sampler = optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True, n_startup_trials=8)
    return optuna_study


def make_objective(space, life, run_trial):
    """The Optuna objective: sample, evaluate with `run_trial(candidate, seed, report)`, and
    end the trial as the shared lifecycle says (search/backends/records.py)."""
    import optuna

    def objective(trial):
        if is_surplus(trial, life.target):  # another worker began the last trial first
            keep_queued(trial)
            trial.set_user_attr(SURPLUS, True)
            trial.study.stop()
            raise FailedTrial("surplus: the requested trials were all done or running when it began; nothing ran")
        candidate = sample(space, OptunaSuggest(trial))
        _set_attrs(trial, life.start(candidate, trial.number))

        def report(step, value):
            trial.report(value, step)
            if trial.should_prune():
                raise PruneTrial(f"intermediate score {value:.4f} at epoch {step}")

        try:
            outcome = run_trial(candidate, life.seed(trial.number), report)
        except PruneTrial as exc:
            raise optuna.TrialPruned(str(exc)) from None
        except (FailedTrial, KeyboardInterrupt) as exc:
            _set_attrs(trial, life.end(failure=str(exc) if isinstance(exc, FailedTrial) else interrupted())[2])
            if isinstance(exc, KeyboardInterrupt):  # cut short, not judged: `resume` runs its config first
                trial.study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number})
            if life.fatal:
                raise life.fatal_error() from None
            raise
        _, value, attrs = life.end(outcome)
        _set_attrs(trial, attrs)
        crash_point("trial_written")  # attributes stored, final state not yet
        return value

    return objective


def _set_attrs(trial, attrs: dict):
    for key, value in attrs.items():
        trial.set_user_attr(key, value)


def is_surplus(trial, target: int) -> bool:
    """Whether `target` trials were finished or running when this one began. Trial numbers
    are handed out by the storage one at a time, so of two workers starting the last trial
    at once exactly one runs it: the count is exact across processes and machines."""
    from optuna.trial import TrialState

    counted = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
    return sum(t.number < trial.number for t in trial.study.get_trials(deepcopy=False, states=counted)) >= target


def keep_queued(trial):
    """A surplus trial that came from the queue (a start point, a retried config) puts its
    config back, so a later run with more trials still tries it."""
    frozen = next(t for t in trial.study.get_trials(deepcopy=False) if t.number == trial.number)
    fixed = frozen.system_attrs.get("fixed_params")
    if fixed:
        trial.study.enqueue_trial(fixed, user_attrs=dict(frozen.user_attrs))


def optimize(study, problem, space, worker=0, callbacks=(), until_count=False):
    """Runs trials in this process until the study holds the requested number of finished
    trials (counted across all workers, here and on other machines) or the timeout passes.
    A worker whose next trial would be one too many stops; with `until_count` (the run's
    own process, and a joiner where a heartbeat tells a dead machine's trials) it then waits
    for the others' last trials and takes over any that fail."""
    from optuna.study import MaxTrialsCallback
    from optuna.trial import TrialState

    optuna_study = load_for_search(study, worker)
    budget, options = Budget.from_manifest(study.manifest), Options.from_manifest(study.manifest)
    target = budget.trials
    deadline = study_deadline(optuna_study, budget)
    # `fresh_process`: trials run in a child process replaced every that many trials
    with interrupts.graceful(), trial_runner(problem, options.fresh_process) as run_trial:
        while finished_count(optuna_study) < target and (deadline is None or time.time() < deadline):
            optuna_study.optimize(
                make_objective(space, TrialLifecycle(study), run_trial),
                n_trials=None,  # MaxTrialsCallback stops at the target; --max-failures guards a loop of failures
                timeout=None if deadline is None else max(0.0, deadline - time.time()),
                catch=(FailedTrial,),
                callbacks=[
                    MaxTrialsCallback(target, states=tuple(getattr(TrialState, s) for s in FINISHED)),
                    *callbacks,
                    lambda optuna_study, trial: interrupts.check(),  # Ctrl-C between trials
                ],
                gc_after_trial=False,  # `evaluate` collects once per trial itself
            )
            if not until_count:
                break
            joined = study.manifest.get("joined")  # a joiner leaves the export to the study's run
            wait_for_running(optuna_study, study.directory,
                             stop_hint=joined_stop_hint(study.directory) if joined else None)
    return optuna_study


def joined_stop_hint(directory) -> str:
    return (f"the study's run exports what finished (if that machine is gone: "
            f"`{suggested_command('export', directory)}`)")


DEADLINE = "deadline"  # the study's user attribute: when (epoch seconds) its run's --timeout ends


def publish_deadline(study):
    """The run's --timeout as one deadline for the whole study, in its storage: its other
    workers and those joining from other machines start no trial after it (each counting
    the timeout from its own start let a joiner start trials after the run had exported)."""
    load(study).set_user_attr(DEADLINE, Budget.from_manifest(study.manifest).deadline_from_now())


def study_deadline(optuna_study, budget):
    """The deadline the study's run published; a worker of a study without one counts from now."""
    if DEADLINE in optuna_study.user_attrs:
        return optuna_study.user_attrs[DEADLINE]
    return budget.deadline_from_now()


def wait_for_running(optuna_study, study_dir, say_after=10.0, stop_hint=None):
    """Waits while other workers' trials run, past the timeout too (it stops trials from
    starting, and a late trial could beat the export); a trial whose worker is gone (a dead
    PID on this host, or a heartbeat stopped on an RDB storage) is failed and its config
    queued again. A wait longer than `say_after` seconds names what it waits for and how to
    stop it (`stop_hint`: what to do then; the run's own export by default)."""
    import optuna
    from optuna.trial import TrialState

    from search.storage import fail_dead_local_trials, where_running

    stop_hint = stop_hint or f"`{suggested_command('export', study_dir)}` then exports what finished"
    started, said, here = time.monotonic(), False, socket.gethostname()
    while running := optuna_study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        for note in fail_dead_local_trials(optuna_study):
            print(f"note: {note}", file=sys.stderr, flush=True)
        # (this machine's workers end their last trials as usual: said only for other machines')
        elsewhere = any(t.user_attrs.get("worker_host") != here for t in running)
        if not said and elsewhere and time.monotonic() - started >= say_after:
            said = True
            names = ", ".join(map(where_running, running[:5]))
            print(f"waiting for {len(running)} trial(s) still running: {names}{' ...' if len(running) > 5 else ''}; "
                  f"Ctrl-C stops the wait, and {stop_hint}", file=sys.stderr, flush=True)
        interrupts.check()
        time.sleep(1.0)
        with warnings.catch_warnings():  # experimental in Optuna: a warning each run, not the user's concern
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(optuna_study)  # a no-op where the storage has no heartbeat


def run(study, problem, space, progress=None):
    """Starts `workers - 1` extra processes and works as worker 0 in this one."""
    enqueue_start_points(study, space)
    publish_deadline(study)
    options = Options.from_manifest(study.manifest)
    workers = options.workers
    log_dir = study.directory / "logs"
    log_dir.mkdir(exist_ok=True)
    procs = []
    for index in range(1, workers):
        log = open(log_dir / f"worker-{index}.log", "ab")  # (kept across runs: this one's part starts at its end)
        cmd = [sys.executable, "-m", "search", "_worker", str(study.directory), "--index", str(index)]
        env = {**worker_env(index, devices.for_worker(options.gpus, index)), **password_env(study.storage_url),
               PARENT_ENV: str(os.getpid())}
        # The workers hold the study's lock with this process and die with it (`die_with`).
        procs.append((subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env,
                                       pass_fds=inherited_fd(study.directory)), log, log.tell()))
    try:
        callbacks = [progress] if progress else []
        optimize(study, problem, space, worker=0, callbacks=callbacks, until_count=True)
    except BaseException as exc:
        if not interrupts.is_interrupt(exc):
            raise
        for proc, *_ in procs:  # a terminal sends Ctrl-C to all; a `kill -INT` or `-TERM` only to us
            if proc.poll() is None:
                proc.send_signal(interrupts.received())
        raise
    finally:
        for proc, log, _ in procs:
            proc.wait()
            log.close()
    # A worker killed by a signal (the OOM killer, a user's kill) left its trial to the others,
    # which ran it again: a note. One that ended in an error is a fault of ours: the search stops.
    killed = [p for p, *_ in procs if p.returncode < 0]
    for proc in killed:
        print(f"note: worker process {proc.pid} was killed (signal {-proc.returncode}) during the search; the "
              "other workers ran its trial again", file=sys.stderr, flush=True)
    failed = [(index, proc, start) for index, (proc, _, start) in enumerate(procs, start=1) if proc.returncode > 0]
    if failed:
        logs = {index: log_dir / f"worker-{index}.log" for index, _, _ in failed}
        raise FatalSearchError("; ".join(
            f"worker process {index} failed: {worker_failure(logs[index], start, proc.returncode)} "
            f"(its log: {logs[index]})" for index, proc, start in failed))


def worker_failure(log: Path, start: int, status: int) -> str:
    """Why a worker process ended in an error, from the end of its log (what it wrote from
    `start` on, not an earlier run's): its one-line `error:` (ours, e.g. its trials failed
    `max_failures` times in a row), else the last line (a traceback's exception), else its
    exit status."""
    try:
        with open(log, "rb") as file:
            file.seek(max(start, file.seek(0, os.SEEK_END) - 8192))
            lines = [line.strip() for line in file.read().decode(errors="replace").splitlines() if line.strip()]
    except OSError:
        lines = []
    errors = [line.removeprefix("error: ") for line in lines if line.startswith("error: ")]
    return errors[-1] if errors else lines[-1] if lines else f"exit status {status}"


def enqueue_start_points(study, space):
    """The space's start points become the first trials of a new study (all workers draw
    from the same queue); a continued or resumed study had them already."""
    optuna_study = load(study)
    if optuna_study.get_trials(deepcopy=False):
        return
    for point in space.start_points():
        optuna_study.enqueue_trial(point, skip_if_exists=True)


def worker_env(index: int, device_env: dict) -> dict:
    env = {**os.environ, **device_env, **faults.hook_env(), **settings_naming_env()}
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # Workers must import the same `search` and `encoderkit` as this process, installed or not.
    import encoderkit
    import search

    roots = {str(Path(m.__file__).resolve().parents[1]) for m in (search, encoderkit)}
    env["PYTHONPATH"] = os.pathsep.join([*sorted(roots), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env
