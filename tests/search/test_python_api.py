"""From Python on in-memory data: `search.run(X, y)`, DataFrames, `StudyResult` objects and
the scikit-learn `EncoderSearch`."""

import gc
import json
import os
import pickle
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest
import scipy.sparse
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.utils.estimator_checks import parametrize_with_checks
from sklearn.utils.validation import check_is_fitted

import search
from search import EncoderSearch
from search.errors import SearchError, StudyError
from search.results import result_of
from search.study import open_study
from tests.conftest import ROOT, TINY_SPACE, run_cli
from tests.encoderkit.test_transformer import at_float32_precision


def _digits(n=300):
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    return X[:n], y[:n]


def test_a_notebook_completes_the_packages_public_names():
    assert set(search.__all__) <= set(dir(search))  # imported lazily: dir() listed none of them


def test_in_a_fresh_process_run_and_encoder_search_take_arrays_dataframes_and_sequences(tmp_path):
    """The acceptance check as a user would meet it: a new interpreter, the default trial
    process, digits arrays, a DataFrame with named columns and a 3-D sequence array. The run's
    own process imports no Keras (its trial child scores the baselines and refits the winner,
    as this process does with `fresh_process=0`, to the same test score)."""
    script = textwrap.dedent(f"""
        import multiprocessing.context, sys
        import numpy as np, pandas as pd, search
        from sklearn.datasets import load_digits

        children, start = [], multiprocessing.context.SpawnProcess.start
        multiprocessing.context.SpawnProcess.start = lambda process: children.append(process) or start(process)
        from search import EncoderSearch

        X, y = load_digits(return_X_y=True)
        X, y = X[:300], y[:300]
        frame = pd.DataFrame(X[:, :16], columns=[f"px{{i}}" for i in range(16)]).assign(label=y)
        rng = np.random.default_rng(0)
        labels = rng.integers(0, 2, 160)
        sequences = rng.normal(size=(160, 10, 3)) + labels[:, None, None]
        cases = {{"arrays": ((X, y), {{}}), "frame": ((frame,), {{"target": "label"}}),
                  "sequence": ((sequences, labels), {{}})}}
        space = {str(TINY_SPACE)!r}
        encoders = {{}}
        for name, (args, kwargs) in cases.items():
            result = search.run(*args, **kwargs, space=space, trials=1, study_dir=f"{tmp_path}/{{name}}",
                                progress=False)
            if name == "arrays":  # its baselines, trial and refit ran in one child process: no Keras here yet
                assert not {{"keras", "tensorflow"}} & set(sys.modules), sorted(sys.modules)
                assert len(children) == 1, children
            data = args[0].drop(columns="label") if name == "frame" else args[0]
            codes = result.best_estimator.transform(data)
            assert codes.shape == (len(data), result.best_estimator.n_features_out_), name
            fit_y = frame["label"] if name == "frame" else args[1]
            searcher = EncoderSearch(space, trials=1, fresh_process=0).fit(data, fit_y)
            assert searcher.transform(data).shape[0] == len(data), name
            # The same trial refit in this process: the child's export scored as this one does
            assert abs(searcher.test_score_["score"] - result.test["score"]) <= 0.02, (name, searcher.test_score_)
            assert searcher.n_features_in_ == result.best_estimator.n_features_in_ == (30 if name == "sequence"
                                                                                      else data.shape[1]), name
            encoders[name] = result.best_estimator
            print(name, "ok", codes.shape, result.test["score"])
        encoder = encoders["sequence"]
        assert encoder.sample_shape_ == (10, 3), encoder.sample_shape_
        np.testing.assert_array_equal(encoder.transform(sequences), encoder.transform(sequences.reshape(160, 30)))
        print("sequence shapes ok")
    """)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, env=env,
                          timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    for name in ("arrays", "frame", "sequence"):
        assert f"{name} ok" in done.stdout
    assert "sequence shapes ok" in done.stdout
    assert "Traceback" not in done.stderr


