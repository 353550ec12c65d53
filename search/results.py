"""What a study holds, as objects: its trials, its baselines, its export and the leaderboard.

    result = search.run(X, y)
    print(result)                   # the leaderboard
    result.to_frame()               # one row per trial (pandas)
    result.best_estimator           # the exported encoder, fitted, ready to transform
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from pathlib import Path

from search.errors import StudyError
from search.leaderboard import format_leaderboard, shown_trials, trial_rows
from search.storage import complete_trials, load
from search.suggest import params_as_run


@dataclass(frozen=True)
class TrialRecord:
    """One trial as the study stored it. `score` is the mean CV probe score on the search
    part (None unless complete); `params` are the sampled values under their space names
    (the batch size as it ran, where the trial ran out of memory and was retried at half)."""

    number: int
    state: str  # complete, pruned, fail, running or waiting
    score: float | None
    score_std: float | None
    family: str
    config: str  # the leaderboard's one-line description
    params: dict
    seconds: float | None
    note: str = ""  # why it failed, or where it was pruned
    stages: dict = field(default_factory=dict)  # seconds per stage
    host: str | None = None  # the machine that ran it (several join a shared storage)
    device: str | None = None  # the accelerator or CPU it ran on


@dataclass(frozen=True)
class StudyResult:
    """The outcome of `run`, `resume` or `report`: `str(result)` is the leaderboard."""

    study_dir: Path
    export_dir: Path | None
    best_trial: int | None  # the exported trial; without an export, the best completed one
    best_params: dict | None  # the exported encoder's AutoencoderTransformer parameters (None without)
    best_cv: float | None  # best_trial's CV score
    test: dict | None  # held-out score of the export: score, low, high (95% bootstrap)
    leaderboard: str
    notes: tuple = field(default_factory=tuple)
    metric: str | None = None
    trials: tuple = ()  # TrialRecord, in trial-number order
    baselines: dict = field(default_factory=dict)  # name -> cv_mean, cv_std, detail

    def __str__(self) -> str:
        return self.leaderboard

    def _repr_pretty_(self, printer, cycle):
        """A notebook cell that ends in `result` shows the leaderboard (IPython's hook), not
        the dataclass's fields with the leaderboard as one escaped string."""
        printer.text(self.leaderboard)

    @functools.cached_property
    def best_estimator(self):
        """The exported encoder (an `AutoencoderTransformer` fitted on the search part), loaded
        once on first use; None when nothing was exported. Refused when a later run of the
        study has exported another trial over it since: this result's encoder is gone."""
        if self.export_dir is None:
            return None
        from encoderkit.export import load_encoder

        manifest = self.export_dir / "manifest.json"
        held = json.loads(manifest.read_text()) if manifest.is_file() else {}
        if held and (held.get("trial"), held.get("cv_score")) != (self.best_trial, self.best_cv):
            raise StudyError(
                f"{self.export_dir}: holds trial {held.get('trial')}'s encoder now, exported after this result "
                f"(trial {self.best_trial}); use the later run's result, or search.export_best({str(self.study_dir)!r}, "
                f"trial={self.best_trial}) to refit this one")
        return load_encoder(self.export_dir)

    def to_frame(self):
        """The trials as a pandas DataFrame, one row per trial, sampled values as `param_*`."""
        import pandas as pd

        rows = []
        for trial in self.trials:
            row = {"number": trial.number, "state": trial.state, "family": trial.family, "score": trial.score,
                   "score_std": trial.score_std, "seconds": trial.seconds, "config": trial.config,
                   "note": trial.note, "host": trial.host, "device": trial.device}
            row.update({f"param_{name}": value for name, value in trial.params.items()})
            rows.append(row)
        return pd.DataFrame(rows, columns=None if rows else ["number", "state", "family", "score", "score_std",
                                                             "seconds", "config", "note", "host", "device"])


def trial_records(optuna_study, rows=None) -> tuple:
    """The shown trials as records; `rows` are their leaderboard rows if already made."""
    records = []
    for trial, row in zip(shown_trials(optuna_study), rows or trial_rows(optuna_study)):
        records.append(TrialRecord(
            number=trial.number, state=row.state, score=row.cv_mean, score_std=row.cv_std, family=row.family,
            config=row.detail, params=params_as_run(trial.params, trial.user_attrs),
            seconds=row.seconds, note=row.note, stages=dict(row.stages),
            host=trial.user_attrs.get("worker_host"), device=trial.user_attrs.get("device"),
        ))
    return tuple(records)


def _best_completed(optuna_study) -> dict:
    """Which trial won, where none was exported (`export=False`): the leaderboard's first."""
    complete = complete_trials(optuna_study)
    if not complete:
        return {}
    best = max(complete, key=lambda t: t.value)
    return {"trial": best.number, "cv_score": best.value}


def result_of(study, exported=None, notes=(), optuna_study=None, top=10) -> StudyResult:
    """The study's result as it stands; `exported` is the export manifest if one was just made."""
    optuna_study = optuna_study or load(study)
    rows = trial_rows(optuna_study)
    if exported is None:
        exported = study.read_json("export.json")
    baselines = study.baselines()
    board = format_leaderboard(rows, baselines, study.manifest["metric"], exported, top=top,
                               test_uses=study.test_uses_and_exports(optuna_study))
    best = exported or _best_completed(optuna_study)
    return StudyResult(
        study_dir=study.directory.resolve(),  # absolute: the notebook may change its directory later
        export_dir=study.export_dir.resolve() if exported else None,
        best_trial=best.get("trial"),
        best_params=best.get("transformer_params"),
        best_cv=best.get("cv_score"),
        test=best.get("test"),
        leaderboard=board,
        notes=tuple(notes),
        metric=study.manifest["metric"],
        trials=trial_records(optuna_study, rows),
        baselines=baselines,
    )
