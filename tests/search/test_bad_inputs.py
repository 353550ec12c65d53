"""The bad-input catalogue: every case ends with exit status 2 (or, in the library, a clear
exception type) and one line naming what is wrong; no traceback; nothing stored changes."""

import hashlib
import json
import os
import shutil

import numpy as np
import pandas as pd
import pytest

from search.devices import usable_cores
from tests.conftest import TINY_SPACE, run_cli

SPACE_OK = "training: {epochs: 2}\nfamilies: {dense: {}}\n"


def _space(text):
    return lambda tmp: _write(tmp / "space.yaml", text)


def _write(path, text):
    path.write_text(text)
    return path


def _csv(frame):
    return lambda tmp: (frame.to_csv(tmp / "data.csv", index=False), tmp / "data.csv")[1]


def _npz(**arrays):
    return lambda tmp: (np.savez(tmp / "data.npz", **arrays), tmp / "data.npz")[1]


def _numeric(n=40, **columns):
    frame = pd.DataFrame({"a": np.arange(float(n)), "b": np.ones(n), "label": [0, 1] * (n // 2)})
    for name, values in columns.items():
        frame[name] = values
    return frame


def _with_value(value):
    frame = _numeric()
    frame.loc[7, "a"] = value
    return frame


# (id, run arguments (callables get tmp_path), text the one error line must contain)
RUN_CASES = [
    ("space-yaml-syntax", ["--space", _space("families: [dense\n")], "space.yaml: invalid YAML"),
    ("space-empty-file", ["--space", _space("")], "space.yaml: the file is empty"),
    ("space-key-given-twice", ["--space", _space("code_size: 16\ncode_size: 32\nfamilies: {dense: {}}\n")],
     "space.yaml: invalid YAML at line 2, column 1: key 'code_size' given twice"),  # PyYAML kept the last silently
    ("space-a-folder", ["--space", lambda tmp: tmp], ": a folder, not a space file"),
    ("space-missing-file", ["--space", lambda tmp: tmp / "nope.yaml"], "nope.yaml"),
    ("space-unknown-family", ["--space", _space("families: {densse: {}}\n")], "families.densse: unknown family (did you mean 'dense'?)"),
    ("space-unknown-key", ["--space", _space("trainig: {epochs: 2}\nfamilies: {dense: {}}\n")], "did you mean 'training'?"),
    ("space-unknown-param", ["--space", _space("families: {dense: {dropot: 0.1}}\n")], "did you mean 'dropout'?"),
    ("space-wrong-type", ["--space", _space("code_size: big\nfamilies: {dense: {}}\n")], "code_size"),
    ("space-empty-choice", ["--space", _space("training: {optimizer: {choice: []}}\nfamilies: {dense: {}}\n")], "training.optimizer"),
    ("space-low-above-high", ["--space", _space("code_size: {int: [64, 8]}\nfamilies: {dense: {}}\n")], "code_size.int: low 64 > high 8"),
    ("space-log-nonpositive", ["--space", _space("training: {learning_rate: {float: [0.0, 0.1], log: true}}\nfamilies: {dense: {}}\n")], "training.learning_rate"),
    ("space-out-of-range", ["--space", _space("families: {dense: {dropout: 2.0}}\n")], "families.dense.dropout: 2.0 out of range"),
    ("space-no-family-fits", ["--space", _space("families: {seq2seq: {}}\n"), "--data", _csv(_numeric()), "--target", "label"], "no family fits tabular data (seq2seq) (time series: give X as an (n, T, F) array, from Python or a .npz file; "
     "X[:, :, None] for one channel)"),
    ("data-missing-file", ["--data", lambda tmp: tmp / "missing.csv"], "missing.csv: no such file"),
    ("data-npz-labels-in-columns", ["--data", _npz(X=np.ones((60, 3)), y=np.zeros((60, 2)))],
     "data.npz: label array 'y' must hold one label per row, got shape (60, 2)"),
    ("data-continuous-target", ["--data", _csv(_numeric(label=np.arange(40) % 2 + 0.5)), "--target", "label"],
     "data.csv: target 'label' holds non-integer numbers (0.5 in line 2): the probe is a classifier"),
    ("space-a-csv-file", ["--space", _space("a,b,label\n" + "1,2,0\n" * 500)],
     "space.yaml: expected a mapping of keys (families, training, ...), got str 'a,b,label 1,2,0"),
    ("data-empty-file", ["--data", lambda tmp: _write(tmp / "empty.csv", "")], "empty.csv: file is empty"),
    ("data-unknown-name", ["--data", "digitz"], "digitz"),
    ("data-bad-option", ["--data", "insurance:n=lots"], "insurance:n=lots: option 'n=lots' must look like name=INTEGER"),
    ("data-repeated-column", ["--data", _csv(pd.DataFrame([[0.0, 1.0, 2.0, 0], [1.0, 2.0, 3.0, 1]] * 20,
                                                         columns=["a", "b", "a", "label"])), "--target", "label"],
     "data.csv: column names repeat in its header ('a')"),
    ("data-nan", ["--data", _csv(_with_value(np.nan)), "--target", "label"], "'a' has nan in line 9 (NaN/inf not allowed)"),
    ("data-inf", ["--data", _csv(_with_value(np.inf)), "--target", "label"], "NaN/inf not allowed"),
    # a value beyond float32 failed the export, after the whole search, with a traceback
    ("data-beyond-float32", ["--data", _csv(_with_value(1e300)), "--target", "label"],
     "'a' has 1e+300 in line 9 (beyond float32's range, +-3.4e+38, in which the encoders compute: rescale the feature)"),
    ("data-target-other-case", ["--data", _csv(_numeric().rename(columns={"label": "Label"})), "--target", "label"],
     "data.csv: no target column 'label' (did you mean 'Label'?) (columns, split at commas: a, b, Label)"),
    ("data-unknown-suffix-with-target", ["--data", lambda tmp: _write(tmp / "data.txt", "a,label\n1,0\n"), "--target", "label"],
     "data.txt: not a built-in dataset (digits, fashion-mnist, insurance, ucr:NAME) nor a .csv, .npy or .npz file"),
    ("data-strings", ["--data", _csv(_numeric(text=["x", "y"] * 20)), "--target", "label"], "column 'text' is not numeric (line 2 has 'x')"),
    ("data-missing-target", ["--data", _csv(_numeric()), "--target", "nope"], "no target column 'nope'"),
    ("data-one-class", ["--data", _csv(_numeric(label=np.zeros(40, int))), "--target", "label"], "data.csv: target 'label': the labels hold one class only (0); a probe needs two"),
    ("data-too-few-rows", ["--data", _csv(_numeric(n=8)), "--target", "label"],
     "data.csv: target 'label': class 0 has 4 rows, too few for a 0.25 test split and 5-fold CV (each class needs "
     "at least 7: 5 in the search part for CV, the others in the test part); use --cv 3 (these rows allow it)"),
    # (6 rows could leave 4 in the search part)
    ("data-too-few-search-rows", ["--data", _csv(_numeric(n=12, label=[0] * 6 + [1] * 6)), "--target", "label", "--test-size", "0.5"],
     "data.csv: target 'label': the search part (50% of the rows) has 3 rows of class 0, too few for 5-fold CV"),
    ("data-too-few-rows-names-the-cv-flag",
     ["--data", _csv(_numeric(n=12, label=[0] * 6 + [1] * 6)), "--target", "label", "--test-size", "0.5"],
     "; use --cv 3 (these rows allow it) or lower the test size"),
    ("cli-one-fold", ["--cv", "1"], "--cv: must be a number of folds of at least 2, got 1"),
    ("data-shape-mismatch", ["--data", _npz(X=np.ones((30, 4)), y=np.arange(20) % 2)], "30 feature rows but 20 labels"),
    ("cli-unknown-backend", ["--backend", "nope"], "--backend: unknown backend 'nope'"),
    ("cli-zero-workers", ["--workers", "0"], "--workers: must be at least 1"),
    ("cli-zero-max-failures", ["--max-failures", "0"], "--max-failures: must be at least 1"),
    ("cli-negative-timeout", ["--timeout", "-5"], "--timeout: must be positive seconds"),
    ("cli-unknown-metric", ["--metric", "precision"], "unknown metric 'precision'"),
    ("cli-bad-scale", ["--scale", "3"], "--scale: must be in (0, 1]"),
    ("cli-zero-subsample", ["--subsample", "0"], "--subsample: must be a positive number of rows, got 0"),
    ("cli-subsample-too-small", ["--subsample", "30"],
     "--subsample 30: too small for 10 classes and 5 CV folds (need at least 50); use --cv 3 (these rows allow it)"),
    ("cli-negative-fresh-process", ["--fresh-process", "-2"], "--fresh-process: must be a number of trials per process, got -2"),
    ("cli-fresh-process-on-ray", ["--backend", "ray", "--fresh-process"], "--fresh-process: not an option of backend ray"),
    ("cli-unknown-keras-backend", ["--keras-backend", "theano"], "--keras-backend: invalid choice: 'theano'"),
    ("cli-not-a-number", ["--timeout", "soon"], "--timeout: invalid float value: 'soon'"),
    ("cli-test-size-above-one", ["--test-size", "1.5"], "--test-size: must be a fraction strictly between 0 and 1, got 1.5"),
    ("cli-test-size-zero", ["--test-size", "0"], "--test-size: must be a fraction strictly between 0 and 1, got 0.0"),
    ("cli-test-size-negative", ["--test-size", "-0.2"], "--test-size: must be a fraction strictly between 0 and 1"),
    ("cli-negative-workers", ["--workers", "-1"], "--workers: must be at least 1, got -1"),
    ("cli-negative-subsample", ["--subsample", "-5"], "--subsample: must be a positive number of rows, got -5"),
    ("cli-gpu-not-on-this-machine", ["--gpus", "7"], "--gpus: no GPU 7 on this machine (it has: none)"),
    ("cli-gpu-repeated", ["--gpus", "0,0"], "--gpus: expected auto, none or distinct device ids"),
    ("cli-keras-backend-not-installed", ["--keras-backend", "torch"],
     "--keras-backend torch: needs the Python package 'torch', which is not installed (pip install torch)"),
    ("cli-ray-cpus-per-trial-zero", ["--backend", "ray", "--cpus-per-trial", "0"], "--cpus-per-trial: must be positive, got 0"),
    ("cli-kerastuner-unknown-algorithm", ["--backend", "kerastuner", "--algorithm", "grid"], "--algorithm: unknown algorithm 'grid'"),
    ("cli-workers-above-cores", ["--workers", usable_cores() + 1],
     f"--workers: {usable_cores() + 1} worker processes on the {usable_cores()} cores this process may use"),
    ("cli-ray-more-cpus-per-trial-than-here", ["--backend", "ray", "--cpus-per-trial", usable_cores() + 1],
     f"--cpus-per-trial: {usable_cores() + 1} CPUs per trial, but Ray started here has the {usable_cores()} this "
     "process may use"),
    ("cli-ray-more-gpus-per-trial-than-here", ["--backend", "ray", "--gpus-per-trial", "1000"],
     "--gpus-per-trial: 1000 GPUs per trial, but this machine has "),
    ("cli-kerastuner-two-workers", ["--backend", "kerastuner", "--workers", "2"], "--workers: the kerastuner backend runs one trial at a time"),
    ("cli-address-on-optuna", ["--address", "auto"], "--address: not an option of backend optuna"),
    # typed, a flag of another backend is refused also at its default value: it reads like a choice
    ("cli-algorithm-default-on-optuna", ["--algorithm", "random"], "--algorithm: not an option of backend optuna"),
    ("cli-cpus-default-on-kerastuner", ["--backend", "kerastuner", "--cpus-per-trial", "1"],
     "--cpus-per-trial: not an option of backend kerastuner"),
    ("cli-ray-address-malformed", ["--backend", "ray", "--address", "not-an-address"],
     "--address: expected HOST:PORT (a port 1-65535) or auto, got 'not-an-address'"),
    # Ray's own check logged an error and a traceback before the one line
    ("cli-ray-address-no-host", ["--backend", "ray", "--address", ":6379"],
     "--address: expected HOST:PORT (a port 1-65535) or auto, got ':6379'"),
    ("cli-ray-address-port-out-of-range", ["--backend", "ray", "--address", "127.0.0.1:99999"],  # was "refused"
     "--address: expected HOST:PORT (a port 1-65535) or auto, got '127.0.0.1:99999'"),
    ("cli-ray-client-address", ["--backend", "ray", "--address", "ray://127.0.0.1:10001"],  # no trial stored, for ever
     "--address: ray://127.0.0.1:10001 is a Ray Client address, which the ray backend cannot use"),
    ("cli-ray-address-nothing-answers", ["--backend", "ray", "--address", "127.0.0.1:1"],  # Ray retried for minutes
     "--address 127.0.0.1:1: no Ray cluster answers at 127.0.0.1:1 (Connection refused"),
    ("cli-ray-dashboard-address", ["--backend", "ray", "--address", "http://127.0.0.1:8265"],  # Ray's message was cut at "either:"
     "--address: http://127.0.0.1:8265 is the dashboard's (Jobs API) address; give the cluster's HOST:PORT"),
    ("data-missing-label", ["--data", _csv(_numeric(label=[0, 1, None, 1] * 10)), "--target", "label"],
     "target 'label' has no label in 10 row(s) (first: line 4); drop or fill them"),
    ("data-two-missing-labels", ["--data", _csv(_numeric(label=[0, 1] * 19 + [None, None])), "--target", "label"],
     "target 'label' has no label in 2 row(s)"),
    ("data-empty-string-label", ["--data", _csv(_numeric(label=["a", "b", "", "b"] * 10)), "--target", "label"],
     "target 'label' has no label in"),
    ("data-npz-nan-label", ["--data", _npz(X=np.ones((40, 3)), y=np.r_[np.arange(39) % 2, np.nan])], "target 'y' has no label in 1 row(s)"),
    ("data-npz-no-rows", ["--data", _npz(X=np.empty((0, 5)), y=np.empty(0))], "data.npz: no rows or no feature columns"),
    ("data-npz-no-features", ["--data", _npz(Z=np.ones((40, 3)), y=np.arange(40) % 2)], "no features array 'X'"),
    ("data-npz-five-dimensions", ["--data", _npz(X=np.ones((40, 2, 2, 2, 2)), y=np.arange(40) % 2)],
     "data.npz: 'X' must have one row per sample (2-D tables, 3-D sequences (n, T, F) or 4-D images (n, H, W, C)), "
     "got shape (40, 2, 2, 2, 2)"),
    ("data-npy-one-column", ["--data", lambda tmp: (np.save(tmp / "d.npy", np.ones((40, 1))), tmp / "d.npy")[1]],
     "expected a 2-D array with a label column"),
    ("data-npy-bad-target-index", ["--data", lambda tmp: (np.save(tmp / "d.npy", np.ones((40, 3))), tmp / "d.npy")[1],
                                   "--target", "9"], "target '9' is not a column index"),
    ("data-unknown-suffix", ["--data", lambda tmp: _write(tmp / "data.txt", "1,2\n")], "not a built-in dataset"),
    ("data-insurance-too-small", ["--data", "insurance:n=5"], "insurance: n=5 is too small"),
    ("data-insurance-unknown-option", ["--data", "insurance:rows=5"], "unknown option 'rows'"),
    ("data-fashion-mnist-not-found", ["--data", "fashion-mnist", "--data-dir", lambda tmp: tmp / "nowhere"], "IDX files not found"),
    ("cli-negative-seed", ["--seed", "-1"], "--seed: must be between 0 and 2**31 - 1, got -1"),
    ("cli-seed-too-large", ["--seed", str(2**31)], f"--seed: must be between 0 and 2**31 - 1, got {2**31}"),
    ("cli-test-size-below-one-row-per-class", ["--test-size", "0.001"],
     "digits: test_size=0.001 leaves 2 test rows of 1797, fewer than its 10 classes"),
    ("data-negative-option", ["--data", "insurance:seed=-1"], "option 'seed=-1' must look like name=INTEGER"),
    ("data-npz-object-array", ["--data", _npz(X=np.array([[1, "a"], [2, 3]] * 20, dtype=object), y=np.arange(40) % 2)],
     "data.npz: array 'X' cannot be read (an object array, e.g. series of unequal lengths, which needs pickle to "
     "read; store one numeric array: pad or resample series to one length)"),
    # aeon's (n, channels, steps): searched as series of 1 step, with one failed trial and MiniRocket skipped
    ("data-npz-channels-first", ["--data", _npz(X=np.ones((40, 1, 20)), y=np.arange(40) % 2)],
     "data.npz: 'X': shape (40, 1, 20) is series of 1 step with 20 channels; aeon and sktime store series as "
     "(n, channels, steps): pass X.transpose(0, 2, 1) (shape (40, 20, 1)), or X.reshape(40, -1) for a table"),
    ("data-npz-complex", ["--data", _npz(X=np.ones((40, 3)) * (1 + 2j), y=np.arange(40) % 2)],
     "data.npz: X are complex numbers (dtype complex128)"),
    ("data-target-of-a-builtin", ["--data", "digits", "--target", "label"], "digits brings its own labels"),
    # a message that starts with what the user typed keeps it (not rewritten to the flag --target)
    ("data-named-like-a-parameter", ["--data", "target"], "error: target: not a built-in dataset"),
    ("space-infinite-bound", ["--space", _space("code_size: {int: [2, .inf]}\nfamilies: {dense: {}}\n")],
     "code_size.int: expected a finite number of at most 2**53, got inf"),
    ("space-extends-a-list", ["--space", _space("families: {dense: {}, denoising: {extends: [dense]}}\n")],
     "families.denoising.extends: expected the name of one family, got ['dense']"),
    ("space-extends-a-stack-not-a-mapping", ["--space", _space(
        "families: {dense: {stack: 3}, denoising: {extends: dense, stack: {depth: 1}}}\n")],
     "families.denoising.extends: 'dense' brings a stack that is not a mapping: 3"),
    ("space-data-kinds-not-a-kind", ["--space", _space("data_kinds: 12\nfamilies: {dense: {}}\n")],
     "space.yaml: data_kinds: expected a list of tabular, image, sequence, got 12"),
    ("space-for-other-data", ["--space", _space("data_kinds: [sequence]\nfamilies: {dense: {}}\n")],
     "space.yaml: data_kinds: the space is for sequence data, not image"),
    ("space-start-outside", ["--space", _space("code_size: {int: [4, 8]}\nfamilies: {dense: {}}\nstart: [{code_size: 9}]\n")],
     "space.yaml: start[0].code_size: 9 is outside the space's int[4, 8]"),
    # refused after the study was made, which then refused every resume
    ("space-fixed-epochs-for-hyperband", ["--backend", "kerastuner", "--algorithm", "hyperband", "--space",
                                          _space("training: {epochs: 2}\nfamilies: {dense: {}}\n")],
     "space.yaml: training.epochs must be a range for --algorithm hyperband (it allocates epochs)"),
]


@pytest.mark.parametrize("args, expected", [c[1:] for c in RUN_CASES], ids=[c[0] for c in RUN_CASES])
def test_bad_run_input_exits_2_with_one_line(tmp_path, args, expected):
    args = [a(tmp_path) if callable(a) else a for a in args]
    study = tmp_path / "study"
    result = run_cli("run", *args, "--trials", "1", "--study-dir", study, "--no-progress", timeout=120)
    _assert_one_line_error(result, expected)
    assert not study.exists()  # a refused run creates nothing


def _assert_one_line_error(result, expected):
    assert result.returncode == 2, result.stderr[-1500:]
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], lines


# The tests on the module's study run on one xdist worker, so the study is made once.
BAD_INPUTS_STORED_STUDY = pytest.mark.xdist_group("bad-inputs-stored-study")


# Session scope: a module fixture is made again whenever xdist runs another module's test
# between two of this group's (seen in CI: twice per run).
@pytest.fixture(scope="session")
def stored_study(tmp_path_factory):
    study = tmp_path_factory.mktemp("stored") / "study"
    result = run_cli("run", "--space", TINY_SPACE, "--trials", "1", "--study-dir", study, "--no-progress")
    assert result.returncode == 0, result.stderr[-2000:]
    (study.parent / "mine.txt").write_text("a file of the user's")
    (study.parent / "mine").mkdir()
    (study.parent / "mine" / "notes.txt").write_text("the user's notes")
    (study.parent / "current").symlink_to(study.parent / "gone")  # a deployment's link, dangling
    no_db = study.parent / "no-db"  # a copy of the study that lost its database
    no_db.mkdir()
    for name in ("manifest.json", "export.json", "space.yaml"):
        (no_db / name).write_bytes((study / name).read_bytes())
    (study.parent / "binary").mkdir()
    (study.parent / "binary" / "manifest.json").write_bytes(bytes(range(256)))
    keyless = study.parent / "keyless"  # a hand-edited manifest that lost a key
    keyless.mkdir()
    manifest = json.loads((study / "manifest.json").read_text())
    (keyless / "manifest.json").write_text(json.dumps({k: v for k, v in manifest.items() if k != "data"}))
    # Hand-edited or damaged records of a whole study: each a one-line error, not a traceback.
    for name, record, text in [("bad-baselines", "baselines.json", "[1"), ("bad-export", "export.json", "{"),
                               ("bad-seed", "manifest.json", json.dumps({**manifest, "seed": "x"})),
                               ("one-fold", "manifest.json", json.dumps({**manifest, "folds": 1})),
                               ("big-test-size", "manifest.json", json.dumps({**manifest, "test_size": 7})),
                               ("no-trials", "manifest.json", json.dumps({**manifest, "trials": -5})),
                               ("storage-number", "manifest.json", json.dumps({**manifest, "storage": 7})),
                               ("bad-fresh-process", "manifest.json", json.dumps({**manifest, "fresh_process": -3}))]:
        shutil.copytree(study, study.parent / name)
        (study.parent / name / record).write_text(text)
    return study


def _fingerprint(directory):
    return {str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(directory.rglob("*")) if p.is_file()}


STUDY_CASES = [
    ("study-other-space", lambda s: ["run", "--study-dir", s, "--trials", "2", "--no-progress"],
     "study was made with space 'tiny', not 'default'; use another study directory"),
    ("study-other-scale", lambda s: ["run", "--space", TINY_SPACE, "--scale", "0.5", "--study-dir", s, "--no-progress"],
     "study was made with scale=1, not 0.5; use another study directory"),  # it named a digest
    ("study-other-cv", lambda s: ["run", "--space", TINY_SPACE, "--cv", "2", "--study-dir", s, "--no-progress"],
     "study was made with cv=3, not 2; use another study directory"),
    ("study-other-seed", lambda s: ["run", "--space", TINY_SPACE, "--seed", "3", "--study-dir", s, "--no-progress"], "seed=0, not 3"),
    ("study-other-data", lambda s: ["run", "--space", TINY_SPACE, "--data", "insurance", "--study-dir", s, "--no-progress"], "use another study directory"),
    ("study-export-missing-trial", lambda s: ["export", s, "--trial", "99"],
     "--trial 99: not a completed trial of "),
    ("study-export-missing-trial-says-why", lambda s: ["export", s, "--trial", "99"], "study (no such trial)"),
    ("study-replay-missing-trial", lambda s: ["replay", s, "--trial", "99"], "--trial 99: not a completed trial"),
    ("study-resume-not-a-study", lambda s: ["resume", s / "logs"], "not a study directory"),
    ("study-other-test-size", lambda s: ["run", "--space", TINY_SPACE, "--test-size", "0.3", "--study-dir", s, "--no-progress"],
     "study was made with test_size=0.25, not 0.3"),
    ("study-export-over-the-study", lambda s: ["export", s, "-o", s], "in the study directory, whose files its commands manage"),
    # A study's folders are its commands' (worker logs came to sit in an export made into logs/;
    # an export copied into another study's export/ became that study's winner)
    ("study-export-into-its-logs", lambda s: ["export", s, "-o", s / "logs"],
     f"logs: in the study directory, whose files its commands manage; leave -o out for "),
    ("study-export-trial-under-another-trials-name", lambda s: ["export", s, "--trial", "0", "-o", s / "export-trial-1"],
     "leave -o out for "),
    ("study-export-into-another-study", lambda s: ["export", s, "-o", s.parent / "keyless" / "export"],
     "export: inside another study's directory ("),
    ("study-export-where-nothing-can-be-written", lambda s: ["export", s, "-o", "/proc/encoder"],
     "/proc/encoder: cannot be written ("),  # was a traceback, after the test part had been scored
    ("study-export-empty-out", lambda s: ["export", s, "-o", ""], "-o/--out: an empty path (an unset shell variable?)"),
    ("study-report-empty-path", lambda s: ["report", ""], "study_dir: an empty path"),
    ("study-export-over-a-file", lambda s: ["export", s, "-o", s.parent / "mine.txt"], "is a file"),
    ("study-export-over-a-folder", lambda s: ["export", s, "-o", s.parent / "mine"], "exists and is not an export directory"),
    ("study-export-trial-over-the-best", lambda s: ["export", s, "--trial", "0", "-o", s / "export"], "holds the study's best trial"),
    ("study-export-not-a-study", lambda s: ["export", s / "export"], "an exported encoder, not a study directory"),
    ("study-report-not-a-study", lambda s: ["report", s.parent / "mine"], "not a study directory"),
    ("study-report-a-manifest-file", lambda s: ["report", s / "export" / "manifest.json"],  # said "no manifest.json"
     "export/manifest.json: a file, not a study directory; give the folder that holds the study"),
    ("study-report-html-into-a-folder", lambda s: ["report", s, "--html", "-o", s.parent / "mine"], "is a directory; give a file name"),
    ("study-report-html-over-the-manifest", lambda s: ["report", s, "--html", "-o", s / "manifest.json"],
     "manifest.json exists and is not a study report"),
    ("study-report-html-over-a-users-file", lambda s: ["report", s, "--html", "-o", s.parent / "mine.txt"],
     "mine.txt exists and is not a study report"),
    ("study-report-html-into-a-missing-folder", lambda s: ["report", s, "--html", "-o", s.parent / "nowhere" / "r.html"],
     "nowhere does not exist"),
    # the export then refused to load, and every later export and run to replace it
    ("study-report-html-into-its-export", lambda s: ["report", s, "--html", "-o", s / "export" / "report.html"],
     "report.html is inside the export "),
    ("study-report-out-alone-into-its-export", lambda s: ["report", s, "-o", s / "export" / "report.html"],
     "report.html is inside the export "),  # -o without --html was ignored in silence
    # a dangling link failed after the refit and a look at the test part; a live one was replaced by a folder
    ("study-export-onto-a-symlink", lambda s: ["export", s, "-o", s.parent / "current"],
     "current: a symbolic link (to "),
    ("study-report-top-zero", lambda s: ["report", s, "--top", "0"], "--top: must be at least 1, got 0"),
    ("study-report-database-missing", lambda s: ["report", s.parent / "no-db"],
     "no-db/study.db: missing, though export.json holds the study's winner"),
    ("study-report-binary-manifest", lambda s: ["report", s.parent / "binary"], "binary/manifest.json: corrupted manifest"),
    ("study-resume-database-missing", lambda s: ["resume", s.parent / "no-db", "--no-progress"],
     "no-db/study.db: missing, though export.json holds the study's winner"),
    ("study-run-database-missing", lambda s: ["run", "--space", TINY_SPACE, "--study-dir", s.parent / "no-db", "--no-progress"],
     "no-db/study.db: missing, though export.json holds the study's winner"),
    ("study-resume-manifest-missing-a-key", lambda s: ["resume", s.parent / "keyless", "--no-progress"],
     "keyless/manifest.json: corrupted manifest (no 'data')"),
    ("study-report-damaged-baselines", lambda s: ["report", s.parent / "bad-baselines"],
     "bad-baselines/baselines.json: corrupted (Expecting"),
    ("study-resume-damaged-baselines", lambda s: ["resume", s.parent / "bad-baselines", "--no-progress"],
     "bad-baselines/baselines.json: corrupted (Expecting"),
    ("study-report-damaged-export-record", lambda s: ["report", s.parent / "bad-export"],
     "bad-export/export.json: corrupted (Expecting"),
    ("study-resume-seed-not-a-number", lambda s: ["resume", s.parent / "bad-seed", "--no-progress"],
     "bad-seed/manifest.json: corrupted manifest (seed='x' is not int)"),
    # values the command line refuses, refused in a manifest too (folds 1 hung in an endless loop,
    # test_size 7 was scikit-learn's traceback, trials -5 was refused without naming the file)
    ("study-resume-one-fold", lambda s: ["resume", s.parent / "one-fold", "--no-progress"],
     "one-fold/manifest.json: corrupted manifest (folds: must be at least 2, got 1)"),
    ("study-export-big-test-size", lambda s: ["export", s.parent / "big-test-size"],
     "big-test-size/manifest.json: corrupted manifest (test_size: must be a fraction strictly between 0 and 1, got 7)"),
    ("study-report-no-trials", lambda s: ["report", s.parent / "no-trials"],
     "no-trials/manifest.json: corrupted manifest (trials: must be at least 1, got -5)"),
    # the backend's own options (storage 7 was an AttributeError's traceback; fresh_process -3 named no file)
    ("study-resume-storage-a-number", lambda s: ["resume", s.parent / "storage-number", "--no-progress"],
     "storage-number/manifest.json: corrupted manifest (storage: must be a URL or journal:PATH, got 7)"),
    ("study-report-bad-fresh-process", lambda s: ["report", s.parent / "bad-fresh-process"],
     "bad-fresh-process/manifest.json: corrupted manifest (fresh_process: must be a number of trials per process, "
     "got -3)"),
    ("study-replay-negative-tolerance", lambda s: ["replay", s, "--trial", "0", "--tolerance", "-1"],
     "--tolerance: must be a number of points, 0 or more, got -1.0"),
    ("study-join-missing-sqlite-file", lambda s: ["join", f"sqlite:///{s.parent / 'nope.db'}", "--study", "x"],
     "nope.db does not exist (no study to join)"),
    ("study-join-missing-journal", lambda s: ["join", f"journal:{s.parent / 'nope.journal'}", "--study", "x"],
     "nope.journal does not exist (no study to join)"),
    ("study-crash-hook-malformed", lambda s: ["resume", s, "--no-progress"], "SEARCH_CRASH_AT='epoch:x'", {"SEARCH_CRASH_AT": "epoch:x"}),
    ("study-resume-keras-backend-missing", lambda s: ["resume", s, "--no-progress"], "Keras backend torch: needs the Python package 'torch'",
     "torch"),
]


@pytest.mark.parametrize("make_args, expected, env", [(*c[1:3], c[3] if len(c) > 3 else None) for c in STUDY_CASES],
                         ids=[c[0] for c in STUDY_CASES])
@BAD_INPUTS_STORED_STUDY
def test_bad_input_against_a_stored_study_changes_nothing(stored_study, make_args, expected, env):
    if env == "torch":  # the study says it was made with torch, which this machine lacks
        manifest = json.loads((stored_study / "manifest.json").read_text())
        study = stored_study.parent / "torch-study"
        if not study.exists():
            import shutil

            shutil.copytree(stored_study, study)
            (study / "manifest.json").write_text(json.dumps({**manifest, "keras_backend": "torch"}))
        stored_study, env = study, None
    before = _fingerprint(stored_study.parent)  # the study and the user's files beside it
    _assert_one_line_error(run_cli(*make_args(stored_study), timeout=120, env=env), expected)
    assert _fingerprint(stored_study.parent) == before


PATH_CASES = [
    ("study-dir-is-a-file", lambda tmp: _write(tmp / "plain", "mine"), {}, "plain: is a file, not a study directory"),
    ("study-dir-under-a-file", lambda tmp: _write(tmp / "plain", "mine") / "study", {}, "study: cannot be created"),
    # a user's folder of other files would get manifest.json, study.db and export/ among them
    ("study-dir-of-other-files", lambda tmp: (tmp / "mine").mkdir() or _write(tmp / "mine" / "a.txt", "x").parent, {},
     "mine: exists and is not a study directory"),
    ("keras-backend-from-the-environment", lambda tmp: tmp / "study", {"KERAS_BACKEND": "torch"},
     "--keras-backend torch: needs the Python package 'torch'"),
    # was Keras' traceback, after a manifest had recorded it: every later command failed the same way
    ("keras-backend-unknown-in-the-environment", lambda tmp: tmp / "study", {"KERAS_BACKEND": "JAX"},
     "KERAS_BACKEND='JAX': not a Keras backend (known: tensorflow, jax, torch; in lower case: KERAS_BACKEND=jax)"),
    # was a traceback from the baselines (device probe) or every trial failed with a bare AssertionError
    ("jax-platform-that-cannot-start", lambda tmp: tmp / "study", {"KERAS_BACKEND": "jax", "JAX_PLATFORMS": "bogus"},
     "JAX_PLATFORMS='bogus': JAX cannot start it (RuntimeError: Unable to initialize backend 'bogus'"),
    ("crash-hook-unknown-point", lambda tmp: tmp / "study", {"SEARCH_CRASH_AT": "midnight"}, "SEARCH_CRASH_AT='midnight'"),
    ("checkpoint-rule-not-a-number", lambda tmp: tmp / "study", {"SEARCH_CHECKPOINT_MIN_SAVING": "soon"},
     "SEARCH_CHECKPOINT_MIN_SAVING='soon': must be a number of seconds, 0 or more"),
    ("heartbeat-not-whole-seconds", lambda tmp: tmp / "study", {"SEARCH_HEARTBEAT_SECONDS": "0.5"},
     "SEARCH_HEARTBEAT_SECONDS='0.5': must be a whole number of seconds, 1 or more"),
]


@pytest.mark.parametrize("make_dir, env, expected", [c[1:] for c in PATH_CASES], ids=[c[0] for c in PATH_CASES])
def test_a_study_dir_or_environment_that_cannot_work_is_one_line_and_creates_nothing(tmp_path, make_dir, env, expected):
    study = make_dir(tmp_path)
    before = _fingerprint(tmp_path)
    result = run_cli("run", "--space", TINY_SPACE, "--trials", "1", "--study-dir", study, "--no-progress", env=env)
    _assert_one_line_error(result, expected)
    assert _fingerprint(tmp_path) == before and not (tmp_path / "study").exists()


def _as_unprivileged(*args):
    """A command that cannot write where the mode bits say it cannot (root can, unless its
    capability to override file permissions is dropped)."""
    import os
    import shutil

    if os.geteuid() != 0:
        return list(args)
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: permissions cannot be made to bite")
    return ["setpriv", "--bounding-set=-dac_override,-dac_read_search,-fowner", *args]


@BAD_INPUTS_STORED_STUDY
def test_a_read_only_study_reports_and_refuses_the_rest_with_one_line(stored_study, tmp_path):
    """An archived or shared study: `report` (text and HTML elsewhere) works, `export`,
    `resume` and `run` say it is read-only, and nothing in it changes."""
    import os
    import shutil
    import subprocess
    import sys

    from tests.conftest import ROOT

    study = shutil.copytree(stored_study, tmp_path / "archived")
    for path in [study, *study.rglob("*")]:
        path.chmod(path.stat().st_mode & ~0o222)
    before = _fingerprint(study)
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}:{ROOT}"}

    def search(*args):
        command = _as_unprivileged(sys.executable, "-m", "search", *map(str, args))
        return subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)

    try:
        report = search("report", study)
        assert report.returncode == 0, report.stderr[-2000:]
        assert report.stdout.startswith("Leaderboard") and "Held-out test" in report.stdout
        html = search("report", study, "--html", "-o", tmp_path / "report.html")
        assert html.returncode == 0 and (tmp_path / "report.html").stat().st_size > 1000, html.stderr[-2000:]
        replayed = search("replay", study, "--trial", "0")  # re-scoring reads the trials only
        assert replayed.returncode == 0 and "matches" in replayed.stdout, replayed.stderr[-2000:]
        for args in (["report", study, "--html"], ["export", study], ["resume", study, "--no-progress"],
                     ["run", "--space", TINY_SPACE, "--study-dir", study, "--no-progress"]):
            _assert_one_line_error(search(*args), "read-only" if args[-1] != "--html" else "no write permission")
        # elsewhere too, and it says why (it said "to search or export use another directory")
        _assert_one_line_error(search("export", study, "-o", tmp_path / "mine"), "read-only study directory (no write "
                               "permission); report works there, export records its look at the test part in the study")
        assert _fingerprint(study) == before and not (tmp_path / "mine").exists()
    finally:
        for path in [study, *study.rglob("*")]:
            path.chmod(path.stat().st_mode | 0o200)


