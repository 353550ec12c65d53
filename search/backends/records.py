"""One trial lifecycle for every backend, and what it stores in the study's Optuna storage.

`TrialLifecycle` decides a trial's seed, the attributes it starts with, how it ends (COMPLETE
with its outcome, PRUNED, or FAIL with its reason), failures in a row against
`--max-failures`, the `--timeout` deadline and the progress bar; backends decide only what to
try next and where it runs. The Optuna backend writes through its live `optuna.Trial`; Ray
Tune and keras-tuner hand each ended trial to `record_trial`, which adds it to the same
storage with the same parameters, distributions and attributes. So the leaderboard,
`report`, `export`, `replay` and optuna-dashboard read one schema whatever ran the search."""

from __future__ import annotations

import time

from search import interrupts
from search.settings import Budget
from search.storage import finished_count, worker_identity
from search.suggest import FixedSuggest, RecordingSuggest, sample

def interrupted() -> str:
    """The fail reason of a trial cut short by Ctrl-C or SIGTERM."""
    return f"interrupted ({interrupts.cause()})"


def is_interruption(reason) -> bool:
    """Whether a stored fail reason is `interrupted()`'s."""
    return reason in {f"interrupted ({cause})" for cause in interrupts.CAUSES.values()}


class TrialLifecycle:
    """A search's trials from start to end, the same whatever backend runs them."""

    def __init__(self, study, progress=None):
        budget = Budget.from_manifest(study.manifest)
        self.target, self.base_seed = budget.trials, int(study.manifest["seed"])
        self.budget, self.deadline = budget, budget.deadline_from_now()
        self.max_failures, self.failures_in_a_row, self.last_failure = budget.max_failures, 0, ""
        self.progress = progress

    def seed(self, number: int) -> int:
        """One seed rule: the study's seed plus the trial's number."""
        return self.base_seed + int(number)

    def start(self, candidate: dict, number: int) -> dict:
        return trial_attrs(candidate, self.seed(number))

    def end(self, outcome: dict | None = None, *, failure: str | None = None) -> tuple[str, float | None, dict]:
        """(state, value, attributes to add) for a trial that ended with `outcome`
        (COMPLETE), with `failure` (FAIL and its reason; Ctrl-C or SIGTERM does not count against
        `--max-failures`) or with neither (PRUNED)."""
        if failure is not None:
            if not is_interruption(failure):
                self.failures_in_a_row, self.last_failure = self.failures_in_a_row + 1, failure
            return "FAIL", None, {"fail_reason": failure}
        if outcome is None:
            return "PRUNED", None, {}
        self.failures_in_a_row = 0
        return "COMPLETE", outcome["score"], outcome_attrs(outcome)

    @property
    def fatal(self) -> bool:
        """`--max-failures` failed trials in a row: the search ends with `fatal_error()`."""
        return self.failures_in_a_row >= self.max_failures

    def fatal_error(self):
        from search.errors import FatalSearchError, setting

        return FatalSearchError(f"{self.failures_in_a_row} trials failed in a row "
                                f"({setting('max_failures', self.max_failures)}); last: {self.last_failure}")

    def start_clock(self):
        """The `--timeout` counts from now: a backend whose trials can start only after its
        own start-up (Ray's, a cluster's connection) calls it then, so that a start-up longer
        than the timeout does not end the search before its first trial."""
        self.deadline = self.budget.deadline_from_now()

    def out_of_time(self) -> bool:
        return self.deadline is not None and time.time() >= self.deadline

    def remaining(self, optuna_study) -> int:
        return max(0, self.target - finished_count(optuna_study))

    def advance(self, optuna_study):
        if self.progress:
            self.progress(optuna_study, None)

# Outcome fields kept as trial attributes (besides the score, which is the trial's value).
OUTCOME_ATTRS = ("score_std", "epochs_run", "rows", "threads", "seconds", "compile_by_stage", "retried_batch_size",
                 "probe")


def trial_attrs(candidate: dict, seed: int) -> dict:
    """The attributes a trial starts with: its config, its seed and where it runs."""
    return {**worker_identity(), "candidate": candidate, "seed": seed}  # who runs it first: `recover` reads it


def outcome_attrs(outcome: dict) -> dict:
    return {key: outcome[key] for key in OUTCOME_ATTRS if key in outcome}


def replay_params(space, params: dict):
    """(candidate, distributions) for stored parameter values, through the same sampling path
    as the search; the distributions are what Optuna needs to store the trial."""
    recorder = RecordingSuggest(FixedSuggest(params))
    candidate = sample(space, recorder)
    return candidate, recorder.distributions


def record_trial(optuna_study, space, params: dict, *, state: str, value=None, attrs=None, intermediate=None,
                 started=None, finished=None):
    """Adds one finished trial (state COMPLETE, PRUNED or FAIL) to the study's storage, with
    its real start and end times (epoch seconds) when known."""
    import datetime

    import optuna

    _, distributions = replay_params(space, params)
    used = {name: params[name] for name in distributions}
    trial = optuna.trial.create_trial(
        state=getattr(optuna.trial.TrialState, state),
        value=value if state == "COMPLETE" else None,
        params=used,
        distributions=distributions,
        user_attrs=dict(attrs or {}),
        intermediate_values={int(k): float(v) for k, v in (intermediate or {}).items()},
    )
    if started is not None:
        trial.datetime_start = datetime.datetime.fromtimestamp(started)
    if finished is not None:
        trial.datetime_complete = datetime.datetime.fromtimestamp(finished)
    optuna_study.add_trial(trial)


def cut_short(optuna_study) -> list:
    """(number, params) of the trials stored as interrupted whose config no later trial ran
    again (`retry_of`): what a resume runs first."""
    trials = optuna_study.get_trials(deepcopy=False)
    retried = {t.user_attrs.get("retry_of") for t in trials}
    return [(t.number, dict(t.params)) for t in trials
            if is_interruption(t.user_attrs.get("fail_reason")) and t.params and t.number not in retried]


def interrupted_ids(optuna_study, key: str) -> dict:
    """{foreign trial id: stored number} of the trials stored as interrupted (see recorded_ids)."""
    return {t.user_attrs[key]: t.number for t in optuna_study.get_trials(deepcopy=False)
            if key in t.user_attrs and is_interruption(t.user_attrs.get("fail_reason"))}


def recorded_ids(optuna_study, key: str) -> set:
    """Values of attribute `key` over the stored trials: which foreign trials are already in.
    A trial stored as interrupted is not: its tuner runs it again on resume (keras-tuner's
    unfinished trials), and that run's result is stored as a trial of its own."""
    return {t.user_attrs[key] for t in optuna_study.get_trials(deepcopy=False)
            if key in t.user_attrs and not is_interruption(t.user_attrs.get("fail_reason"))}
