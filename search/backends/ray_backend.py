"""Ray Tune backend: one machine or a Ray cluster.

Ray Tune runs the trials (`Tuner` + `OptunaSearch` define-by-run over the same `sample` code
as the Optuna backend, `ASHAScheduler` on the intermediate probe scores, `reuse_actors` so
TensorFlow is imported once per actor, CPUs and fractional GPUs per trial). The driver records
each finished trial in the study's Optuna storage (records.py), so the leaderboard, export and
report are the same as for every backend. Ray's own experiment state lives in DIR/ray/exp-N.
A run or `resume` starts a new experiment for whatever the requested count still lacks (failed
trials do not count, as with Optuna), its searcher told every completed trial the study holds.
An experiment a crash cut off is not restored with `Tuner.restore`: its searcher came back
from a checkpoint older than the study (it suggested stored trials again, past the count), and
with the deadline it was started with (a later --timeout was ignored)."""

from __future__ import annotations

import json
import os
import time
import warnings
from pathlib import Path

import ray
from ray import tune

from search import interrupts
from search.backends.records import TrialLifecycle, cut_short, interrupted, record_trial, recorded_ids, trial_attrs
from search.errors import FailedTrial, SearchError
from search.faults import crash_point
from search.objective import CHECKPOINTS, evaluate
from search.ray_connection import start_ray, tune_environment
from search.settings import RayOptions
from search.storage import load
from search.suggest import FixedSuggest, OptunaSuggest, sample

EXPERIMENTS = "ray"  # under the study directory
TRIAL_ID = "ray_trial_id"  # attribute linking a stored trial to Ray's trial
SCORE = "score"  # the probe score: intermediate (subsample) results, then the final CV score
FINAL = "final"  # marks the final result; a trial without one was stopped by ASHA
NODE = "ray_node"  # attribute: the id of the Ray node the trial ran on

# Tune's sessions of this driver process, by study directory. Tune pickles its callbacks and
# stoppers into the experiment state, so they carry only the key and find the live storage,
# progress bar and failure count here.
_SESSIONS: dict = {}


Options = RayOptions


def run(study, problem, space, progress=None):
    with tune_environment():
        return _run(study, problem, space, progress)


def _run(study, problem, space, progress):
    manifest = study.manifest
    options = Options.from_manifest(manifest)
    session = _Session(study, space, progress)
    if not session.should_continue():  # nothing to run: no cluster needed (it may be gone)
        return
    start_ray(options.address)
    session.life.start_clock()  # --timeout counts the search, not Ray's start (seconds on a busy machine)
    key = str(study.directory.resolve())
    _SESSIONS[key] = session
    root = (study.directory / EXPERIMENTS).resolve()
    trainable = tune.with_resources(
        tune.with_parameters(_trial, problem=problem, space=space, base_seed=int(manifest["seed"]),
                             cores=max(1, int(options.cpus_per_trial)),
                             keras_backend=manifest.get("keras_backend") or "tensorflow"),
        {"cpu": options.cpus_per_trial, "gpu": options.gpus_per_trial},
    )
    try:
        with interrupts.graceful():
            while session.should_continue():
                name = f"exp-{len(_experiments(root)) + 1}"
                stored = len(session.recorded)
                _new_tuner(study, space, trainable, root, name, session).fit()
                if len(session.recorded) == stored and session.should_continue():
                    # Every experiment stores at least one trial; one that stored none would be
                    # followed by another for ever (as under Ray Client, seen before it was refused).
                    raise SearchError(f"Ray ran experiment {root / name} and none of its trials reached the "
                                      "study; stopped (Ray's logs are in its session directory)")
            interrupts.check()
    finally:
        _SESSIONS.pop(key, None)
    if session.life.fatal:
        raise session.life.fatal_error()


def _experiments(root: Path) -> list[Path]:
    found = [p for p in root.glob("exp-*") if p.is_dir()] if root.is_dir() else []
    return sorted(found, key=lambda p: int(p.name.split("-")[1]))


