"""The reference probe on the GPU: the same scikit-learn estimator and solver
(MinMaxScaler + LogisticRegression, lbfgs), run on torch tensors through scikit-learn's Array
API dispatch (scikit-learn 1.9 supports LogisticRegression there; lbfgs still copies its
small parameter vector to the host each iteration, scikit-learn#32611).

The reference scores every held-out test part and the export's refit; on 60k x 3136 codes
it took 55 s of host CPU on an H100 machine (DESIGN.md). On the GPU it computes the same
objective in float64, so held-out numbers stay the reference's.

Used where torch sees a CUDA device, and only there: CPU machines keep the numpy path.
`ENCODERKIT_REFERENCE_DEVICE` overrides: `host` (numpy, never torch), `cpu` or `cuda` (torch
on that device; tests use `cpu`). SciPy reads `SCIPY_ARRAY_API=1` once, when it is imported:
`prepare_scipy` (called as encoderkit is imported) sets it first where torch and a GPU are
present, or where a torch device is asked for."""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys

import numpy as np

DEVICE_ENV = "ENCODERKIT_REFERENCE_DEVICE"
_failed: list[str] = []  # why the device path failed in this process (then the host serves)


def prepare_scipy():
    """Turns SciPy's array API support on before SciPy is imported, where it will be used."""
    wanted = os.environ.get(DEVICE_ENV, "auto")
    if "scipy" in sys.modules or "SCIPY_ARRAY_API" in os.environ or wanted == "host":
        return
    if importlib.util.find_spec("torch") is None or (wanted == "auto" and not _gpu_visible()):
        return
    os.environ["SCIPY_ARRAY_API"] = "1"


def _gpu_visible() -> bool:
    """An NVIDIA GPU is visible to this process, judged without importing a framework."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() in ("", "-1"):
        return False
    return os.path.isdir("/proc/driver/nvidia/gpus") or shutil.which("nvidia-smi") is not None


def reference_device():
    """The torch device the reference probe runs on, or None for numpy on the host."""
    wanted = os.environ.get(DEVICE_ENV, "auto")
    if _failed or wanted == "host" or importlib.util.find_spec("torch") is None or not _scipy_ready():
        return None
    import torch

    if wanted == "auto":
        return torch.device("cuda") if torch.cuda.is_available() else None
    return torch.device(wanted)


def _scipy_ready() -> bool:
    if os.environ.get("SCIPY_ARRAY_API") != "1":
        return False
    try:  # set after SciPy was imported, the variable is not in force
        from scipy._lib._array_api import SCIPY_ARRAY_API
    except ImportError:
        return True
    return bool(SCIPY_ARRAY_API)


def fit_predict_proba(device, model, X_train, y_train, X_test):
    """Fits `model` (a scikit-learn pipeline that supports the Array API) on torch tensors on
    `device` and returns (classes, class probabilities of X_test) as numpy arrays."""
    import sklearn
    import torch

    classes, target = np.unique(np.asarray(y_train), return_inverse=True)  # labels as class positions
    with sklearn.config_context(array_api_dispatch=True):
        model.fit(torch.asarray(np.asarray(X_train, np.float64), device=device), torch.asarray(target, device=device))
        probabilities = model.predict_proba(torch.asarray(np.asarray(X_test, np.float64), device=device))
    return classes, probabilities.cpu().numpy()


def give_up(error: BaseException):
    """After the device path failed: warns once with the reason; the host serves from then on."""
    import warnings

    if not _failed:
        reason = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
        warnings.warn(f"the reference probe failed on the GPU ({reason}); it runs on the host CPU in this process",
                      RuntimeWarning, stacklevel=3)
    _failed.append(repr(error))
