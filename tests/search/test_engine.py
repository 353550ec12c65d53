"""The Python API (`search.run`) on a file dataset, end to end."""

import gc
import json

import numpy as np
import pytest
import yaml

import search
from encoderkit import load_encoder
from search.errors import StudyError, settings_as_flags
from tests.conftest import TINY_SPACE


def test_run_from_python_on_an_npz_file(tmp_path, rng):
    y = rng.integers(0, 2, 240)
    X = rng.normal(size=(240, 4, 3)) + y[:, None, None]  # a sequence dataset (T=4, F=3)
    np.savez(tmp_path / "seq.npz", X=X, y=y)
    result = search.run(tmp_path / "seq.npz", space=str(TINY_SPACE), trials=2,  # a PathLike
                        study_dir=tmp_path / "study", progress=False)
    assert isinstance(result, search.StudyResult)
    assert "roc_auc" in result.leaderboard  # auto metric for a binary target
    assert result.best_trial is not None and 0.5 < result.best_cv <= 1.0
    assert result.test["low"] <= result.test["score"] <= result.test["high"]
    raw = json.loads((result.export_dir / "manifest.json").read_text())["baselines_test"]["raw"]
    difference = raw["winner_minus"]  # paired: on the same resampled test rows as both intervals
    assert difference["score"] == pytest.approx(result.test["score"] - raw["score"])
    assert difference["low"] <= difference["score"] <= difference["high"]
    assert "Winner minus each baseline on the same test rows (paired bootstrap, 95% CI): raw " in result.leaderboard
    baselines = json.loads((tmp_path / "study" / "baselines.json").read_text())
    assert {b["probe"] for b in baselines.values()} == {"logistic_regression"}  # the space's, as trials record it
    codes = load_encoder(result.export_dir).transform(X.reshape(240, -1))
    assert codes.shape[0] == 240 and np.isfinite(codes).all()
    assert gc.get_freeze_count() == 0  # the search froze the heap for its trials and gave it back


def test_structured_families_on_insurance_with_the_handcrafted_baseline(tmp_path):
    from tests.conftest import ROOT

    result = search.run("insurance:n=300,seed=2", space=str(ROOT / "tests" / "data" / "tiny_sequence.yaml"),
                        trials=3, study_dir=tmp_path / "study", progress=False)
    assert "baseline handcrafted" in result.leaderboard and "roc_auc" in result.leaderboard
    assert result.best_params["family"] in ("seq2seq", "conv1d")
    assert tuple(result.best_params["input_shape"]) == (4, 3)
    encoder = load_encoder(result.export_dir)
    assert tuple(encoder.input_shape) == (4, 3)
    X = search_insurance_rows()
    assert encoder.transform(X).shape == (len(X), result.best_params["code_size"])


def search_insurance_rows():
    from encoderkit.data import load_dataset

    return load_dataset("insurance:n=40,seed=9").X


def test_trials_search_a_subsample_and_the_winner_is_refit_on_the_whole_search_part(tmp_path, rng):
    from search.storage import load
    from search.study import open_study

    y = rng.integers(0, 2, 400)
    X = rng.normal(size=(400, 6)) + y[:, None]
    np.savez(tmp_path / "tab.npz", X=X, y=y)
    study_dir = tmp_path / "study"
    result = search.run(str(tmp_path / "tab.npz"), space=str(TINY_SPACE), trials=2, subsample=120,
                        study_dir=study_dir, progress=False)
    trials = load(open_study(study_dir)).get_trials(deepcopy=False)
    assert [t.user_attrs["rows"] for t in trials if t.state.name == "COMPLETE"] == [120, 120]
    manifest = json.loads((result.export_dir / "manifest.json").read_text())
    assert manifest["n_fit_rows"] == 300 and manifest["n_trial_rows"] == 120  # 25% of 400 held out
    assert "trials on 120 rows, winner refit on 300" in result.leaderboard
    # The subsample is part of what a study measures: another one is refused.
    with pytest.raises(StudyError, match="subsample=120"):
        search.run(str(tmp_path / "tab.npz"), space=str(TINY_SPACE), trials=3, subsample=200,
                   study_dir=study_dir, progress=False)