def _new_tuner(study, space, trainable, root, name, session):
    import optuna
    from ray.tune.schedulers import ASHAScheduler
    manifest = study.manifest
    stored = load(study).get_trials(deepcopy=False)
    offset = len(stored)  # trial numbers (and seeds) go on
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        sampler = optuna.samplers.TPESampler(
            seed=int(manifest["seed"]) + offset, multivariate=True, group=True, n_startup_trials=8
        )
    # A new study's start points, then the configs that Ctrl-C or SIGTERM cut short (stored as
    # interrupted; no experiment is restored, so the next one runs them again).
    points = [*(space.start_points() if offset == 0 else []), *session.take_cut_short()]
    history = [t for t in stored if t.state.name == "COMPLETE" and t.params]
    searcher = _searcher_class()(
        space=_DefineByRun(space, offset - len(history)), metric=SCORE, mode="max", sampler=sampler,
        history=history, points=points, deadline=session.life.deadline,
    )
    scheduler = ASHAScheduler(
        time_attr="training_iteration", metric=SCORE, mode="max", max_t=CHECKPOINTS + 1, grace_period=1,
        reduction_factor=2,  # the better half goes on at each rung, like a median pruner
    )
    key = str(study.directory.resolve())
    return tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            search_alg=searcher,
            scheduler=scheduler,
            num_samples=session.remaining(),
            max_concurrent_trials=Options.from_manifest(manifest).workers,
            reuse_actors=True,
        ),
        run_config=tune.RunConfig(
            name=name,
            storage_path=str(root),
            callbacks=[_Recorder(key)],
            stop=_StopWhenDone(key),
            verbose=0,
            failure_config=tune.FailureConfig(max_failures=0),
        ),
    )


def _searcher_class():
    from ray.tune.search.optuna import OptunaSearch

    class Searcher(OptunaSearch):
        """OptunaSearch that learns only from final scores: intermediate ones (a subsample,
        fewer folds) are ASHA's business, and a trial ASHA stopped counts as pruned. After
        `deadline` it suggests nothing more, so `--timeout` stops starting trials and lets the
        running ones finish (as with Optuna; Tune's time budget would cut them off)."""

        def __init__(self, *args, history=(), points=(), deadline=None, **kwargs):
            import optuna

            super().__init__(*args, **kwargs)
            self.deadline, self.suggested = deadline, 0
            # What the study has learnt so far, before the points to try first: TPE starts
            # from every completed trial (whatever backend ran it), and trial numbers after
            # the history's are the new trials' (see _DefineByRun).
            for trial in history:
                self._ot_study.add_trial(optuna.trial.create_trial(
                    state=optuna.trial.TrialState.COMPLETE, value=trial.value, params=trial.params,
                    distributions=trial.distributions))
            for point in points:
                self._ot_study.enqueue_trial(point)

        def suggest(self, trial_id):
            # Past the deadline start nothing more, but always run one trial (as Optuna does).
            if self.deadline is not None and time.time() >= self.deadline and self.suggested:
                return OptunaSearch.FINISHED
            self.suggested += 1
            return super().suggest(trial_id)

        def on_trial_result(self, trial_id, result):
            pass

        def on_trial_complete(self, trial_id, result=None, error=False):
            if result and not result.get(FINAL):
                result = {k: v for k, v in result.items() if k != SCORE}
            super().on_trial_complete(trial_id, result, error)

    return Searcher


class _DefineByRun:
    """OptunaSearch's define-by-run space: our `sample` walked through Optuna's trial. The
    trial number (offset by the trials already stored, less the history the searcher's study
    starts with) comes along to seed the trial."""

    def __init__(self, space, offset):
        self.space, self.offset = space, offset

    def __call__(self, optuna_trial):
        sample(self.space, OptunaSuggest(optuna_trial))
        return {"_number": self.offset + optuna_trial.number}


def _trial(config, problem=None, space=None, base_seed=0, cores=1, keras_backend=None):
    """One Ray trial (runs in a Ray worker): rebuild the candidate from the sampled values,
    evaluate it, and report intermediate and final probe scores to Tune."""
    from search import devices
    from search.preflight import use_keras_backend

    # The study's backend, set here: a cluster node's workers have that node's environment, not
    # the driver's (a `ray job` run with --keras-backend jax trained its trials on TensorFlow).
    use_keras_backend(keras_backend)
    started = time.time()
    devices.limit_threads(cores)  # the actor's first trial starts TensorFlow: size its pools
    candidate = sample(space, FixedSuggest(config))
    seed = base_seed + int(config["_number"])  # the lifecycle's rule, in the actor
    attrs = json.dumps({**trial_attrs(candidate, seed), NODE: ray.get_runtime_context().get_node_id()})
    try:
        outcome = evaluate(problem, candidate, seed, report=lambda epoch, value: tune.report(
            {SCORE: value, "epoch": epoch, "attrs": attrs, "started": started}))
    except FailedTrial as exc:
        tune.report({"fail_reason": str(exc), "attrs": attrs, "started": started, "finished": time.time()})
        return
    tune.report({SCORE: outcome["score"], FINAL: True, "attrs": attrs, "outcome": json.dumps(outcome),
                 "started": started, "finished": time.time()})


