import os
import sys
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
# Under JAX the engine keeps compiled programs in the user's cache; tests leave it alone (the
# cache's own test gives it a temporary directory).
os.environ.setdefault("SEARCH_JAX_CACHE", "off")

ROOT = Path(__file__).resolve().parents[1]
TINY_SPACE = ROOT / "tests" / "data" / "tiny.yaml"


@pytest.fixture
def small_digits():
    """300 digits rows, enough for 3-fold stratified CV on 10 classes."""
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    return X[:300], y[:300]


def run_cli(*args, cwd=None, timeout=600, env=None):
    """Runs `python -m search ARGS` in a fresh interpreter, as a user would."""
    import subprocess

    full_env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})}
    full_env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), str(ROOT), full_env.get("PYTHONPATH", "")])
    return subprocess.run(
        [sys.executable, "-m", "search", *map(str, args)],
        capture_output=True, text=True, cwd=cwd or ROOT, timeout=timeout, env=full_env,
    )


@pytest.fixture
def always_checkpoint(monkeypatch):
    """Intermediate scores at every checkpoint epoch, also in the processes a test starts.
    By default (what users get) a trial with under 2 s of training left takes none, and
    tiny test trials train in well under a second; the tests of checkpoints and pruning
    ask for them with this fixture, and every other test runs the default rule."""
    from search.objective import MIN_SAVING_ENV

    monkeypatch.setenv(MIN_SAVING_ENV, "0")


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def reload_check(fitted, X, tmp_path, rtol=1e-5, atol=1e-6) -> str:
    """Dumps a fitted transformer with X and its codes; returns Python code that, in another
    process, joblib-loads it and checks it gives the same codes."""
    import joblib

    joblib.dump(fitted, tmp_path / "t.joblib")
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "Z.npy", fitted.transform(X))
    return (
        f"import joblib, numpy as np; t = joblib.load({str(tmp_path / 't.joblib')!r});"
        f"np.testing.assert_allclose(t.transform(np.load({str(tmp_path / 'X.npy')!r})),"
        f" np.load({str(tmp_path / 'Z.npy')!r}), rtol={rtol}, atol={atol})"
    )