def test_a_subsample_as_large_as_the_search_part_is_noted_and_ignored(tmp_path, capsys):
    from search.problem import make_problem
    from encoderkit.data import load_dataset

    problem = make_problem(load_dataset("insurance:n=200,seed=1"), subsample=10000)
    assert problem.subsample is None and len(problem.trial_rows) == len(problem.search_rows) == 150
    assert problem.notes == ("subsample 10000 is not smaller than the search part (150 rows): ignored, trials use every row",)
    result = search.run("insurance:n=200,seed=1", space=str(TINY_SPACE), trials=1, subsample=10000,
                        study_dir=tmp_path / "study", progress=False, export=False)
    assert "note: subsample 10000 is not smaller than the search part" in capsys.readouterr().out
    assert json.loads((result.study_dir / "manifest.json").read_text())["subsample"] is None
    # export=False still says which trial won (it said None, with the leaderboard ranking trial 0)
    assert (result.best_trial, result.best_cv) == (0, result.trials[0].score) and result.best_estimator is None


def test_the_export_takes_the_data_as_the_user_has_it(tmp_path, rng):
    """A CSV's column names travel with the export (reordered columns are matched by name, the
    target column is ignored); an (n, T, F) NPZ's export takes (m, T, F) or flat rows; inside
    a Pipeline, FrozenEstimator keeps the searched weights."""
    import pandas as pd
    from sklearn.frozen import FrozenEstimator
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    y = rng.integers(0, 2, 120)
    frame = pd.DataFrame(rng.normal(size=(120, 4)) + y[:, None], columns=["w", "x", "y2", "z"]).assign(label=y)
    frame.to_csv(tmp_path / "table.csv", index=False)
    result = search.run(str(tmp_path / "table.csv"), target="label", space=str(TINY_SPACE), trials=1,
                        study_dir=tmp_path / "csv", progress=False)
    encoder = load_encoder(result.export_dir)
    assert list(encoder.feature_names_in_) == ["w", "x", "y2", "z"]
    data = json.loads((result.export_dir / "manifest.json").read_text())["data"]
    assert data["feature_names"] == ["w", "x", "y2", "z"] and data["target_name"] == "label"
    codes = encoder.transform(frame)
    np.testing.assert_array_equal(encoder.transform(frame[["label", "z", "y2", "x", "w"]]), codes)
    model = make_pipeline(FrozenEstimator(encoder), LogisticRegression()).fit(frame, y)
    np.testing.assert_array_equal(model[0].transform(frame), codes)  # not refit
    from sklearn.base import clone

    assert encoder.input_shape is None  # a clone refits on another table (input_shape=(4,) refused one)
    assert clone(encoder).fit(frame[["w", "x"]]).transform(frame[["w", "x"]]).shape[0] == len(frame)

    X = rng.normal(size=(120, 20, 3))
    np.savez(tmp_path / "seq.npz", X=X, y=rng.integers(0, 2, 120))
    result = search.run(str(tmp_path / "seq.npz"), space=str(TINY_SPACE), trials=1, study_dir=tmp_path / "seq",
                        progress=False)
    encoder = load_encoder(result.export_dir)
    np.testing.assert_array_equal(encoder.transform(X[:7]), encoder.transform(X[:7].reshape(7, -1)))


def test_a_second_ctrl_c_inside_optunas_bookkeeping_still_ends_the_run_as_interrupted(tmp_path, monkeypatch, rng):
    """A second Ctrl-C that lands while Optuna records a trial makes Optuna fail with its own
    UnboundLocalError (chained to the KeyboardInterrupt); it must end the run as an interrupt,
    with the result so far, not as a traceback."""
    import optuna.study._optimize as optimize
    from search.errors import Interrupted

    def interrupted_tell(*args, **kwargs):
        raise KeyboardInterrupt

    y = rng.integers(0, 2, 160)
    np.savez(tmp_path / "tab.npz", X=rng.normal(size=(160, 6)) + y[:, None], y=y)
    monkeypatch.setattr(optimize, "_tell_with_warning", interrupted_tell)
    with pytest.raises(Interrupted) as raised:
        search.run(tmp_path / "tab.npz", space=str(TINY_SPACE), trials=2, study_dir=tmp_path / "study", progress=False)
    assert isinstance(raised.value.__context__, UnboundLocalError)  # what Optuna raised: the case this is about
    assert raised.value.result.study_dir == tmp_path / "study" and "1 running" in raised.value.result.leaderboard
    monkeypatch.undo()
    # The next call in this process fails the trial at once (its worker is this live process:
    # no waiting for Optuna's heartbeat to go stale) and runs its config again.
    again = search.run(tmp_path / "tab.npz", space=str(TINY_SPACE), trials=2, study_dir=tmp_path / "study", progress=False)
    assert "trial 0 was left running by an earlier call in this process" in " ".join(again.notes)
    assert "trial 0 " in again.leaderboard and "failed: its result was lost while it was being stored" in again.leaderboard
    assert "2 complete" in again.leaderboard


