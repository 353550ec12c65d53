"""Refit, export and replay: what happens to a study's trials after the search.

    export_best(study_dir, trial=None, out=None)   refit a trial on the whole search part,
                                                    score the test part once, write the export
    replay(study_dir, trial)                        re-score a trial exactly as the search did

Shared with the benchmarks: `held_out_score` (the test-part protocol) and
`replayed_candidate` (a trial's config rebuilt from its stored parameters; `candidate_as_run`
then gives the batch size it ran at, where it ran out of memory and was retried)."""

from __future__ import annotations

from pathlib import Path

from encoderkit.baselines import baselines_for
from encoderkit.data import row_name
from encoderkit.errors import DataError
from encoderkit.export import check_destination, remove_leftovers
from encoderkit.probe import REFERENCE, percentile_interval, test_score_and_resamples
from search import compile_cache
from search.errors import StudyError, disk_full_named, suggested_command
from search.faults import crash_point
from search.lock import check_free, study_lock
from search.preflight import check_writable_study_dir, use_study_keras_backend
from search.quiet import import_keras_quietly
from search.storage import complete_trials, load, load_readonly
from search.study import open_study, study_around
from search.suggest import FixedSuggest, candidate_as_run, sample, transformer_params


def export_best(study_dir, trial=None, out=None) -> dict:
    """Refits the best (or the given) trial on the whole search part with its seed (also when
    trials saw a subsample of it), scores the test part once, and writes the export: to
    `STUDY/export` for the best trial, `STUDY/export-trial-N` for another one, or to `out`,
    which must not exist yet or be an export directory (replaced as a whole). Every use of
    the test part is recorded in the study (`test_uses`). Returns the export manifest."""
    study = open_study(study_dir)
    use_study_keras_backend(study)  # an export made under another backend would differ from the search's models
    check_writable_study_dir(study.directory, hint="export records its look at the test part in the study "
                                                   "(test_uses.json), wherever -o points")
    check_free(study.directory)
    destination = export_destination(study, trial, out)
    check_destination(destination)  # before minutes of refitting
    pick_trial(load_readonly(study), trial, study.directory)  # a bad --trial touches nothing
    again = suggested_command("export", study.directory, *(["--trial", trial] if trial is not None else []),
                              *(["-o", out] if out is not None else []))
    with study_lock(study.directory, "export"), disk_full_named(study.directory, again):
        if out is None:  # the study's own export folders: the lock says no other command writes them
            remove_leftovers(destination)  # a killed export's staging copy
        return refit_and_export(study, trial=trial, out=destination)


def current_export(study) -> dict | None:
    """The study's export manifest when its export already holds the best completed trial, so
    that a repeat `run` or `resume` which found nothing better keeps it: refitting would score
    the test part again for the same numbers. None when there is none or it is stale."""
    import json

    try:
        recorded = study.read_json("export.json", default={})
        exported = json.loads((study.export_dir / "manifest.json").read_text())
        best = pick_trial(load(study), None, study.directory)
    except (OSError, ValueError, StudyError):
        return None  # no export yet, a damaged one, or no completed trial: refit as usual
    backend = study.manifest.get("keras_backend")  # an export made under another backend is made again
    if backend and exported.get("keras_backend") not in (None, backend):
        return None
    # export.json and the export itself both hold the best trial (an export copied in from
    # another study has its own trial, score or split)
    best_now = (best.number, best.value, study.manifest["split_hash"])
    keys = ("trial", "cv_score", "split_hash")
    same = tuple(recorded.get(k) for k in keys) == best_now == tuple(exported.get(k) for k in keys)
    return recorded if same else None


def export_destination(study, trial=None, out=None) -> Path:
    default = study.export_dir if trial is None else study.directory / f"export-trial-{int(trial)}"
    if out is None:
        return default
    out = Path(out).expanduser()
    if trial is not None and out.resolve() == study.export_dir.resolve():
        raise StudyError(f"{out}: holds the study's best trial; write trial {trial} elsewhere (default: {default})")
    # A study's folder is its commands' to manage: a foreign export in another study's
    # export/ became that study's "winner", one in logs/ or inside an export broke them.
    owner = study_around(out)
    if owner == study.directory.resolve() and out.resolve() != default.resolve():
        raise StudyError(f"{out}: in the study directory, whose files its commands manage; "
                         f"leave -o out for {default}, or choose a path outside it")
    if owner is not None and owner != study.directory.resolve():
        raise StudyError(f"{out}: inside another study's directory ({owner}); choose a path outside it")
    return out