@BAD_INPUTS_STORED_STUDY
def test_an_export_over_a_read_only_export_is_refused_and_leaves_nothing_beside_it(stored_study, tmp_path):
    """A read-only export is someone keeping it: replacing it renamed it away, could not delete
    its files and left a hidden .out.old-PID copy beside the new one."""
    import shutil
    import subprocess
    import sys

    from tests.conftest import ROOT

    kept = shutil.copytree(stored_study / "export", tmp_path / "out")
    kept.chmod(0o555)
    before = _fingerprint(tmp_path)
    try:
        command = _as_unprivileged(sys.executable, "-m", "search", "export", str(stored_study), "-o", str(kept))
        result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=300)
        _assert_one_line_error(result, "read-only; nothing written")
    finally:
        kept.chmod(0o755)
    assert _fingerprint(tmp_path) == before and [p.name for p in tmp_path.iterdir()] == ["out"]
    # A study's own read-only export: more trials are refused before the search, not after
    # a refit that has looked at the test part.
    study = shutil.copytree(stored_study, tmp_path / "study")
    (study / "export").chmod(0o555)
    before = _fingerprint(study)
    try:
        command = _as_unprivileged(sys.executable, "-m", "search", "run", "--space", str(TINY_SPACE), "--trials", "2",
                                   "--study-dir", str(study), "--no-progress")
        result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=300)
        _assert_one_line_error(result, f"{study / 'export'}: is read-only; nothing written")
    finally:
        (study / "export").chmod(0o755)
    assert _fingerprint(study) == before and not any(p.name.startswith(".export") for p in study.iterdir())


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory):
    from sklearn.datasets import load_digits

    from encoderkit import AutoencoderTransformer
    from encoderkit.export import save_export

    X, _ = load_digits(return_X_y=True)
    transformer = AutoencoderTransformer(code_size=3, epochs=1, random_state=0).fit(X[:200])
    return save_export(tmp_path_factory.mktemp("export") / "export", transformer, {"trial": 0})