def test_going_on_with_another_backend_is_said_with_the_configs_left_queued(tmp_path):
    """A study may go on with another backend (one storage, one schema); it was silent, and
    a config the optuna backend queued to run again waited unseen."""
    from search.engine import backend_switch_note
    from search.storage import load
    from search.study import Study

    study = Study(tmp_path, {"backend": "optuna"})
    load(study).enqueue_trial({"code_size": 4}, user_attrs={"retry_of": 0})
    assert backend_switch_note(study, "kerastuner") == (
        "the study ran with backend optuna; this run uses kerastuner; its 1 queued config(s) run only with "
        f"backend='optuna', and `resume` now uses kerastuner: python -m search run --backend optuna --study-dir "
        f"{tmp_path} runs them")
    with settings_as_flags():  # the command line's words for the same setting
        assert "run only with --backend optuna, and" in backend_switch_note(study, "kerastuner")
    assert backend_switch_note(Study(tmp_path, {"backend": "ray"}), "optuna") == (
        "the study ran with backend ray; this run uses optuna")


def test_a_study_gone_on_with_keras_tuner_says_so_and_records_its_version(tmp_path, rng):
    import importlib.metadata

    y = rng.integers(0, 2, 160)
    np.savez(tmp_path / "tab.npz", X=rng.normal(size=(160, 6)) + y[:, None], y=y)
    common = dict(space=str(TINY_SPACE), study_dir=tmp_path / "study", progress=False, fresh_process=0)
    search.run(tmp_path / "tab.npz", trials=1, **common)
    more = search.run(tmp_path / "tab.npz", trials=2, backend="kerastuner", **common)
    assert "the study ran with backend optuna; this run uses kerastuner" in more.notes
    packages = json.loads((tmp_path / "study" / "manifest.json").read_text())["packages"]
    assert packages["keras-tuner"] == importlib.metadata.version("keras-tuner") and packages["optuna"]


def test_the_progress_bar_writes_once_per_finished_trial(capsys):
    """In a job log (no TTY) every write is a line: two writes per trial doubled the log."""
    import optuna

    from search.engine import ProgressBar

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize")
    bar = ProgressBar(total=3)
    capsys.readouterr()
    for value in (0.5, 0.7):
        study.add_trial(optuna.trial.create_trial(params={}, distributions={}, value=value))
        bar(study, study.trials[-1])
    written = capsys.readouterr().err
    bar.close()
    updates = [part for part in written.split("\r") if part.strip()]
    assert len(updates) == 2, updates
    assert "2/3" in updates[-1] and "best=0.7000" in updates[-1]


def test_a_study_file_rewritten_keeps_its_permissions_and_the_same_text_is_not_rewritten(tmp_path):
    """A group-shared study: a no-op resume replaced manifest.json with a file of the
    writer's umask (666 became 644), though its text was the same."""
    import os
    import stat

    from search.study import atomic_write

    path = tmp_path / "manifest.json"
    path.write_text("same")
    os.chmod(path, 0o666)
    inode, mask = path.stat().st_ino, os.umask(0o022)
    try:
        atomic_write(path, "same")
        assert path.stat().st_ino == inode  # not replaced
        atomic_write(path, "other")
    finally:
        os.umask(mask)
    assert path.read_text() == "other" and stat.S_IMODE(path.stat().st_mode) == 0o666
    assert [p.name for p in tmp_path.iterdir()] == ["manifest.json"]


