"""The downstream probe: a simple classifier trained on frozen codes, and the metrics.

The probe is the same for every candidate and baseline, so scores are comparable. Search
scores come from stratified k-fold CV on the search part; the test part is scored once."""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    f1_score,
    roc_auc_score,
)
from sklearn.model_selection import StratifiedKFold, cross_validate
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MinMaxScaler
from threadpoolctl import threadpool_limits

METRICS = ("auto", "accuracy", "roc_auc", "balanced_accuracy", "f1_macro")
# The reference probe scores every held-out test part. The search's CV may use a cheaper one:
# `auto` = on an accelerator, the reference's model fitted for all folds at once by one
# compiled JAX program (`device_softmax`, encoderkit/device_probe.py) under Keras' JAX backend,
# or a softmax layer trained with Keras (`keras_softmax`) under the others; without one,
# `fast_logistic` (FAST_LOGISTIC). `device_softmax` also runs on JAX's CPU backend where asked
# for by name.
#
# FAST_LOGISTIC: the reference's model with 100 lbfgs iterations instead of 1000, on the codes
# in float32 (scikit-learn 1.9's lbfgs works in the codes' float32, so each product costs half).
# Measured on 2 cores, 5 folds of 10k Fashion-MNIST conv codes: 64 wide, 2.1 s -> 0.9 s and
# 0.29 point below the reference; 1296 wide (code 512 + pixels), 52 s -> 6.3 s and 0.22 point
# below. In float64 the same 100 iterations took 1.2 s and 12.1 s (benchmarks/results/probe.md).
REFERENCE = "logistic_regression"
PROBES = ("auto", REFERENCE, "fast_logistic", "keras_softmax", "device_softmax")


def resolve_metric(metric: str, y) -> str:
    """`auto` means AUROC for a binary target and accuracy otherwise."""
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r} (known: {', '.join(METRICS)})")
    if metric != "auto":
        return metric
    return "roc_auc" if len(np.unique(y)) == 2 else "accuracy"


def resolve_probe(model: str) -> str:
    """The concrete probe for `model` in this process (`auto` depends on the device)."""
    if model not in PROBES:
        raise ValueError(f"unknown probe model {model!r} (known: {', '.join(PROBES)})")
    if model != "auto":
        return model
    if not has_accelerator():
        return "fast_logistic"
    import keras

    return "device_softmax" if keras.backend.backend() == "jax" else "keras_softmax"


def has_accelerator() -> bool:
    """Whether Keras' backend in this process has a GPU (or other accelerator) to train on."""
    import keras

    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return jax.devices()[0].platform != "cpu"
    if backend == "torch":
        import torch

        return torch.cuda.is_available()
    if backend == "tensorflow":
        import tensorflow as tf

        return bool(tf.config.list_physical_devices("GPU"))
    return False


def make_probe(model: str = REFERENCE):
    model = resolve_probe(model)
    if model == "device_softmax":
        from encoderkit.device_probe import DeviceSoftmaxProbe

        return DeviceSoftmaxProbe()  # scales the codes itself, as MinMaxScaler would
    if model == "keras_softmax":
        from encoderkit.softmax_probe import SoftmaxProbe

        return make_pipeline(MinMaxScaler(), SoftmaxProbe())
    iterations = 100 if model == "fast_logistic" else 1000
    return make_pipeline(MinMaxScaler(), LogisticRegression(max_iter=iterations))


def _scoring(metric: str, y) -> str:
    if metric == "roc_auc" and len(np.unique(y)) > 2:
        return "roc_auc_ovr"
    return metric


def _torch_device(probe: str):
    """Where the logistic-regression probes run on a GPU through the Array API (else None)."""
    if resolve_probe(probe) not in (REFERENCE, "fast_logistic"):
        return None
    from encoderkit.array_api import reference_device

    return reference_device()


# Codes smaller than this are scored fold after fold. Measured on 2 cores (3 folds, both probes):
# below 5M values, two folds at once saved at most 0.07 s a call, while the first call in a
# process spent ~1.9 s starting the worker pool, which made the first checkpoint of a small
# search's trials cost more than their training.
PARALLEL_FOLDS_MIN_VALUES = 5_000_000


def cv_score(codes, y, metric: str, folds: int = 5, seed: int = 0, probe: str = REFERENCE, n_jobs: int = 1):
    """Mean and standard deviation of the probe's score over stratified folds.

    BLAS runs single-threaded: on these small matrices OpenBLAS' threads made the probe three
    times slower on 2 cores (measured); parallelism comes from `n_jobs` folds at once, for
    codes of at least PARALLEL_FOLDS_MIN_VALUES values."""
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    if resolve_probe(probe) == "device_softmax":  # every fold in one program on the device
        from encoderkit.device_probe import cv_fold_scores

        scores = cv_fold_scores(codes, y, splitter, metric)
        return float(np.mean(scores)), float(np.std(scores))
    device = _torch_device(probe)
    if device is not None:  # the same estimator on the GPU, fold after fold
        scores = [_device_score(device, probe, metric, codes, y, train, test)
                  for train, test in splitter.split(codes, y)]
        return float(np.mean(scores)), float(np.std(scores))
    if resolve_probe(probe) == "keras_softmax":
        n_jobs = 1  # folds share the accelerator in this process; no process pool
    if np.size(codes) < PARALLEL_FOLDS_MIN_VALUES:
        n_jobs = 1  # a process's first pool costs more than folds at once can save
    if resolve_probe(probe) == "fast_logistic":
        codes = np.asarray(codes, dtype=np.float32)  # lbfgs in float32: half the time, as good (FAST_LOGISTIC)
    with warnings.catch_warnings(), threadpool_limits(1, user_api="blas"):
        warnings.simplefilter("ignore", ConvergenceWarning)
        result = cross_validate(
            make_probe(probe), codes, y, cv=splitter, scoring=_scoring(metric, y),
            error_score="raise", n_jobs=n_jobs if n_jobs > 1 else None,
        )
    scores = result["test_score"]
    return float(np.mean(scores)), float(np.std(scores))


