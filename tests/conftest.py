import os
import sys
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
# Under JAX the engine keeps compiled programs in a persistent cache, on by default. The tests
# keep it on, as users get it, but in a directory of this run (shared by its test workers and
# the searches they start), not in the user's ~/.cache.
if "SEARCH_JAX_CACHE" not in os.environ:
    import atexit
    import shutil
    import tempfile

    os.environ["SEARCH_JAX_CACHE"] = tempfile.mkdtemp(prefix="encoderkit-test-jax-cache-")
    atexit.register(shutil.rmtree, os.environ["SEARCH_JAX_CACHE"], ignore_errors=True)

# The shipped backend suite's asserts show their values under pytest, as tests' own do.
pytest.register_assert_rewrite("search.testing")

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


# Worker 0 (the command's own process) holds its first trial, running, until another worker
# has begun one. A barrier rather than a sleep: the other worker's process may take seconds to
# start on a loaded machine, and without it worker 0 could finish the count alone.
_WORKER_BARRIER = """
import contextlib, json, os, sqlite3, sys, time
from search.backends import optuna_backend

_runner = optuna_backend.trial_runner


def _another_worker_began():
    with contextlib.closing(sqlite3.connect(DB, timeout=30)) as db:
        rows = db.execute("select value_json from trial_user_attributes where key = 'worker_pid'")
        return bool({json.loads(value) for (value,) in rows} - {os.getpid()})


@contextlib.contextmanager
def _runner_waiting_for_another_worker(problem, fresh_process):
    with _runner(problem, fresh_process) as run_trial:
        waited = []

        def run(candidate, seed, report):
            deadline = time.time() + 300
            while not waited and not _another_worker_began():
                assert time.time() < deadline, "no other worker began a trial in 300 s"
                time.sleep(0.2)
            waited.append(True)
            return run_trial(candidate, seed, report)

        yield run


optuna_backend.trial_runner = _runner_waiting_for_another_worker
from search.cli import main
sys.exit(main(ARGS))
"""


def run_cli_with_worker_barrier(study_dir, *args, env=None, timeout=600):
    """`run_cli("run", *args, "--study-dir", study_dir)` for an Optuna study of several
    workers, where worker 0 waits in its first trial until another worker has begun one:
    trials of two workers overlap by construction."""
    import subprocess

    args = ["run", *map(str, args), "--study-dir", str(study_dir)]
    code = f"DB = {str(Path(study_dir) / 'study.db')!r}\nARGS = {args!r}\n{_WORKER_BARRIER}"
    full_env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})}
    full_env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), str(ROOT), full_env.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                          timeout=timeout, env=full_env)


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
