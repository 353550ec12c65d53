"""The backend conformance suite: what every search backend must do, checked through the
command line in fresh interpreters, as a user runs it. A new backend passes it from its own
tests (pytest shows the failing condition where `pytest.register_assert_rewrite` names this
module, as tests/conftest.py does):

    from search.testing.backend_conformance import check_backend, check_timeout_stops_early

    def test_my_backend(tmp_path):
        check_backend("mybackend", tmp_path)

    def test_my_backend_timeout(tmp_path):
        check_timeout_stops_early("mybackend", tmp_path)

A backend conforms when it runs the same tiny space on the same budget and leaves the same
study: trials in the study's Optuna storage with the shared attributes, parameters that replay
to the stored configuration, a leaderboard with baselines and the held-out line, an export
that loads without any search library, start points run first and once (where the backend
takes them), a re-run that continues the study, every trial its own seed, and a `resume` at
the count that does nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

TINY_SPACE = {
    "name": "conformance",
    "code_size": {"int": [2, 8]},
    "include_input": {"choice": [False, True]},  # a boolean choice (keras-tuner made ints of one)
    "training": {"epochs": {"int": [2, 3]}, "batch_size": 64,
                 "learning_rate": {"float": [1.0e-3, 1.0e-2], "log": True}},
    "families": {
        "dense": {"stack": {"depth": {"int": [0, 1]}, "units": {"int": [4, 16]},
                            "activation": {"choice": ["relu", "tanh"]}}},
        "denoising": {"extends": "dense", "noise": 0.1, "noise_type": {"choice": ["gaussian", "masking"]}},
    },
    "probe": {"model": "logistic_regression", "metric": "auto", "cv": 3},
}
START = {"family": "denoising", "code_size": 7, "denoising.depth": 0, "training.learning_rate": 0.0031}
FINISHED = ("COMPLETE", "PRUNED")
TRIAL_ATTRS = {"candidate", "seed", "worker_host", "worker_pid", "device"}
OUTCOME_ATTRS = {"score_std", "seconds", "epochs_run"}


def run_search(*args, timeout=600, env=None) -> subprocess.CompletedProcess:
    """`python -m search ARGS` in a fresh interpreter that imports this `search`."""
    return subprocess.run([sys.executable, "-m", "search", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=_environment(env))


def _environment(env=None) -> dict:
    import encoderkit
    import search

    roots = sorted({str(Path(m.__file__).resolve().parents[1]) for m in (search, encoderkit)})
    full_env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})}
    full_env["PYTHONPATH"] = os.pathsep.join([*roots, full_env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return full_env


def stored_trials(study_dir):
    """The trials a study shows (not those begun after the count was reached: nothing ran)."""
    import optuna

    from search.leaderboard import shown_trials

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.load_study(study_name="search", storage=f"sqlite:///{Path(study_dir) / 'study.db'}")
    return shown_trials(study)


def finished(trials):
    return [t for t in trials if t.state.name in FINISHED]


def write_space(directory, start=True) -> Path:
    """The suite's tiny space as a YAML file (with `START` as its start point)."""
    document = {**TINY_SPACE, **({"start": [START]} if start else {})}
    path = Path(directory) / "conformance-space.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def started_from_the_start_point(trials):
    return [t for t in trials if START.items() <= t.params.items()]


def check_backend(backend: str, directory, extra_args=(), env=None):
    """Runs the suite on `backend` (with `extra_args`, e.g. ["--workers", "2"]) in `directory`."""
    from search.backends import get_backend
    from search.refit import replayed_candidate
    from search.study import open_study

    takes_start_points = get_backend(backend).Options.takes_start_points
    directory = Path(directory)
    study, space_file = directory / "study", write_space(directory)
    run = ("run", "--backend", backend, *extra_args, "--space", space_file, "--study-dir", study, "--no-progress")
    first = run_search(*run, "--trials", 3, env=env)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "Traceback" not in first.stderr, first.stderr[-3000:]  # a failed trial is stored with its reason
    trials = stored_trials(study)
    # The space's start point is the first trial, or the backend says it skips it.
    if takes_start_points:
        assert len(started_from_the_start_point(trials)) == 1
    else:
        assert "does not take the space's start points" in first.stdout
        assert not started_from_the_start_point(trials)

    # The results schema: Optuna storage with the same attributes whatever ran the trials.
    assert len(finished(trials)) >= 3
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    assert complete, "at least one trial must complete"
    for trial in trials:
        assert TRIAL_ATTRS <= set(trial.user_attrs), (trial.number, sorted(trial.user_attrs))
        assert trial.user_attrs["candidate"]["family"] in TINY_SPACE["families"]
        assert trial.params and trial.distributions.keys() == trial.params.keys()
    for trial in complete:
        assert 0.0 <= trial.value <= 1.0
        assert OUTCOME_ATTRS <= set(trial.user_attrs), (trial.number, sorted(trial.user_attrs))
    # Stored parameters replay to the stored configuration (export and replay rely on it).
    space = open_study(study).space()
    for trial in complete:
        assert replayed_candidate(space, trial, study) == trial.user_attrs["candidate"], trial.number

    # Leaderboard with baselines and the held-out test line; an export that loads alone.
    assert "baseline raw" in first.stdout and "Held-out test" in first.stdout
    export = json.loads((study / "export.json").read_text())
    assert export["trial"] in {t.number for t in complete}
    assert export["cv_score"] == max(t.value for t in complete)
    _check_export_loads_alone(study / "export")

    # More trials on the same study continue it; `resume` at the count is a no-op.
    more = run_search(*run, "--trials", 4, env=env)
    assert more.returncode == 0, more.stderr[-3000:]
    after = stored_trials(study)
    assert len(started_from_the_start_point(after)) == int(takes_start_points), "start points run once"
    assert len(finished(after)) >= 4
    assert {t.number: t.params for t in trials}.items() <= {t.number: t.params for t in after}.items()
    seeds = [t.user_attrs["seed"] for t in after]
    assert len(seeds) == len(set(seeds)), "every trial has its own seed"
    again = run_search("resume", study, "--no-progress", env=env)
    assert again.returncode == 0, again.stderr[-3000:]
    assert len(stored_trials(study)) == len(after)


def check_timeout_stops_early(backend: str, directory, env=None):
    """`--timeout 1` on a count the backend cannot reach in time: it stops starting trials,
    after at least one. The second is shorter than any backend's start-up (Ray's takes
    seconds), which must not count: a busy machine's slow Ray start ended a search with an
    8 s timeout before its first trial."""
    study = Path(directory) / "study"
    result = run_search("run", "--backend", backend, "--space", write_space(directory, start=False),
                        "--trials", 200, "--timeout", 1, "--study-dir", study, "--no-progress", env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert 1 <= len(stored_trials(study)) < 20
    # and says so: the leaderboard alone showed fewer trials than asked for, and no reason
    done = len(finished(stored_trials(study)))
    assert f"note: the timeout (1 s) ended the search at {done} of 200 finished trials; resume continues it" in result.stdout


def _check_export_loads_alone(export_dir):
    code = (
        "import sys; from encoderkit import load_encoder; from sklearn.datasets import load_digits;"
        f"enc = load_encoder({str(export_dir)!r}); print(enc.transform(load_digits().data[:5]).shape);"
        "assert not {'optuna', 'ray', 'keras_tuner'} & set(sys.modules), 'the export imported a search library'"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            env=_environment())
    assert loaded.returncode == 0, loaded.stderr[-2000:]
    assert loaded.stdout.startswith("(5, ")
