"""The reference probe through scikit-learn's Array API on torch tensors (a GPU's path),
checked here on torch's CPU device against the numpy path on the same codes."""

import importlib.util
import json
import os
import subprocess
import sys

import pytest

from encoderkit.array_api import DEVICE_ENV, reference_device
from tests.conftest import ROOT

needs_torch = pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="torch is not installed")

# encoderkit first: it turns SciPy's array API support on before scikit-learn imports SciPy.
SCRIPT = """
import json, os
import encoderkit
import numpy as np
from sklearn.datasets import load_digits
from encoderkit.array_api import reference_device
from encoderkit.probe import cv_score, test_score

X, y = load_digits(return_X_y=True)
X = X + np.random.default_rng(0).normal(scale=3.0, size=X.shape)  # not an easy 0.97
binary = np.isin(y, [3, 8])
out = {"scipy_array_api": os.environ.get("SCIPY_ARRAY_API")}
for device in ("host", "cpu"):
    os.environ["ENCODERKIT_REFERENCE_DEVICE"] = device
    out[device] = {
        "device": str(reference_device()),
        "cv": cv_score(X, y, "accuracy", folds=3, seed=0)[0],
        "cv_fast": cv_score(X[:600], y[:600], "f1_macro", folds=3, seed=0, probe="fast_logistic")[0],
        "auc": cv_score(X[binary], y[binary], "roc_auc", folds=3, seed=0)[0],
        "test": test_score(X[:1200], y[:1200], X[1200:], y[1200:], "accuracy", n_boot=100),
    }
print(json.dumps(out))
"""


def run(code, **env):
    full = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)]), **env}
    full.pop("SCIPY_ARRAY_API", None)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=full, timeout=300)


def test_without_a_gpu_the_reference_stays_on_numpy(monkeypatch):
    monkeypatch.delenv(DEVICE_ENV, raising=False)
    assert reference_device() is None  # CI machines have no GPU (and maybe no torch)
    monkeypatch.setenv(DEVICE_ENV, "host")
    assert reference_device() is None
    done = run("import os, encoderkit; print(os.environ.get('SCIPY_ARRAY_API'))", CUDA_VISIBLE_DEVICES="")
    assert done.returncode == 0 and done.stdout.strip() == "None", done.stderr[-2000:]


@needs_torch
def test_torch_tensors_give_the_reference_numbers():
    done = run(SCRIPT, **{DEVICE_ENV: "cpu", "OMP_NUM_THREADS": "1"})  # torch's threads: slower on 2 cores
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    host, torch = out["host"], out["cpu"]
    assert out["scipy_array_api"] == "1"
    assert host["device"] == "None" and torch["device"] == "cpu"
    assert 0.6 < host["cv"] < 0.99 and 0.6 < host["test"][0] < 0.99
    for key in ("cv", "cv_fast", "auc"):
        assert abs(torch[key] - host[key]) <= 0.002, (key, torch[key], host[key])  # within 0.2 point
    assert abs(torch["test"][0] - host["test"][0]) <= 0.002
    assert torch["test"][1] <= torch["test"][0] <= torch["test"][2]


def test_a_failing_device_stack_hands_the_reference_to_the_host_with_a_warning(monkeypatch):
    """A torch or CUDA failure on the GPU must not cost a finished search its held-out score:
    the host fits the same estimator, a warning names the failure, and later calls skip the
    device."""
    import numpy as np

    from encoderkit import array_api, probe

    calls = []

    def broken(*args):
        calls.append(1)
        raise RuntimeError("CUDA error: no kernel image is available\nsecond line")

    monkeypatch.setattr(array_api, "_failed", [])
    monkeypatch.setattr(array_api, "_scipy_ready", lambda: True)
    monkeypatch.setattr(array_api, "fit_predict_proba", broken)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object())  # "torch is installed"
    monkeypatch.setitem(sys.modules, "torch", type(sys)("torch"))
    monkeypatch.setenv(DEVICE_ENV, "cpu")
    sys.modules["torch"].device = lambda name: f"torch:{name}"
    assert reference_device() == "torch:cpu"
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(300, 5)), rng.integers(0, 3, 300)
    X[:, 0] += 2 * y
    with pytest.warns(RuntimeWarning, match=r"failed on the GPU \(RuntimeError: CUDA error: no kernel image is available\)"):
        score = probe.test_score(X[:200], y[:200], X[200:], y[200:], "accuracy", n_boot=10)
    monkeypatch.setenv(DEVICE_ENV, "host")
    assert score == probe.test_score(X[:200], y[:200], X[200:], y[200:], "accuracy", n_boot=10)
    monkeypatch.setenv(DEVICE_ENV, "cpu")
    assert reference_device() is None and len(calls) == 1  # the device is not tried again
    assert probe.cv_score(X, y, "accuracy", folds=3)[0] > 0.5 and len(calls) == 1
