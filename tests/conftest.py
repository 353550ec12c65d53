import os
import sys
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

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
def rng():
    return np.random.default_rng(0)