def _copy(export_dir, tmp_path):
    import shutil

    return shutil.copytree(export_dir, tmp_path / "copy")


def _corrupt_manifest(d):
    (d / "manifest.json").write_text("{not json")


def _future_format(d):
    manifest = json.loads((d / "manifest.json").read_text())
    (d / "manifest.json").write_text(json.dumps({**manifest, "format_version": 99}))


def _corrupt_model(d):
    (d / "encoder.joblib").write_bytes(b"garbage")


def _other_keras(d):
    manifest = json.loads((d / "manifest.json").read_text())
    (d / "manifest.json").write_text(json.dumps({**manifest, "packages": {"keras": "2.15.0"}}))


def _truncated_keras_with_its_hash(d):
    """Damaged in a way the hash cannot catch: the manifest was rewritten with the new hash."""
    import hashlib

    path = d / "encoder.keras"
    path.write_bytes(path.read_bytes()[:100])
    manifest = json.loads((d / "manifest.json").read_text())
    manifest["files"]["encoder.keras"] = hashlib.sha256(path.read_bytes()).hexdigest()
    (d / "manifest.json").write_text(json.dumps(manifest))


def _empty_preprocessing_with_its_hash(d):
    """It loaded, and failed at the first transform: NotFittedError from the scaler."""
    import hashlib

    path = d / "preprocessing.npz"
    np.savez(path)
    manifest = json.loads((d / "manifest.json").read_text())
    manifest["files"]["preprocessing.npz"] = hashlib.sha256(path.read_bytes()).hexdigest()
    (d / "manifest.json").write_text(json.dumps(manifest))


