"""JAX's persistent compilation cache and the trial's compile seconds: a trial under Keras'
JAX backend (with the device probe for its checkpoints and CV, as on a GPU) compiles in the
first process and reads its programs back in the next."""

import importlib.util
import json
import os

import pytest

from search import compile_cache
from search.objective import cost_breakdown
from tests.encoderkit.test_keras_backends import under

needs_jax = pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="JAX is not installed")

TRIAL = """
import json, jax
from sklearn.datasets import load_digits
from encoderkit.data import Dataset
from search.objective import evaluate
from search.problem import make_problem
from tests.search.test_objective import CANDIDATE

from search.compile_cache import programs_by_name
hits = []
jax.monitoring.register_event_listener(
    lambda event, **kw: hits.append(event) if event == "/jax/compilation_cache/cache_hits" else None)
compiled = programs_by_name()
X, y = load_digits(return_X_y=True)
problem = make_problem(Dataset("d", X[:400], y[:400], "image", (8, 8, 1)), folds=3, seed=0, probe="device_softmax")
reports = []
outcome = evaluate(problem, CANDIDATE, seed=0, report=lambda step, value: reports.append(value))
print(json.dumps({"outcome": outcome, "hits": len(hits), "reports": reports, "compiled": compiled}))
"""


def test_compile_seconds_move_out_of_their_stages():
    fit = {"prepare": 0.1, "build": 0.2, "train": 5.0}
    plain = cost_breakdown(fit, checkpoints=1.0, encode=0.5, probe=2.0)
    assert "compile" not in plain and plain["fit"] == 4.0
    split = cost_breakdown(fit, checkpoints=1.0, encode=0.5, probe=2.0,
                           compile_parts={"fit": 3.0, "checkpoints": 0.5, "encode": 0.25, "probe": 1.5})
    assert split == {"prepare": 0.1, "build": 0.2, "fit": 1.0, "checkpoints": 0.5, "encode": 0.25, "probe": 0.5,
                     "compile": 5.25}
    assert sum(split.values()) == pytest.approx(sum(plain.values()))


def test_the_cost_line_says_which_stages_the_compile_seconds_fell_in():
    from search.leaderboard import Row, cost_summary

    def row(state, fit, probe):
        return Row("t", "dense", "", 0.9, 0.0, state, stages={"fit": 1.0, "probe": 0.5, "compile": fit + probe},
                   compile_by_stage={"fit": fit, "checkpoints": 0.0, "probe": probe})

    line = cost_summary([row("complete", 6.0, 2.0), row("complete", 4.0, 4.0), row("pruned", 50.0, 50.0)])
    assert line.endswith("fit 1.00, probe 0.50, compile 8.00 (probe and checkpoints 5% of the trial, "
                         "compiling 84%; compiled in fit 5.00, probe 3.00)"), line
    assert "compiled in" not in cost_summary([Row("t", "dense", "", 0.9, 0.0, "complete", stages={"fit": 1.0})])


def test_the_clock_stays_off_under_tensorflow():
    import keras

    assert keras.backend.backend() == "tensorflow"
    assert compile_cache.enable() is False
    assert compile_cache.seconds() == 0.0


def test_cache_directory_setting(monkeypatch, tmp_path):
    for off in ("off", "OFF", " Off "):  # "OFF" made a cache folder named OFF
        monkeypatch.setenv(compile_cache.CACHE_ENV, off)
        assert compile_cache.cache_dir() is None
    monkeypatch.setenv(compile_cache.CACHE_ENV, str(tmp_path))
    assert compile_cache.cache_dir() == tmp_path
    monkeypatch.delenv(compile_cache.CACHE_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert compile_cache.cache_dir() == tmp_path / "encoderkit" / "jax"


@needs_jax
@pytest.mark.usefixtures("always_checkpoint")  # the checkpoint programs are among those cached
def test_a_jax_trial_reports_compile_seconds_and_the_next_process_reads_the_cache(tmp_path):
    env = {compile_cache.CACHE_ENV: str(tmp_path / "cache")}
    runs = []
    for _ in range(2):
        done = under("jax", "-c", TRIAL, timeout=600, env=env)
        assert done.returncode == 0, done.stderr[-3000:]
        runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    first, second = runs
    for run in runs:
        outcome = run["outcome"]
        assert outcome["probe"] == "device_softmax"
        assert 0.5 < outcome["score"] <= 1.0
        assert len(run["reports"]) == 2 and all(0.3 < value <= 1.0 for value in run["reports"])  # checkpoints
        assert set(outcome["seconds"]) >= {"fit", "checkpoints", "probe", "compile"}
    assert first["outcome"]["seconds"]["compile"] > 0.5  # the training step and the probe programs
    by_stage = first["outcome"]["compile_by_stage"]  # the model's programs and the probe's, apart
    assert by_stage["fit"] > 0 and by_stage["probe"] > 0 and by_stage["checkpoints"] > 0
    assert sum(by_stage.values()) == pytest.approx(first["outcome"]["seconds"]["compile"], abs=0.01)
    # One training and one validation program per model, though 270 rows leave a partial batch
    # of 64 (each shape compiled its own), and no random programs for the initial weights.
    assert first["compiled"]["jit(train_step)"][0] == 1, first["compiled"]
    assert first["compiled"]["jit(test_step)"][0] == 1, first["compiled"]
    assert not any("uniform" in name or "normal" in name for name in first["compiled"]), first["compiled"]
    assert first["hits"] == 0 and second["hits"] >= 2  # the probe's CV and checkpoint programs at least
    assert any((tmp_path / "cache").iterdir())


def test_trim_removes_the_oldest_entries_beyond_the_limit(tmp_path):
    for age, name in enumerate(["newest", "newer", "older", "oldest"]):
        entry = tmp_path / f"jit_{name}-cache"
        entry.write_bytes(b"x" * 100)
        os.utime(entry, (1e9 - age * 60, 1e9 - age * 60))
    (tmp_path / "jit_oldest-atime").write_bytes(b"t")  # JAX's own limit's file goes with its entry
    (tmp_path / "notes.txt").write_bytes(b"y" * 1000)  # not an entry: left alone
    compile_cache.trim(tmp_path, max_bytes=250)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["jit_newer-cache", "jit_newest-cache", "notes.txt"]
    compile_cache.trim(tmp_path, max_bytes=250)  # within the limit: nothing more goes
    assert len(list(tmp_path.iterdir())) == 3


ORPHAN = """
import os, pathlib, keras, jax, jax.numpy as jnp
from search import compile_cache
directory = pathlib.Path(os.environ["SEARCH_JAX_CACHE"])
directory.mkdir(parents=True)
# what a process killed in the middle of a write leaves: an entry without its access-time file
(directory / "jit_killed-0123456789-cache").write_bytes(b"x")
assert compile_cache.enable()
jax.jit(lambda x: x * 3 + 1)(jnp.ones(7)).block_until_ready()
print(sorted(path.name for path in directory.iterdir()))
"""


@needs_jax
def test_an_entry_left_by_a_killed_process_does_not_stop_the_cache_from_growing(tmp_path):
    done = under("jax", "-c", ORPHAN, timeout=300, env={compile_cache.CACHE_ENV: str(tmp_path / "cache")})
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Error writing persistent compilation cache" not in done.stderr
    names = eval(done.stdout.strip().splitlines()[-1])
    assert any(name.startswith("jit__lambda") and name.endswith("-cache") for name in names), names