class _Session:
    """The driver's view of a Ray search: its storage, and the trials' shared lifecycle."""

    def __init__(self, study, space, progress):
        self.study, self.space = study, space
        self.optuna_study = load(study)
        self.life = TrialLifecycle(study, progress)
        self.recorded = recorded_ids(self.optuna_study, TRIAL_ID)
        self.started: set = set()  # Ray trial ids that began running in this session
        self.intermediate: dict = {}
        self.retries: dict = {}  # a cut-short config (its key) -> the stored trial it runs again

    def take_cut_short(self) -> list[dict]:
        """The cut-short configs not yet handed to an experiment of this session."""
        taken = set(self.retries.values())
        fresh = [(number, params) for number, params in cut_short(self.optuna_study) if number not in taken]
        self.retries.update({_config_key(params): number for number, params in fresh})
        return [params for _, params in fresh]

    def remaining(self) -> int:
        return self.life.remaining(self.optuna_study)

    def should_continue(self) -> bool:
        return self.remaining() > 0 and not (self.life.fatal or self.life.out_of_time() or interrupts.requested())

    def record(self, trial, result, error=None):
        if trial.trial_id in self.recorded:
            return  # (Tune may report a trial's end twice: an error after its last result)
        result = result or {}
        attrs = {**json.loads(result.get("attrs", "{}")), TRIAL_ID: trial.trial_id}
        retry_of = self.retries.pop(_config_key({k: v for k, v in trial.config.items() if k != "_number"}), None)
        if retry_of is not None:
            attrs["retry_of"] = retry_of
        if result.get(FINAL):
            state, value, ended = self.life.end(json.loads(result["outcome"]))
        elif error is not None or "fail_reason" in result or interrupts.requested():
            reason = result.get("fail_reason") or (error and f"ray: {error}") or interrupted()
            state, value, ended = self.life.end(failure=reason)
        else:  # ASHA stopped it at a rung: it ends now (its last report has no end time)
            state, value, ended = self.life.end()
        record_trial(self.optuna_study, self.space, trial.config, state=state, value=value, attrs={**attrs, **ended},
                     intermediate=self.intermediate.pop(trial.trial_id, {}), started=result.get("started"),
                     finished=result.get("finished", time.time()))
        self.recorded.add(trial.trial_id)
        self.life.advance(self.optuna_study)


class _Recorder(tune.Callback):
    def __init__(self, key):
        self.key = key

    def on_trial_result(self, iteration, trials, trial, result, **info):
        session = _SESSIONS.get(self.key)
        if session is not None and SCORE in result and not result.get(FINAL):
            session.intermediate.setdefault(trial.trial_id, {})[int(result["epoch"])] = result[SCORE]

    def on_trial_complete(self, iteration, trials, trial, **info):
        session = _SESSIONS.get(self.key)
        if session is not None:
            session.record(trial, trial.last_result)
            crash_point("trial_written")  # stored in the study; Tune's own state not yet

    def on_trial_error(self, iteration, trials, trial, **info):
        session = _SESSIONS.get(self.key)
        if session is not None:
            session.record(trial, trial.last_result, error=_first_line(trial))

    def on_trial_start(self, iteration, trials, trial, **info):
        session = _SESSIONS.get(self.key)
        if session is not None:
            session.started.add(trial.trial_id)

    def on_step_end(self, iteration, trials, **info):
        """Ctrl-C or SIGTERM: Tune stops the running trials without completing them, so each
        one that began is stored as interrupted, as the other backends store theirs. At the
        end of the loop's step that saw the stop, not at the experiment's end: Tune's teardown
        waits for each trial's next report, longer than `ray job stop` waits before SIGKILL."""
        session = _SESSIONS.get(self.key)
        if session is None or not interrupts.requested():
            return
        for trial in trials:
            if trial.trial_id in session.started and trial.trial_id not in session.recorded:
                session.record(trial, trial.last_result)

    def on_experiment_end(self, trials, **info):
        self.on_step_end(None, trials)  # a stop after the last step


class _StopWhenDone(tune.Stopper):
    """Ends the experiment on Ctrl-C or after too many failures in a row."""

    def __init__(self, key):
        self.key = key

    def __call__(self, trial_id, result):
        return False

    def stop_all(self):
        session = _SESSIONS.get(self.key)
        return session is not None and (session.life.fatal or interrupts.requested())


def _config_key(params: dict) -> str:
    return json.dumps(sorted(params.items()), default=str)


def _first_line(trial) -> str:
    """The last line of the trial's error. Tune writes it (a header, then the error) to the
    trial's error file on the driver before it calls the callbacks (`get_error` reads the copy
    in the experiment directory, which is synced later)."""
    path = trial.error_file
    text = Path(path).read_text() if path and os.path.isfile(path) else "the trial's worker raised an error"
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return (lines[-1] if lines else text)[:300]