EXPORT_CASES = [
    ("export-scaler-without-its-arrays", _empty_preprocessing_with_its_hash,
     "preprocessing.npz: its MinMaxScaler cannot scale a row (NotFittedError: "),
    ("export-keras-file-not-a-zip", _truncated_keras_with_its_hash, "encoder.keras: damaged (not a .keras zip archive)"),
    ("export-corrupted-manifest", _corrupt_manifest, "manifest.json: corrupted manifest"),
    ("export-future-format", _future_format, "format_version 99 is not supported"),
    ("export-corrupted-model", _corrupt_model, "encoder.joblib: does not match the hash in the manifest"),
    ("export-incompatible-keras", _other_keras, "exported with keras 2.15.0"),
    ("export-missing", lambda d: __import__("shutil").rmtree(d), "copy: no such folder"),
]


@pytest.mark.parametrize("damage, expected", [c[1:] for c in EXPORT_CASES], ids=[c[0] for c in EXPORT_CASES])
def test_a_damaged_export_raises_export_error_with_one_line(export_dir, tmp_path, damage, expected):
    from encoderkit import ExportError, load_encoder

    copy = _copy(export_dir, tmp_path)
    damage(copy)
    with pytest.raises(ExportError) as raised:
        load_encoder(copy)
    assert expected in str(raised.value) and "\n" not in str(raised.value)