def test_a_ctrl_c_during_the_first_calls_imports_leaves_the_notebook_working(tmp_path):
    """Ctrl-C in the first seconds of a notebook's first search landed inside an import (yaml's,
    Keras'): the half-imported module stayed behind ("partially initialized module 'yaml'"),
    and every later call failed until the kernel was restarted. Now the Ctrl-C waits for the
    import and then stops the call. (Trials in the notebook's process, `fresh_process=0`: by
    default its trial child imports Keras, and the notebook's process never does.)"""
    code = f"""
import os, signal, sys
class CtrlCInside:  # presses Ctrl-C while each of these modules is being imported
    pending = {{"yaml.reader", "keras.src.layers"}}
    def find_spec(self, name, path=None, target=None):
        if name in self.pending:
            self.pending.discard(name)
            os.kill(os.getpid(), signal.SIGINT)
        return None
sys.meta_path.insert(0, CtrlCInside())
import search
from search.errors import Interrupted
for cell in (1, 2, 3):
    try:
        result = search.run("digits", space={str(TINY_SPACE)!r}, trials=1, study_dir={str(tmp_path / "study")!r},
                            export=False, progress=False, verbose=False, fresh_process=0)
        print(cell, "finished", len(result.trials))
    except Interrupted as exc:
        print(cell, "Interrupted", exc.result.study_dir is not None)
    except KeyboardInterrupt:
        print(cell, "KeyboardInterrupt", os.path.exists({str(tmp_path / "study")!r}))
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    # before the study exists: nothing written; once it does: what it holds
    assert result.stdout.split("\n")[:3] == ["1 KeyboardInterrupt False", "2 Interrupted True", "3 finished 1"], (
        result.stdout + result.stderr[-3000:])
    assert result.stderr.count("stopping when the setup is done (Ctrl-C again: stop now)") == 2  # said at once


@pytest.mark.parametrize("how", ["stdin", "script-without-main-guard"])
def test_a_script_runs_its_trials_in_child_processes(tmp_path, how):
    """The trials' spawned child runs none of the user's main module: a script without an
    `if __name__ == "__main__":` guard started its search again in the child, and `python -
    <<EOF` made the child run `<stdin>`; either child died before its first trial and the
    search hung (multiprocessing's start-up write) or ended in a traceback."""
    script = textwrap.dedent(f"""
        import numpy as np, search
        from sklearn.datasets import load_digits
        X, y = load_digits(return_X_y=True)
        result = search.run(X[:400], y[:400], space={str(TINY_SPACE)!r}, trials=1, study_dir="s", progress=False,
                            fresh_process=1)
        print("states", sorted(trial.state for trial in result.trials))
    """)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    (tmp_path / "search_digits.py").write_text(script)
    command, given = ([sys.executable, "-"], script) if how == "stdin" else ([sys.executable, "search_digits.py"], None)
    done = subprocess.run(command, input=given, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "states ['complete']" in done.stdout, done.stdout[-2000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]


def test_a_study_of_arrays_keeps_them_for_the_command_line_and_refuses_other_arrays(tmp_path):
    X, y = _digits()
    study = tmp_path / "study"
    frame = pd.DataFrame(X, columns=[f"p{i}" for i in range(64)])
    space = search.read_space(TINY_SPACE)  # a space written in Python: a dict, NumPy numbers and tuples in it
    space["probe"]["cv"], space["code_size"] = np.int64(3), {"int": (2, 8)}
    result = search.run(frame, pd.Series(y, name="digit"), space=space, trials=1, study_dir=study,
                        progress=False, fresh_process=0)
    manifest = json.loads((study / "manifest.json").read_text())
    assert manifest["data"].startswith("memory:") and manifest["target_name"] == "digit"
    assert (study / "data.npz").is_file()
    assert (study / "space.yaml").read_text().startswith("# The space this study was given in Python")
    space["code_size"] = {"int": (2, 9)}
    with pytest.raises(StudyError, match=r"its space given as a dict \(space=...\) changed since the study began"):
        search.run(frame, pd.Series(y, name="digit"), space=space, trials=1, study_dir=study, progress=False)

    # The command line works on it as on any study: the arrays come from the study itself.
    done = run_cli("export", study, "-o", tmp_path / "again")
    assert done.returncode == 0, done.stderr
    again = json.loads((tmp_path / "again" / "manifest.json").read_text())
    assert again["data"]["feature_names"][:2] == ["p0", "p1"] and again["data"]["target_name"] == "digit"
    assert again["test"] == result.test  # the same rows, split and seed
    done = run_cli("replay", study, "--trial", str(result.best_trial))
    assert done.returncode == 0 and "matches" in done.stdout, done.stdout + done.stderr
    # More trials from the command line: the arrays' copy is the study's data (any other data
    # is refused with that fix; it was "study was made with data='memory:..', not 'digits'"),
    # and the space's file reads as the same space as the dict did.
    more = ("run", "--space", TINY_SPACE, "--trials", "2", "--study-dir", study, "--no-progress")
    done = run_cli(*more)
    assert done.returncode == 2 and done.stderr == (
        f"error: {study}: its data came from Python arrays, not digits; continue it with --data {study / 'data.npz'} "
        f"(their copy) or `python -m search resume {study}`\n"), done.stderr
    done = run_cli(*more, "--data", study / "data.npz")
    assert done.returncode == 0 and "2 trials: 2 complete" in done.stdout, done.stdout + done.stderr
    assert json.loads((study / "manifest.json").read_text())["data"] == manifest["data"]  # still the arrays

    # Other arrays in the same study directory are refused, whatever their shape.
    before = sorted(p.name for p in study.iterdir())
    with pytest.raises(StudyError, match=r"study was made with other data \(memory:"):
        search.run(frame.iloc[::-1], pd.Series(y[::-1], name="digit", index=frame.index[::-1]),
                   space=str(TINY_SPACE), trials=1, study_dir=study, progress=False)
    assert sorted(p.name for p in study.iterdir()) == before

    # The stored arrays are checked by their hash: a changed data.npz refuses to resume.
    stored = dict(np.load(study / "data.npz"))
    stored["X"][0, 0] += 1
    np.savez(study / "data.npz", **stored)
    done = run_cli("resume", study)
    assert done.returncode == 2 and "data.npz: changed since the study began" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("call, message", [
    (lambda X, y: search.run(X), "y=None: a search needs labels"),
    (lambda X, y: search.run(X, y[:10]), "X: 300 feature rows but 10 labels"),
    (lambda X, y: search.run("digits", y), "y: a dataset name or file (digits) brings its own labels"),
    (lambda X, y: search.run(X, y, target="label"), "target='label': names a DataFrame column"),
    (lambda X, y: search.run(pd.DataFrame(X).assign(t=y)), "X (DataFrame): no labels: pass y, or target="),
    (lambda X, y: search.run(pd.DataFrame({"a": ["x"] * 300, "b": 1.0}), y), "column 'a' is not numeric (row 0 has 'x')"),
    (lambda X, y: search.run(np.where(np.arange(300)[:, None] == 5, np.nan, X), y), "has nan in row 5"),
    (lambda X, y: search.run(np.where(np.arange(19200).reshape(300, 16, 4) == 5 * 64 + 2 * 4 + 1, np.nan,
                                      X.reshape(300, 16, 4)), y),  # a sequence: its step and channel, not "column 9"
     "X: X[5, 2, 1] is nan (NaN/inf not allowed; pad or resample series of unequal length to one length)"),
    (lambda X, y: search.run(pd.DataFrame(X).rename(columns={3: "a"}), y),  # an export that could not take it
     "X (DataFrame): its column names mix strings ('a') and other types (0 is int), which scikit-learn refuses; "
     "give them one type: X.columns = X.columns.astype(str)"),
    (lambda X, y: search.run(X, np.where(np.arange(300) == 7, None, y)), "y: target 'y' has no label in 1 row(s) (first: row 7)"),
    (lambda X, y: search.run(X, np.zeros(300)), "y: target 'y': the labels hold one class only (0.0)"),  # not "X:"
    (lambda X, y: search.run(pd.DataFrame(X).assign(digit=y), "digit"),
     "y='digit': expected one label per row; to take the labels from a column of X, pass target='digit'"),
    (lambda X, y: search.run(X, pd.Series(y.astype(str)).astype("string").mask(np.arange(300) == 7)),
     "has no label in 1 row(s) (first: row 7)"),  # pd.NA
    (lambda X, y: EncoderSearch().fit(X, pd.Series(y % 2 == 0, dtype="boolean").mask(np.arange(300) == 7)),
     "y: target 'y' has no label in 1 row(s) (first: row 7)"),
    (lambda X, y: search.run(scipy.sparse.csr_matrix(X), y), "X: a sparse matrix (csr_matrix); autoencoders take dense"),
    (lambda X, y: search.run(X, target="digit"), "target='digit': names a DataFrame column; X is an array"),
    (lambda X, y: search.run(X[:, 0], y), "X: must have one row per sample (2-D tables, 3-D sequences (n, T, F) or "
                                          "4-D images (n, H, W, C)), got shape (300,)"),
    (lambda X, y: search.run(X.reshape(300, 4, 4, 2, 2), y), "X: must have one row per sample (2-D tables, 3-D "
                                                            "sequences (n, T, F) or 4-D images (n, H, W, C)), got "
                                                            "shape (300, 4, 4, 2, 2)"),  # searched as a table
    (lambda X, y: search.run(X, y, workers=0), "workers: must be at least 1, got 0"),
    (lambda X, y: search.run(X, y, trials=2.5), "trials: must be a whole number, got 2.5"),
    (lambda X, y: search.run(X, y, seed=-1), "seed: must be between 0 and 2**31 - 1, got -1"),
    (lambda X, y: search.run(X, y, space=123),
     "space: expected a shipped space's name, a YAML file path or a dict, got 123"),
    (lambda X, y: search.run(X, y, study_dir=123), "study_dir: expected a folder path, got 123"),
    (lambda X, y: search.run(X, y, study_dir=""), "study_dir: an empty path; give a folder, or none for studies/NAME-TIME"),
    (lambda X, y: search.run([[1.0, 2.0], [3.0]] * 30, [0, 1] * 30),  # was numpy's "inhomogeneous part"
     "X holds samples of unequal shape: X[0] has shape (2,), X[1] has (1,); every sample needs one shape"),
    (lambda X, y: search.run(X[:0], y[:0]), "X: no rows or no feature columns"),  # reshape(0, -1) failed
    (lambda X, y: search.run(X.reshape(300, 1, 64), y),  # aeon's layout, searched as 1-step series
     "X: shape (300, 1, 64) is series of 1 step with 64 channels; aeon and sktime store series as (n, channels, "
     "steps): pass X.transpose(0, 2, 1) (shape (300, 64, 1)), or X.reshape(300, -1) for a table"),
    (lambda X, y: search.run({"pixels": X}, y), "X: expected an array or a DataFrame, got dict"),
    (lambda X, y: search.run(pd.DataFrame(X), pd.Series(y)[::-1]),  # same index, other order: each label elsewhere
     "y: its index and X's (DataFrame) hold the same labels in another order; labels are taken by position, as "
     "in scikit-learn: pass y.loc[X.index] if the indexes name the rows, y.to_numpy() if the order does"),
    # two rows per customer: the repeated labels took y by position, each label to another row, in silence
    (lambda X, y: search.run(pd.DataFrame(X, index=np.arange(300) // 2), pd.Series(y, index=np.arange(300) // 2)[::-1]),
     "y: its index and X's (DataFrame) hold the same labels in another order; labels are taken by position, as in "
     "scikit-learn: pass the rows lined up (X.index repeats labels, so y.loc[X.index] would repeat rows)"),
    (lambda X, y: search.run(pd.DataFrame(X).add_prefix("p").assign(z=X[:, 3] * 1j), y),  # its real part was taken
     "X (DataFrame): column 'z' holds complex numbers (complex128); pass real features"),
    # EncoderSearch checked with scikit-learn's validate_data first: numpy's, narwhals' or an unnamed NaN
    (lambda X, y: EncoderSearch().fit(pd.DataFrame(X).add_prefix("p").assign(t=pd.Timestamp("2026-01-01")), y),
     "X (DataFrame): column 't' holds dates, durations or intervals (datetime64"),
    (lambda X, y: EncoderSearch().fit(pd.DataFrame(X, columns=["a"] * 2 + [f"p{i}" for i in range(62)]), y),
     "X (DataFrame): column names repeat ('a')"),
    (lambda X, y: EncoderSearch().fit(pd.DataFrame(X).add_prefix("p").mask(np.arange(300)[:, None] == 7 + X * 0), y),
     "X (DataFrame): 'p0' has nan in row 7 (NaN/inf not allowed)"),
    # numbers as text are taken by both (search.run did, EncoderSearch gave sklearn's "dtype='numeric' ..."); words not
    (lambda X, y: EncoderSearch().fit(np.where(np.arange(300)[:, None] == 7 + X * 0, "abc", X.astype(str)), y),
     "X: values are not numeric (dtype <U32)"),
])
def test_bad_in_memory_data_is_refused_in_one_line_before_anything_is_written(tmp_path, monkeypatch, call, message):
    X, y = _digits()
    monkeypatch.chdir(tmp_path)  # the default study directory would go here
    with pytest.raises(ValueError) as caught:  # DataError or SettingsError: scikit-learn's convention
        call(X, y)
    assert message in str(caught.value) and "\n" not in str(caught.value)
    assert not (tmp_path / "studies").exists()


def test_keras_backend_is_refused_where_keras_runs_another_or_it_is_unknown(tmp_path, monkeypatch):
    import keras

    X, y = _digits()
    monkeypatch.chdir(tmp_path)
    other = "jax" if keras.backend.backend() != "jax" else "tensorflow"
    for asked, message in ((other, f"keras_backend: '{other}', but this process already runs Keras on "
                                   f"'{keras.backend.backend()}'; set KERAS_BACKEND={other} before Keras is first "
                                   "imported (in a notebook: restart the kernel)"),
                           ("theano", "keras_backend: expected one of tensorflow, jax, torch, got 'theano'")):
        with pytest.raises(ValueError) as caught:
            search.run(X, y, keras_backend=asked)
        assert str(caught.value) == message
    assert os.environ["KERAS_BACKEND"] == keras.backend.backend() and not (tmp_path / "studies").exists()


def test_keras_backend_from_python_runs_the_study_on_it(tmp_path):
    """The command line's --keras-backend, for a notebook that has not imported Keras yet."""
    script = textwrap.dedent(f"""
        import json, os, sys
        import numpy as np, search
        from search import EncoderSearch

        rng = np.random.default_rng(0)
        y = rng.integers(0, 2, 160)
        X = rng.normal(size=(160, 6)) + y[:, None]
        result = search.run(X, y, space={str(TINY_SPACE)!r}, trials=1, fresh_process=0, progress=False,
                            study_dir="study", keras_backend="jax")
        searcher = EncoderSearch({str(TINY_SPACE)!r}, trials=1, fresh_process=0, keras_backend="jax").fit(X, y)
        print(json.dumps([json.load(open("study/manifest.json"))["keras_backend"],
                          json.load(open("study/export/manifest.json"))["keras_backend"],
                          sys.modules["keras"].backend.backend(), searcher.transform(X).shape[0]]))
    """)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    env.pop("KERAS_BACKEND", None)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, env=env,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == ["jax", "jax", "jax", 160]


def test_the_result_is_an_object_with_its_trials_a_frame_and_the_fitted_export(tmp_path):
    X, y = _digits()
    # A tuple, holding a DataFrame whose columns are not strings (no feature names, as in sklearn)
    # and settings as NumPy scalars, as a notebook computes them.
    result = search.run((pd.DataFrame(X), y), space=str(TINY_SPACE), trials=np.int64(2), scale=np.float32(1.0),
                        study_dir=tmp_path / "s", progress=False, fresh_process=0, data_dir="/no/such/folder")
    assert str(result) == result.leaderboard and result.leaderboard.startswith("Leaderboard (accuracy, 2 trials")
    # a setting this data does not use is said, not taken in silence, and not recorded
    assert "data_dir /no/such/folder: not used; only fashion-mnist reads its files from one" in result.notes
    assert open_study(tmp_path / "s").manifest["data_dir"] is None
    shown = []  # what IPython prints for a cell ending in `result` (its pretty-printer protocol)
    result._repr_pretty_(__import__("types").SimpleNamespace(text=shown.append), False)
    assert shown == [result.leaderboard]
    assert [t.number for t in result.trials] == [0, 1] and {t.state for t in result.trials} == {"complete"}
    best = max(result.trials, key=lambda t: t.score)
    assert best.number == result.best_trial and best.score == result.best_cv
    assert set(result.baselines) == {"raw", "pca"}
    frame = result.to_frame()
    assert list(frame["number"]) == [0, 1] and frame["score"].max() == result.best_cv
    assert {"state", "family", "config", "seconds", "param_family", "param_code_size"} <= set(frame.columns)
    assert set(frame["host"]) == {__import__("socket").gethostname()} and frame["device"].notna().all()  # who ran it
    codes = result.best_estimator.transform(X)
    assert codes.shape == (300, result.best_estimator.n_features_out_)
    np.testing.assert_array_equal(result.best_estimator.transform(pd.DataFrame(X)), codes)
    assert result.best_estimator is result.best_estimator  # loaded once
    reported = result_of(open_study(tmp_path / "s"))
    assert reported.trials == result.trials and str(reported) == str(result)
    assert reported.export_dir.is_absolute()  # it outlives a notebook's change of directory

    # Another trial exported over it later: a result made before refuses to hand out that encoder.
    other = 1 - result.best_trial
    search.export_best(tmp_path / "s", trial=other)  # to export-trial-N; a later run would write export/
    shutil.rmtree(tmp_path / "s" / "export")
    shutil.copytree(tmp_path / "s" / f"export-trial-{other}", tmp_path / "s" / "export")
    with pytest.raises(StudyError, match=rf"export: holds trial {other}'s encoder now, exported after this result"):
        reported.best_estimator


def test_a_quiet_search_warns_of_data_used_perhaps_not_as_meant(tmp_path):
    """EncoderSearch is quiet by default (verbose=0); its notes on the data, such as a column
    'target' that most likely leaks the labels into the codes, still reach the user."""
    from encoderkit.errors import DataWarning

    X, y = _digits()
    frame = pd.DataFrame(X[:, :8], columns=[f"p{i}" for i in range(8)]).assign(target=y)
    with pytest.warns(DataWarning) as caught:
        EncoderSearch(str(TINY_SPACE), trials=1, fresh_process=0, subsample=10000).fit(frame, y)
    said = [str(w.message) for w in caught if issubclass(w.category, DataWarning)]
    assert said[0].startswith("X (DataFrame): its column 'target' is taken as a feature")
    # a setting the data does not use: it was only printed, by a verbose search
    assert "subsample 10000 is not smaller than the search part (225 rows): ignored, trials use every row" in said


def test_encoder_search_is_a_scikit_learn_search_estimator(tmp_path):
    X, y = _digits()
    searcher = EncoderSearch(str(TINY_SPACE), trials=3, fresh_process=0, seed=1)
    assert clone(searcher).get_params() == searcher.get_params()
    searcher.fit(X, y)
    results = searcher.cv_results_
    assert list(results["number"]) == [0, 1, 2]
    assert results["mean_test_score"][searcher.best_index_] == searcher.best_score_ == np.nanmax(results["mean_test_score"])
    assert results["rank_test_score"][searcher.best_index_] == 1
    assert searcher.best_params_ == results["params"][searcher.best_index_]
    assert searcher.best_params_["family"] in {"dense", "denoising"}
    family = results["param_family"]
    assert list(family) == [p["family"] for p in results["params"]]
    assert searcher.test_score_["low"] <= searcher.test_score_["score"] <= searcher.test_score_["high"]
    codes = searcher.transform(X)
    assert codes.shape == (300, searcher.n_features_out_) and searcher.n_features_in_ == 64
    np.testing.assert_array_equal(codes, searcher.best_estimator_.transform(X))
    # A refused refit leaves it as it was (scikit-learn's validate_data had recorded 10 features)
    fitted = dict(vars(searcher))
    with pytest.raises(ValueError, match="one class"):
        searcher.fit(X[:, :10], np.zeros(300))
    assert vars(searcher).keys() == fitted.keys() and all(vars(searcher)[k] is v for k, v in fitted.items())
    assert searcher.study_dir_.is_dir()
    unfitted = EncoderSearch(str(TINY_SPACE))
    with pytest.raises(ValueError, match="one class"):
        unfitted.fit(X[:, :10], np.zeros(300))
    with pytest.raises(NotFittedError):
        check_is_fitted(unfitted)

    # Its study lives in a temporary directory for as long as the estimator does.
    study = searcher.study_dir_
    assert (study / "manifest.json").is_file() and str(tmp_path) not in str(study)
    restored = pickle.loads(pickle.dumps(searcher))
    np.testing.assert_allclose(restored.transform(X), codes, rtol=1e-6)
    del searcher
    gc.collect()
    assert not study.exists()
    np.testing.assert_allclose(restored.transform(X), codes, rtol=1e-6)  # needs no study

    # With study_dir the study stays, and fitting again continues it (same data, same seed).
    kept = EncoderSearch(str(TINY_SPACE), trials=1, fresh_process=0, study_dir=tmp_path / "kept").fit(X, y)
    EncoderSearch(str(TINY_SPACE), trials=2, fresh_process=0, study_dir=tmp_path / "kept").fit(X, y)
    assert kept.study_dir_ == tmp_path / "kept"
    first, second = result_of(open_study(tmp_path / "kept")).trials
    assert first.params != second.params  # continued with new draws, not the first run's again
    # A fold of cross_val_score fits a clone on other rows, in the same folder: the refusal says why
    with pytest.raises(StudyError, match=r"study was made with other data .*; use another study directory \(a "
                                         r"study_dir holds one study; in cross-validation, leave study_dir=None\)$"):
        clone(kept).fit(X[:200], y[:200])


def test_a_run_leaves_the_notebooks_gpu_environment_as_it_found_it(tmp_path, monkeypatch):
    """The driver takes its GPU through CUDA_VISIBLE_DEVICES while it runs; the notebook's next
    run (and its own code) must still see every device it had."""
    from search.devices import SHARING_ENV

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")  # two GPUs, as far as the search can tell
    for key in SHARING_ENV:
        monkeypatch.delenv(key, raising=False)
    X, y = _digits(200)
    for study in ("first", "second"):  # the second run asks for GPU 1 again
        search.run(X, y, space=str(TINY_SPACE), trials=1, gpus="0,1", study_dir=tmp_path / study, progress=False,
                   fresh_process=0, export=False)
        assert os.environ["CUDA_VISIBLE_DEVICES"] == "0,1"
        assert not set(SHARING_ENV) & set(os.environ)


def test_cv_results_name_each_trials_family_also_where_the_space_has_one():
    """A one-family space samples no `family`; `best_params_["family"]` must still work."""
    from search.estimator import cv_results
    from search.results import TrialRecord

    trials = [TrialRecord(0, "complete", 0.9, 0.01, "dense", "dense code 4", {"code_size": 4}, 1.0),
              TrialRecord(1, "fail", None, None, "dense", "dense code 6", {"code_size": 6}, 0.5)]
    results = cv_results(trials)
    assert results["params"] == [{"family": "dense", "code_size": 4}, {"family": "dense", "code_size": 6}]
    assert list(results["param_family"]) == ["dense", "dense"] and list(results["rank_test_score"]) == [1, 2]


def test_encoder_search_refuses_a_password_in_its_storage_url():
    X, y = _digits(60)
    with pytest.raises(SearchError, match=r"storage: give its password through \$SEARCH_STORAGE_PASSWORD"):
        EncoderSearch(storage="postgresql://user:secret@db.example/studies").fit(X, y)


def _expected_failed(estimator):
    return {
        "check_fit2d_1feature": (
            "its 10 rows hold classes of fewer than 4 rows: too few for a held-out test part and "
            "3 CV folds, which the search refuses with its own message"
        ),
    }


@parametrize_with_checks([EncoderSearch(str(TINY_SPACE), trials=1, fresh_process=0)],
                         expected_failed_checks=_expected_failed)
def test_sklearn_contract(estimator, check, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    at_float32_precision(check, monkeypatch)
    check(estimator)


def test_the_readme_from_python_snippets_run_as_written(tmp_path):
    """Every code block of the README's "From Python" section, run in order in one new
    interpreter, as a user pasting them into a notebook would."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## From Python\n", 1)[1].split("\n## ", 1)[0]
    blocks = [block.split("```", 1)[0] for block in section.split("```python\n")[1:]]
    assert len(blocks) == 5, "the section shows arrays, a DataFrame, a space, EncoderSearch and FrozenEstimator"
    script = "\n".join(blocks) + "\nprint('snippets ok', len(trials), codes.shape)\n"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, env=env,
                          timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "snippets ok 3 (1797," in done.stdout
    assert (tmp_path / "runs" / "digits-frame" / "export" / "manifest.json").is_file()
    own = json.loads((tmp_path / "runs" / "digits-own-space" / "export" / "manifest.json").read_text())
    assert own["candidate"]["family"] in ("dense", "denoising", "sparse")
