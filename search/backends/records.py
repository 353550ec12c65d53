"""What every backend stores about a trial, in the study's Optuna storage.

The Optuna backend writes through its live `optuna.Trial`; Ray Tune and keras-tuner run their
own loops and hand each finished trial to `record_trial`, which adds it to the same storage
with the same parameters, distributions and attributes. So the leaderboard, `report`,
`export`, `replay` and optuna-dashboard read one schema whatever ran the search."""

from __future__ import annotations

from search.storage import worker_identity
from search.suggest import FixedSuggest, RecordingSuggest, sample

# Outcome fields kept as trial attributes (besides the score, which is the trial's value).
OUTCOME_ATTRS = ("score_std", "epochs_run", "rows", "threads", "seconds", "retried_batch_size", "probe")


def trial_attrs(candidate: dict, seed: int) -> dict:
    """The attributes set when a trial starts: its config, its seed and where it runs."""
    return {"candidate": candidate, "seed": seed, **worker_identity()}


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


def recorded_ids(optuna_study, key: str) -> set:
    """Values of attribute `key` over the stored trials: which foreign trials are already in."""
    return {t.user_attrs[key] for t in optuna_study.get_trials(deepcopy=False) if key in t.user_attrs}


class FailureGuard:
    """Counts failed trials in a row; `--max-failures` of them end the search."""

    def __init__(self, limit: int):
        self.limit, self.in_a_row, self.last = int(limit), 0, ""

    def failed(self, reason: str):
        self.in_a_row += 1
        self.last = reason

    def succeeded(self):
        self.in_a_row = 0

    @property
    def tripped(self) -> bool:
        return self.in_a_row >= self.limit

    def error(self):
        from search.errors import FatalSearchError

        return FatalSearchError(
            f"{self.in_a_row} trials failed in a row (--max-failures {self.limit}); last: {self.last}"
        )
