"""keras-tuner backend: random search, Bayesian optimisation or Hyperband over the same space.

A `HyperParameters` adapter lets `sample` walk the space through keras-tuner (it declares
each family's and each layer's parameters conditional on the family and the stack depth, read
from the parameter names, so Bayesian optimisation sees the structure);
the probe objective replaces keras-tuner's fit through an overridden `run_trial`. keras-tuner
keeps its oracle in DIR/kerastuner/ (a re-run or `resume` reloads it); every finished trial is
also written to the study's Optuna storage, the schema all backends share. Hyperband allocates
epochs: each trial trains from scratch for `tuner/epochs` (clamped to the space's range)."""

from __future__ import annotations

import contextlib
import io
import json
import time
from pathlib import Path

from search.backends.records import (TrialLifecycle, interrupted, interrupted_ids, record_trial, recorded_ids,
                                    replay_params)
from search.errors import FailedTrial, SearchError, StudyError, setting
from search.objective import evaluate
from search.settings import KerasTunerOptions
from search.storage import finished_count, load
from search.suggest import KerasTunerSuggest

PROJECT = "kerastuner"  # under the study directory
TRIAL_ID = "kerastuner_trial_id"
EPOCHS = "training.epochs"


Options = KerasTunerOptions


@contextlib.contextmanager
def _no_failed_trial_tracebacks():
    """keras-tuner prints each failed trial's traceback (its config.DEBUG, on by default, and
    not public); the search has stored the reason in one line already."""
    from keras_tuner.src import config

    saved, config.DEBUG = config.DEBUG, False
    try:
        yield
    finally:
        config.DEBUG = saved


def run(study, problem, space, progress=None) -> str | None:
    """Runs trials to the study's count; a note where the oracle ended the search short of it."""
    import keras_tuner as kt

    manifest = study.manifest
    optuna_study = load(study)
    algorithm = Options.from_manifest(manifest).algorithm
    life = TrialLifecycle(study, progress)
    recorded = recorded_ids(optuna_study, TRIAL_ID)
    cut_short = interrupted_ids(optuna_study, TRIAL_ID)  # keras-tuner runs these again first
    remaining = life.remaining(optuna_study)
    if remaining <= 0:
        return
    objective = kt.Objective("score", direction="max")
    oracle = make_oracle(kt, algorithm, objective, len(recorded) + remaining, life.base_seed, space)

    class ProbeTuner(kt.Tuner):
        """keras-tuner's loop with our objective: fit, encode, probe CV score."""

        def run_trial(self, trial, *args, **kwargs):
            from search import interrupts

            interrupts.check()
            if trial.trial_id in recorded:  # stored, but left running in keras-tuner's oracle by the
                # FatalError that ended the search on --max-failures: keras-tuner runs it again
                raise kt.errors.FailedTrialError("already stored as failed")  # not trained, not counted
            started = time.time()
            candidate, params = _candidate(space, trial.hyperparameters, algorithm)
            number = len(optuna_study.get_trials(deepcopy=False))  # the number it is stored under
            attrs = {**life.start(candidate, number), TRIAL_ID: trial.trial_id}
            if trial.trial_id in cut_short:
                attrs["retry_of"] = cut_short.pop(trial.trial_id)
            try:
                outcome = evaluate(problem, candidate, life.seed(number), report=None)
            except (FailedTrial, KeyboardInterrupt) as exc:
                failure = str(exc) if isinstance(exc, FailedTrial) else interrupted()
                record(trial, params, started, life.end(failure=failure), attrs)
                if isinstance(exc, KeyboardInterrupt):
                    raise
                if life.fatal:
                    raise kt.errors.FatalError(str(life.fatal_error())) from None
                raise kt.errors.FailedTrialError(str(exc)) from None
            record(trial, params, started, life.end(outcome), attrs)
            return {"score": outcome["score"]}

        def on_trial_end(self, trial):
            super().on_trial_end(trial)
            # --timeout, or --trials reached (Hyperband has no trial limit of its own: a round
            # of a wide epochs range is hundreds of trials): start no more trials
            if life.out_of_time() or life.remaining(optuna_study) <= 0:
                self.oracle.max_trials = len(self.oracle.trials)
            elif self.oracle.max_trials is not None:  # a failed trial does not count: one more for it
                self.oracle.max_trials = len(self.oracle.trials) + life.remaining(optuna_study)

    def record(trial, params, started, ended, attrs):
        state, value, ended_attrs = ended
        if trial.trial_id not in recorded:
            record_trial(optuna_study, space, params, state=state, value=value, attrs={**attrs, **ended_attrs},
                         started=started, finished=time.time())
            recorded.add(trial.trial_id)
        life.advance(optuna_study)

    with contextlib.redirect_stdout(io.StringIO()):  # "Reloading Tuner from ..."
        tuner = ProbeTuner(
            oracle=oracle, directory=str(study.directory.resolve()), project_name=PROJECT, overwrite=False,
        )
    tuner.oracle.update_space(KerasTunerSuggest.declare(kt.HyperParameters(), space))
    if algorithm == "hyperband":  # its rounds go on until --trials (one round, by default, may be fewer)
        tuner.oracle.hyperband_iterations = float("inf")
    from search import interrupts

    with interrupts.graceful(), _no_failed_trial_tracebacks():
        try:
            tuner.search(verbose=0)
        except kt.errors.FatalError:
            if life.fatal:
                raise life.fatal_error() from None
            raise
        interrupts.check()  # a Ctrl-C keras-tuner swallowed (its trials end as interrupted)
    if life.remaining(optuna_study) > 0 and not life.out_of_time():
        return (f"keras-tuner's {algorithm} oracle stopped at {finished_count(optuna_study)} of {life.target} "
                "finished trials: it tries no configuration twice and found no new one (a space of few distinct "
                f"configurations; {setting('backend', 'optuna')} samples them again)")
    return None