def test_load_encoder_on_the_folder_around_an_export_names_the_export_inside(export_dir, tmp_path, monkeypatch):
    """A study directory (result.study_dir) is an easy mistake for its export/: its manifest is
    the study's, which read as an unsupported format version."""
    from encoderkit import ExportError, load_encoder

    study = tmp_path / "study"
    study.mkdir()
    (study / "manifest.json").write_text('{"manifest_version": 1, "seed": 0}')
    __import__("shutil").copytree(export_dir, study / "export")
    for folder, expected in ((study, f"{study}: not an export; the export inside: {study / 'export'}"),
                             (tmp_path, f"{tmp_path}: not an export (no manifest.json)")):
        with pytest.raises(ExportError) as raised:
            load_encoder(folder)
        assert str(raised.value) == expected
    monkeypatch.setenv("HOME", str(study))
    assert load_encoder("~/export").n_features_in_ == 64  # as a shell would expand it


@BAD_INPUTS_STORED_STUDY
def test_an_export_or_study_this_user_cannot_read_is_one_line(export_dir, stored_study, tmp_path):
    """load_encoder raised a bare PermissionError (not an ExportError); report a traceback."""
    import subprocess
    import sys

    from tests.conftest import ROOT

    copy = _copy(export_dir, tmp_path)
    (copy / "encoder.keras").chmod(0)
    study = shutil.copytree(stored_study, tmp_path / "study")
    (study / "manifest.json").chmod(0)
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}:{ROOT}"}
    code = ("from encoderkit import ExportError, load_encoder\ntry:\n    load_encoder(%r)\n"
            "except ExportError as exc:\n    print('ExportError:', exc)" % str(copy))
    loaded = subprocess.run(_as_unprivileged(sys.executable, "-c", code), capture_output=True, text=True,
                            cwd=ROOT, env=env, timeout=300)
    assert loaded.stdout.strip() == f"ExportError: {copy / 'encoder.keras'}: cannot be read (Permission denied)", \
        loaded.stderr[-2000:]
    report = subprocess.run(_as_unprivileged(sys.executable, "-m", "search", "report", str(study)),
                            capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
    _assert_one_line_error(report, f"{study / 'manifest.json'}: cannot be read (Permission denied)")


def test_transform_with_the_wrong_number_of_features_is_a_clear_value_error(export_dir):
    from encoderkit import load_encoder

    with pytest.raises(ValueError, match="X has 10 features, but AutoencoderTransformer is expecting 64 features"):
        load_encoder(export_dir).transform(np.zeros((3, 10)))


def test_a_run_on_a_data_file_changed_in_place_is_refused_and_changes_nothing(tmp_path):
    """Same path, other rows: continuing would score new trials on another split (old search
    rows in the test part) and leave a study no later command accepts."""
    frame = _numeric(n=80)
    csv = tmp_path / "data.csv"
    frame.to_csv(csv, index=False)
    study = tmp_path / "study"
    args = ("run", "--space", TINY_SPACE, "--data", csv, "--target", "label", "--study-dir", study, "--no-progress")
    first = run_cli(*args, "--trials", "1")
    assert first.returncode == 0, first.stderr[-2000:]
    frame.sample(frac=1, random_state=0).iloc[:60].to_csv(csv, index=False)  # shuffled and cut
    before = _fingerprint(study)
    _assert_one_line_error(run_cli(*args, "--trials", "2", timeout=120),
                           f"{study}: its data {csv} changed since the study began (split hash ")
    assert _fingerprint(study) == before


def test_a_test_row_beyond_float32_once_scaled_is_one_line_at_the_export(tmp_path):
    """Within float32 in the file, but the search part's range of 'b' is so narrow that the
    test row scales past it: the export's look at the test part was a ValueError traceback."""
    from encoderkit.data import load_dataset
    from search.problem import make_problem

    frame = _numeric(n=80, b=np.linspace(0.0, 1e-5, 80))
    frame.to_csv(tmp_path / "data.csv", index=False)
    test_rows = make_problem(load_dataset(str(tmp_path / "data.csv"), target="label")).test_rows
    test_row = test_rows[-1]  # its line in the file, not its place in the test part, must be named
    assert test_row != len(test_rows) - 1
    frame.loc[test_row, "b"] = 1e36  # scaled by the search part's width 1e-5: 1e41
    frame.to_csv(tmp_path / "data.csv", index=False)
    result = run_cli("run", "--space", TINY_SPACE, "--data", tmp_path / "data.csv", "--target", "label",
                     "--trials", "1", "--study-dir", tmp_path / "study", "--no-progress")
    _assert_one_line_error(result, f"data.csv: 'b' has 1e+36 in line {test_row + 2}, a row of the test part, "
                                   "beyond float32's range once scaled by the search part's far narrower range of 'b'")


def test_a_study_whose_data_file_moved_continues_from_its_new_path_and_other_contents_are_refused(tmp_path):
    frame = _numeric(n=80)
    first_home = tmp_path / "data.csv"
    frame.to_csv(first_home, index=False)
    study = tmp_path / "study"
    first = run_cli("run", "--space", TINY_SPACE, "--data", first_home, "--target", "label", "--trials", "1",
                    "--study-dir", study, "--no-progress")
    assert first.returncode == 0, first.stderr[-2000:]
    moved = tmp_path / "archive" / "data.csv"
    moved.parent.mkdir()
    first_home.rename(moved)
    before = _fingerprint(study)
    _assert_one_line_error(run_cli("resume", study, "--no-progress"),
                           f"{first_home}: no such file (the study's data); if it moved, give its new path: "
                           f"python -m search resume {study} --data NEWPATH")
    other = tmp_path / "other.csv"
    frame.iloc[:60].to_csv(other, index=False)
    _assert_one_line_error(run_cli("resume", study, "--data", other, "--no-progress"), "changed since the study began")
    assert _fingerprint(study) == before
    resumed = run_cli("resume", study, "--data", moved, "--no-progress")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert json.loads((study / "manifest.json").read_text())["data"] == str(moved)  # later commands find it
    more = run_cli("run", "--space", TINY_SPACE, "--data", moved, "--target", "label", "--trials", "2",
                   "--study-dir", study, "--no-progress")  # `run` on the moved file continues the study too
    assert more.returncode == 0, more.stderr[-2000:]
    assert "2 trials" in more.stdout


def test_a_relative_study_dir_inside_a_ray_jobs_temporary_working_dir_is_refused(tmp_path, monkeypatch):
    """`ray job submit --working-dir .` runs the entrypoint in Ray's temporary copy of that
    folder: a relative --study-dir put the study there (exit 0), and Ray deletes it."""
    from search.errors import SettingsError
    from search.preflight import check_writable_study_dir

    job_copy = tmp_path / "session_1" / "runtime_resources" / "working_dir_files" / "_ray_pkg_0123"
    job_copy.mkdir(parents=True)
    monkeypatch.chdir(job_copy)
    with pytest.raises(SettingsError, match="study_dir: 'runs/j1' is relative, and this Ray job runs in Ray's "
                                            "temporary copy of its working directory"):
        check_writable_study_dir("runs/j1")
    assert check_writable_study_dir(tmp_path / "runs" / "j1") == tmp_path / "runs" / "j1"  # absolute: fine
    monkeypatch.chdir(tmp_path)
    assert check_writable_study_dir("runs/j1").name == "j1"  # relative elsewhere: fine


def test_auto_refuses_a_ray_client_address_from_ray_address(monkeypatch):
    """ray.init("auto") connects through Ray Client where RAY_ADDRESS is ray://HOST:PORT; under
    Ray Client no trial was ever stored and the search began new experiments for ever."""
    from search.errors import SettingsError
    from search.preflight import connect_ray

    monkeypatch.setenv("RAY_ADDRESS", "ray://127.0.0.1:1")
    with pytest.raises(SettingsError, match=r"^RAY_ADDRESS: ray://127.0.0.1:1 is a Ray Client address, which the "
                                            r"ray backend cannot use .*; run it on the cluster: ray job submit "):
        connect_ray("auto")


def test_auto_names_ray_address_where_it_dials_that(monkeypatch):
    """--address auto dials RAY_ADDRESS where it is set: its faults were blamed on 'auto'."""
    from search.errors import SearchError, SettingsError
    from search.preflight import connect_ray

    monkeypatch.setenv("RAY_ADDRESS", "garbage")
    with pytest.raises(SettingsError, match=r"^RAY_ADDRESS: expected HOST:PORT \(a port 1-65535\) or auto, "
                                            r"got 'garbage'$"):
        connect_ray("auto")
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:1")
    with pytest.raises(SearchError, match=r"^RAY_ADDRESS=127.0.0.1:1 \(which --address auto dials\): no Ray cluster "
                                          r"answers at 127.0.0.1:1 \(Connection refused"):
        connect_ray("auto")
    # empty is unset to Ray: `auto` looks for this machine's cluster (here: none, as Ray would say)
    monkeypatch.setenv("RAY_ADDRESS", "")
    from ray._private import services

    def no_cluster(address):
        raise ConnectionError("no cluster")

    monkeypatch.setattr(services, "canonicalize_bootstrap_address", no_cluster)
    with pytest.raises(SearchError, match=r"^address auto: no Ray cluster runs on this machine"):
        connect_ray("auto")


def test_ray_address_without_the_flag_is_noted_not_silently_ignored(monkeypatch):
    """Ray started here (no --address) ignores RAY_ADDRESS, which `ray job submit` sets in its
    entrypoint: a job without --address auto ran every trial on the head node, without a word."""
    import sys

    from search.errors import settings_as_flags
    from search.preflight import check_machine
    from search.settings import RayOptions

    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.5:6379")
    monkeypatch.delitem(sys.modules, "ray", raising=False)  # no Ray in this process, whatever ran before here
    assert check_machine("ray", RayOptions()) == [
        "RAY_ADDRESS=10.0.0.5:6379 is set, but without address Ray is started here, in this process; "
        "address='auto' uses that cluster"]  # as search.run takes it; the command line's flags there:
    with settings_as_flags():
        assert check_machine("ray", RayOptions()) == [
            "RAY_ADDRESS=10.0.0.5:6379 is set, but without --address Ray is started here, in this process; "
            "--address auto uses that cluster"]
    monkeypatch.delenv("RAY_ADDRESS")
    assert check_machine("ray", RayOptions()) == []


def test_a_trial_no_node_of_the_cluster_can_take_is_noted():
    """Ray waits for a node with a trial's resources without a word (its warning goes to its
    own logs); a cluster may grow, so the search says so instead of refusing."""
    from search.preflight import unplaceable
    from search.settings import RayOptions

    nodes = [{"CPU": 2.0, "memory": 1e9}, {"CPU": 1.0}]  # two CPU-only nodes
    asking = RayOptions(address="auto", cpus_per_trial=4, gpus_per_trial=0.5)
    assert unplaceable(nodes, asking) == [
        "no node of the Ray cluster at auto has the 4 CPUs a trial asks for (the most on one node: 2); trials wait "
        "until such a node joins",
        "no node of the Ray cluster at auto has the 0.5 GPUs a trial asks for (the most on one node: 0); trials wait "
        "until such a node joins"]
    assert unplaceable(nodes, RayOptions(address="auto", cpus_per_trial=2)) == []


def test_ray_started_here_that_runs_fewer_trials_at_once_than_workers_says_so():
    """`--backend ray --workers 3` on 2 cores ran 2 trials at once without a word."""
    from search.preflight import fewer_at_once
    from search.settings import RayOptions

    assert fewer_at_once(RayOptions(workers=3), cores=2, gpus=0) == [
        "workers: Ray started here runs 2 trial(s) at once, not 3: each asks for 1 CPU(s) and 0 GPU(s), and it "
        "has 2 CPU(s) and 0 GPU(s)"]
    assert fewer_at_once(RayOptions(workers=2, cpus_per_trial=1.5), cores=2, gpus=0)[0].startswith(
        "workers: Ray started here runs 1 trial(s) at once, not 2")
    assert fewer_at_once(RayOptions(workers=4, gpus_per_trial=0.5), cores=16, gpus=1)[0].startswith(
        "workers: Ray started here runs 2 trial(s) at once, not 4")
    assert fewer_at_once(RayOptions(workers=2), cores=2, gpus=0) == []
    assert fewer_at_once(RayOptions(workers=4, gpus_per_trial=0.25), cores=4, gpus=1) == []


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="no CPU affinity masks here (not Linux)")
def test_workers_are_counted_against_the_cores_this_process_may_use(tmp_path):
    """os.cpu_count() is the machine's: under a CPU affinity mask or a container's quota of
    one core, `--workers 2` passed and every trial ran at half speed."""
    import subprocess
    import sys

    from tests.conftest import ROOT

    code = ("import os, sys; os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}); "
            "from search.cli import main; sys.exit(main(sys.argv[1:]))")
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}:{ROOT}"}
    result = subprocess.run([sys.executable, "-c", code, "run", "--workers", "2", "--trials", "1", "--study-dir",
                             str(tmp_path / "study"), "--no-progress"], capture_output=True, text=True, cwd=ROOT,
                            env=env, timeout=120)
    _assert_one_line_error(result, "--workers: 2 worker processes on the 1 cores this process may use; at most 1")
    assert not (tmp_path / "study").exists()