def refit_and_export(study, problem=None, space=None, trial=None, out=None) -> dict:
    from encoderkit.export import save_export
    from encoderkit.transformer import AutoencoderTransformer

    destination = Path(out) if out else study.export_dir
    check_destination(destination)  # before the refit and the look at the test part
    import_keras_quietly()
    compile_cache.enable()
    problem = problem or study.problem()
    space = space or study.space()
    optuna_study = load(study)
    chosen = pick_trial(optuna_study, trial, study.directory)
    candidate = candidate_as_run(replayed_candidate(space, chosen, study.directory), chosen.user_attrs)
    seed = int(chosen.user_attrs["seed"])
    transformer = AutoencoderTransformer(**transformer_params(candidate, seed, problem.dataset.shape))
    transformer.fit(named(problem, problem.X))  # a CSV's column names travel with the export
    X_test, y_test = problem.test_part()
    score, resamples = held_out_resamples(problem, transformer, X_test, y_test)
    test = _interval(score, resamples)
    baselines_test = {}
    for name, make in baselines_for(problem.dataset, len(problem.y)).items():
        other, other_resamples = held_out_resamples(problem, make().fit(named(problem, problem.X)), X_test, y_test)
        assert len(other_resamples) == len(resamples), "the same seed and test labels give the same resamples"
        # the winner minus the baseline, on the same resampled test rows: a paired interval,
        # far narrower than the two intervals side by side
        baselines_test[name] = {**_interval(other, other_resamples),
                                "winner_minus": _interval(score - other, resamples - other_resamples)}
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
        # how the test part was drawn: train_test_split(rows, test_size, stratify=y, random_state=seed)
        "split": ({"seed": problem.seed, "test_size": study.manifest["test_size"]}
                  if problem.dataset.test_rows is None else {"test_part": "the dataset's own"}),
        "space_digest": study.manifest["space_digest"],
        "seed": seed,  # the trial's, for its weights (its CV folds were seeded with the split's)
        "study": str(study.directory.resolve()),
    }
    # Recorded as soon as it is made: the look at the test part counts even if writing fails.
    study.record_test_use(trial=chosen.number, metric=problem.metric, test=test, destination=destination,
                          best=chosen.number == pick_trial(optuna_study, None, study.directory).number,
                          optuna_study=optuna_study)
    save_export(destination, transformer, manifest, before_publish=lambda: crash_point("export_staged"))
    if trial is None and destination.resolve() == study.export_dir.resolve():  # the study's own export
        study.write_json("export.json", manifest)
    return manifest


def replay(study_dir, trial: int) -> dict:
    """Re-scores a completed trial exactly as the search did (same config, seed, split and
    CV folds) and returns the stored and replayed CV scores."""
    from search.objective import evaluate

    study = open_study(study_dir)
    chosen = pick_trial(load_readonly(study), trial, study.directory)  # reads only: works on an archived study
    candidate = candidate_as_run(replayed_candidate(study.space(), chosen, study.directory), chosen.user_attrs)
    use_study_keras_backend(study)  # another backend's numbers differ in more than the last digits
    import_keras_quietly()  # after the checks: a refusal stays quick
    # The same checkpoint callbacks run as in the search; nothing is pruned.
    outcome = evaluate(study.problem(), candidate, int(chosen.user_attrs["seed"]), report=lambda step, value: None)
    return {"trial": chosen.number, "metric": study.manifest["metric"], "stored": chosen.value,
            "replayed": outcome["score"], "seconds": outcome["seconds"]}


def replayed_candidate(space, chosen, directory) -> dict:
    """The trial's config rebuilt from its stored parameters through the same sampling path."""
    candidate = sample(space, FixedSuggest(chosen.params))
    if candidate != chosen.user_attrs.get("candidate", candidate):
        raise StudyError(f"{directory}: trial {chosen.number} does not replay to its stored config")
    return candidate


def held_out_score(problem, fitted, X_test, y_test) -> dict:
    """The reference probe fit on the search part's features, scored once on the test part
    (whatever cheaper probe ranked the candidates): its score and 95% bootstrap interval."""
    return _interval(*held_out_resamples(problem, fitted, X_test, y_test))


def _interval(score, resamples) -> dict:
    low, high = percentile_interval(resamples)
    return {"score": float(score), "low": low, "high": high}


def held_out_resamples(problem, fitted, X_test, y_test):
    """`held_out_score`'s score and bootstrap values (the same resamples for every method)."""
    try:
        test_codes = fitted.transform(named(problem, X_test))
    except DataError as exc:  # beyond float32 once scaled by the search part's range
        if not hasattr(exc, "position"):
            raise
        row, column = exc.position
        names, source = problem.dataset.feature_names, problem.dataset.source or problem.dataset.name
        name = repr(names[column]) if names else f"feature {column}"
        raise DataError(f"{source}: {name} has {X_test[row, column]:g} in {row_name(source, problem.test_rows[row])}, "
                        f"a row of the test part, beyond float32's range once scaled by the search part's far "
                        f"narrower range of {name}: the search cannot be exported; rescale that feature in the data "
                        "and begin a new study") from None
    return test_score_and_resamples(fitted.transform(named(problem, problem.X)), problem.y, test_codes, y_test,
                                    problem.metric, seed=problem.seed, probe=REFERENCE)


def named(problem, X):
    """X as a DataFrame with the dataset's column names where it has them (a CSV's header),
    so the exported encoder knows its columns by name."""
    names = problem.dataset.feature_names
    if not names:
        return X
    import pandas as pd

    return pd.DataFrame(X, columns=list(names))


def nothing_to_export(optuna_study, directory, ended_short=None) -> str:
    """The one line for a study without a completed trial: how many failed, the last reason,
    and why the search ended where it did."""
    failed = [t.user_attrs["fail_reason"] for t in optuna_study.get_trials(deepcopy=False)
              if t.user_attrs.get("fail_reason")]
    why = f" ({len(failed)} failed; the last: {failed[-1]})" if failed else ""
    return f"{directory}: no completed trial to export{why}" + (f": {ended_short}" if ended_short else "")


def pick_trial(optuna_study, number, directory):
    complete = complete_trials(optuna_study)
    if number is None:
        if not complete:
            raise StudyError(nothing_to_export(optuna_study, directory))
        return max(complete, key=lambda t: t.value)
    match = [t for t in complete if t.number == int(number)]
    if not match:
        trial = next((t for t in optuna_study.get_trials(deepcopy=False) if t.number == int(number)), None)
        state = ("no such trial" if trial is None else
                 {"FAIL": "it failed", "PRUNED": "it was pruned"}.get(trial.state.name, "it is still running")
                 + (f": {trial.user_attrs['fail_reason']}"
                                                     if trial.user_attrs.get("fail_reason") else ""))
        raise StudyError(f"trial {number}: not a completed trial of {directory} ({state})")
    return match[0]