def check_continues(directory, options):
    """A study's keras-tuner search goes on with the algorithm it began with: keras-tuner
    reloads its oracle from DIR/kerastuner/, and another one's state failed to load there
    (a traceback in every later run and resume). Refused before anything is written."""
    stored = stored_algorithm(directory)
    if stored is not None and stored != options.algorithm:
        raise StudyError(f"{Path(directory) / PROJECT}: holds a keras-tuner {stored} search, which algorithm "
                         f"{options.algorithm} cannot continue; use {setting('algorithm', stored)}, or another study "
                         "directory")


def stored_algorithm(directory) -> str | None:
    """The algorithm of the keras-tuner search saved in a study, from its oracle's state."""
    try:
        state = json.loads((Path(directory) / PROJECT / "oracle.json").read_text())
    except (OSError, ValueError):
        return None
    return "hyperband" if "brackets" in state else "bayesian" if "num_initial_points" in state else "random"


def make_oracle(kt, algorithm, objective, max_trials, seed, space):
    # Failures are counted by the trial lifecycle (--max-failures), not keras-tuner's.
    # keras-tuner takes seed 0 (our default) as "no seed" and draws one at random: hence + 1.
    common = {"objective": objective, "seed": seed + 1, "max_retries_per_trial": 0,
              "max_consecutive_failed_trials": 10**9}
    if algorithm == "random":
        return kt.oracles.RandomSearchOracle(max_trials=max_trials, **common)
    if algorithm == "bayesian":
        return kt.oracles.BayesianOptimizationOracle(max_trials=max_trials, **common)
    return kt.oracles.HyperbandOracle(max_epochs=_most_epochs(space), **common)


def check_space(space, options):
    """Refuses a space the algorithm cannot search, before a run writes anything (a study
    made first could never be resumed)."""
    if options.algorithm == "hyperband":
        _most_epochs(space)


def _most_epochs(space) -> int:
    epochs = dict(space.training).get("epochs")
    if getattr(epochs, "high", None) is None:
        raise SearchError(f"{space.source}: training.epochs must be a range for {setting('algorithm', 'hyperband')} "
                          "(it allocates epochs)")
    return int(epochs.high)


def _candidate(space, hp, algorithm):
    """(candidate, stored params) from keras-tuner's values; under Hyperband the epochs are the
    bracket's, clamped into the space's range so the stored trial replays as it ran."""
    from search.suggest import RecordingSuggest, sample

    recorder = RecordingSuggest(KerasTunerSuggest(hp))
    sample(space, recorder)
    params = dict(recorder.values)  # the active parameters only, as the space's own values
    if algorithm == "hyperband" and "tuner/epochs" in hp.values:
        domain = dict(space.training)["epochs"]
        params[EPOCHS] = min(max(int(hp.values["tuner/epochs"]), domain.low), domain.high)
    candidate, _ = replay_params(space, params)
    return candidate, params