def test_a_trial_retried_out_of_memory_is_exported_replayed_and_shown_at_the_batch_size_it_ran(
        tmp_path, small_digits, monkeypatch):
    """The trial's score is of its retry at half the batch size: the export refits that, replay
    re-scores that, and the leaderboard and the trial's values say so (all used the batch size
    it ran out of memory at: another model than the one scored, and replay off by nearly a point)."""
    from encoderkit.transformer import AutoencoderTransformer

    real_fit, batches = AutoencoderTransformer.fit, []

    def out_of_memory_once(self, X, y=None, callbacks=None):
        batches.append(self.batch_size)
        if len(batches) == 1:
            raise MemoryError("out of memory allocating the batch")
        return real_fit(self, X, callbacks=callbacks)

    monkeypatch.setattr(AutoencoderTransformer, "fit", out_of_memory_once)
    X, y = small_digits
    space = yaml.safe_load(TINY_SPACE.read_text())
    space["training"]["batch_size"] = {"choice": [64]}  # sampled: one of its trials' values
    result = search.run(X, y, space=space, trials=1, fresh_process=0, study_dir=tmp_path / "study", progress=False)
    assert batches == [64, 32, 32]  # the trial, its retry, the export's refit
    assert result.trials[0].params["training.batch_size"] == 32  # and so are best_params_ and cv_results_
    manifest = json.loads((result.export_dir / "manifest.json").read_text())
    assert manifest["transformer_params"]["batch_size"] == 32 and manifest["candidate"]["training"]["batch_size"] == 32
    assert "bs=32 " in result.leaderboard and "(bs=64 ran out of memory)" in result.leaderboard
    replayed = search.replay(tmp_path / "study", trial=result.best_trial)
    assert batches[-1] == 32 and abs(replayed["replayed"] - replayed["stored"]) < 1e-6, replayed


def test_baselines_are_made_for_the_rows_they_fit_on_not_the_held_out_ones(monkeypatch, rng):
    """MiniRocket's kernel count follows the rows a baseline fits on, the search part (the
    whole dataset's count let the test part's size set it). The export passes the same."""
    from encoderkit.data import Dataset
    from search import engine
    from search.problem import make_problem

    asked = []

    def spy(dataset, n_fit_rows=None):
        asked.append(n_fit_rows)
        return {}

    monkeypatch.setattr(engine, "baselines_for", spy)
    y = np.arange(200) % 2
    problem = make_problem(Dataset("s", rng.normal(size=(200, 12)), y, "sequence", (12, 1)), test_size=0.5, seed=0)
    assert engine.score_baselines(problem) == {} and asked == [100]


def test_cv_sets_the_probes_folds_for_the_study_and_another_cv_is_another_study(tmp_path, monkeypatch):
    """`cv=2` (`--cv 2`) overrides the space's probe.cv (3 in the tiny space) for the trials and the baselines,
    is kept in the manifest (a resume scores the same way) and, like the metric, names the
    study: a re-run with other folds is refused."""
    from search import engine, objective
    from search.errors import SettingsError
    from search.study import open_study

    folds_used = []

    def counting(module):
        real = module.cv_score

        def cv_score(codes, y, metric, folds, *rest):
            folds_used.append(folds)
            return real(codes, y, metric, folds, *rest)
        return cv_score

    monkeypatch.setattr(objective, "cv_score", counting(objective))
    monkeypatch.setattr(engine, "cv_score", counting(engine))
    study = tmp_path / "study"
    settings = dict(space=str(TINY_SPACE), trials=1, fresh_process=0, study_dir=study, progress=False, export=False)
    search.run("digits", cv=2, **settings)
    assert folds_used and set(folds_used) == {2}, folds_used  # (the tiny trial takes no checkpoint)
    assert open_study(study).manifest["folds"] == 2 and open_study(study).problem().folds == 2
    with pytest.raises(StudyError, match=r"study was made with cv=2, not 3; use another study directory$"):
        search.run("digits", **settings)  # the space's 3
    for bad, why in ((1, "must be a number of folds of at least 2, got 1"), (2.5, "must be a whole number, got 2.5")):
        with pytest.raises(SettingsError, match=rf"^cv: {why}"):
            search.run("digits", cv=bad, **{**settings, "study_dir": tmp_path / "other"})
    assert not (tmp_path / "other").exists()