def metric_value(metric: str, y_true, predicted, probabilities, classes) -> float:
    if metric == "accuracy":
        return float(accuracy_score(y_true, predicted))
    if metric == "balanced_accuracy":
        return float(balanced_accuracy_score(y_true, predicted))
    if metric == "f1_macro":
        return float(f1_score(y_true, predicted, average="macro"))
    if metric == "roc_auc":
        if len(classes) == 2:
            return float(roc_auc_score(y_true, probabilities[:, 1]))
        return float(roc_auc_score(y_true, probabilities, multi_class="ovr", labels=classes))
    raise ValueError(f"unknown metric {metric!r}")


def _device_score(device, probe, metric, codes, y, train, test) -> float:
    y = np.asarray(y)
    classes, probabilities = _fit_predict_proba(device, probe, codes[train], y[train], codes[test])
    return metric_value(metric, y[test], classes[np.argmax(probabilities, axis=1)], probabilities, classes)


def _fit_predict_proba(device, probe, X_train, y_train, X_test):
    """(classes, class probabilities of X_test) from the probe fitted on the training rows: on
    `device` through torch where one is given (encoderkit/array_api.py), else with numpy. A
    torch or CUDA stack that fails there is named in a warning and the host takes over, so a
    finished search does not lose its export to it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        if device is not None:
            from encoderkit.array_api import fit_predict_proba, give_up

            try:
                return fit_predict_proba(device, make_probe(probe), X_train, y_train, X_test)
            except Exception as error:  # noqa: BLE001 - any failure of the device stack
                give_up(error)
        model = make_probe(probe).fit(X_train, y_train)
        return model.classes_, model.predict_proba(X_test)


def binary_auroc(positive, scores) -> float:
    """AUROC as the Mann-Whitney statistic: the chance that a positive row scores above a
    negative one, ties counting half (roc_auc_score's value; a bootstrap of 1000 resamples
    took 1.8 s through roc_auc_score, most of a small study's export)."""
    from scipy.stats import rankdata

    positive = np.asarray(positive, dtype=bool)
    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    return float((rankdata(scores)[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def test_score(train_codes, y_train, test_codes, y_test, metric, seed=0, n_boot=1000, probe=REFERENCE):
    """Fits the probe on the whole search part, scores the test part once, and gives a 95%
    bootstrap interval over test rows: (score, low, high). On a GPU the reference runs there
    (encoderkit/array_api.py), the same estimator and solver."""
    score, boot = test_score_and_resamples(train_codes, y_train, test_codes, y_test, metric, seed, n_boot, probe)
    return (score, *percentile_interval(boot))


def percentile_interval(values) -> tuple[float, float]:
    """The 95% percentile interval of bootstrap values (NaN, NaN without any)."""
    low, high = np.percentile(values, [2.5, 97.5]) if len(values) else (np.nan, np.nan)
    return float(low), float(high)


def test_score_and_resamples(train_codes, y_train, test_codes, y_test, metric, seed=0, n_boot=1000,
                             probe=REFERENCE):
    """`test_score`'s score and its bootstrap values. With the same seed and test labels every
    method is scored on the same resamples of the test rows, so the differences of two
    methods' values are a paired bootstrap of their difference."""
    with threadpool_limits(1, user_api="blas"):
        classes, probabilities = _fit_predict_proba(_torch_device(probe), probe, train_codes, y_train, test_codes)
    predicted = classes[np.argmax(probabilities, axis=1)]
    y_test = np.asarray(y_test)
    score = metric_value(metric, y_test, predicted, probabilities, classes)
    rng = np.random.default_rng(seed)
    correct = np.asarray(predicted == y_test, dtype=np.float64)  # accuracy: a mean, no sklearn call
    boot = []
    for _ in range(n_boot):
        idx = rng.integers(0, len(y_test), len(y_test))
        if metric == "accuracy":
            boot.append(float(np.mean(correct[idx])))
            continue
        if len(np.unique(y_test[idx])) < len(classes) and metric == "roc_auc":
            continue  # AUROC is undefined when a resample lacks a class
        if metric == "roc_auc" and len(classes) == 2:  # what roc_auc_score gives, 50x faster
            boot.append(binary_auroc(y_test[idx] == classes[1], probabilities[idx, 1]))
            continue
        boot.append(metric_value(metric, y_test[idx], predicted[idx], probabilities[idx], classes))
    return float(score), np.asarray(boot, dtype=np.float64)
