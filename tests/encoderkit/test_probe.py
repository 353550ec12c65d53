"""The downstream probe: metric resolution, cross-validated and held-out test scores."""

import importlib.util

import numpy as np
import pytest

import encoderkit.probe as probe_module
from encoderkit.probe import METRICS, cv_score, make_probe, resolve_metric, test_score as held_out_score


def separable(n_classes, n=150, seed=0):
    """Well-separated Gaussian blobs: any sane linear probe scores near 1."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % n_classes
    centers = rng.normal(scale=10.0, size=(n_classes, 5))
    X = centers[y] + rng.normal(scale=0.5, size=(n, 5))
    return X, y


def noise(n=200, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 10)), np.arange(n) % 2


def test_auto_metric_is_auroc_for_binary_and_accuracy_otherwise():
    assert resolve_metric("auto", np.array([0, 1, 1, 0])) == "roc_auc"
    assert resolve_metric("auto", np.array(["cat", "dog", "cat"])) == "roc_auc"
    assert resolve_metric("auto", np.array([0, 1, 2, 1])) == "accuracy"
    assert resolve_metric("f1_macro", np.array([0, 1])) == "f1_macro"
    assert resolve_metric("roc_auc", np.array([0, 1, 2])) == "roc_auc"


def test_unknown_metric_and_probe_are_refused():
    with pytest.raises(ValueError, match="'precision'"):
        resolve_metric("precision", np.array([0, 1]))
    with pytest.raises(ValueError, match="'svm'"):
        make_probe("svm")


@pytest.mark.parametrize("metric", [m for m in METRICS if m != "auto"])
@pytest.mark.parametrize("n_classes", [2, 3])
def test_cv_score_on_a_separable_problem_is_high(metric, n_classes):
    X, y = separable(n_classes)
    mean, std = cv_score(X, y, metric, folds=3, seed=0)
    assert isinstance(mean, float) and isinstance(std, float)
    assert mean > 0.9
    assert 0 <= std < 0.1


def test_cv_score_on_noise_is_near_chance():
    X, y = noise()
    mean, _ = cv_score(X, y, "accuracy", folds=3, seed=0)
    assert mean < 0.7


def test_cv_score_is_seeded():
    X, y = noise()
    assert cv_score(X, y, "roc_auc", folds=3, seed=1) == cv_score(X, y, "roc_auc", folds=3, seed=1)
    assert cv_score(X, y, "roc_auc", folds=3, seed=1) != cv_score(X, y, "roc_auc", folds=3, seed=2)


def test_cv_score_parallel_folds_give_the_same_numbers(monkeypatch):
    X, y = separable(3, seed=1)
    X = X + np.random.default_rng(2).normal(scale=8.0, size=X.shape)  # not perfectly separable
    serial = cv_score(X, y, "accuracy", folds=3, seed=0, n_jobs=1)
    monkeypatch.setattr(probe_module, "PARALLEL_FOLDS_MIN_VALUES", 0)  # these codes at once, too
    parallel = cv_score(X, y, "accuracy", folds=3, seed=0, n_jobs=2)
    assert serial == parallel
    assert serial[0] < 1.0  # the comparison is not trivially 1.0 == 1.0


def test_small_codes_are_scored_fold_after_fold_without_a_worker_pool(monkeypatch):
    """A pool's start (~2 s) made a small search's first checkpoint cost more than training."""
    given = []
    real = probe_module.cross_validate
    monkeypatch.setattr(probe_module, "cross_validate", lambda *a, **k: given.append(k["n_jobs"]) or real(*a, **k))
    X, y = separable(3)
    cv_score(X, y, "accuracy", folds=3, n_jobs=2)
    monkeypatch.setattr(probe_module, "PARALLEL_FOLDS_MIN_VALUES", X.size)
    cv_score(X, y, "accuracy", folds=3, n_jobs=2)
    assert given == [None, 2]


def test_fast_logistic_fits_float32_codes_and_the_reference_float64(monkeypatch):
    """float32 halves lbfgs' products (52 -> 6 s on 1296-wide codes with its 100 iterations);
    the reference keeps the codes' float64."""
    given = []
    real = probe_module.cross_validate
    spy = lambda estimator, X, *a, **k: given.append(X.dtype) or real(estimator, X, *a, **k)  # noqa: E731
    monkeypatch.setattr(probe_module, "cross_validate", spy)
    X, y = separable(3)
    cv_score(X, y, "accuracy", folds=3, probe="fast_logistic")
    cv_score(X, y, "accuracy", folds=3, probe="logistic_regression")
    assert given == [np.float32, np.float64]


def test_test_score_interval_contains_the_score():
    X, y = noise(200, seed=3)
    X[:, 0] += 1.5 * y  # informative but overlapping: accuracy well above chance, below 1
    score, low, high = held_out_score(X[:100], y[:100], X[100:], y[100:], "accuracy", seed=0, n_boot=300)
    assert 0.6 < score < 1.0
    assert low <= score <= high
    assert low < high


def test_the_interval_is_a_95_percent_one_about_as_wide_as_the_normal_approximation():
    """The bootstrap's 2.5th and 97.5th percentiles: a 90% interval would pass every test above."""
    X, y = noise(2400, seed=3)
    X[:, 0] += 1.5 * y
    score, low, high = held_out_score(X[:400], y[:400], X[400:], y[400:], "accuracy", seed=0, n_boot=1000)
    normal = 2 * 1.96 * np.sqrt(score * (1 - score) / 2000)  # 90%: 2 * 1.645 * ..., 16% narrower
    assert abs((high - low) / normal - 1) < 0.07, (high - low, normal)


@pytest.mark.parametrize("model, iterations", [("logistic_regression", 1000), ("fast_logistic", 100)])
def test_the_probes_keep_their_iteration_budgets(model, iterations):
    """The reference probe's held-out scores assume lbfgs converges (1000 iterations); the
    fast one trades that for speed in the search's CV, within half a point (tested below)."""
    assert make_probe(model)[-1].max_iter == iterations


@pytest.mark.parametrize("n_classes", [2, 3])
def test_test_score_roc_auc_on_separable_data(n_classes):
    X, y = separable(n_classes, n=120)
    score, low, high = held_out_score(X[:60], y[:60], X[60:], y[60:], "roc_auc", n_boot=200)
    assert score > 0.9
    assert low <= score <= high


def test_test_score_on_random_labels_is_near_chance():
    X, y = noise(400, seed=5)
    score, low, high = held_out_score(X[:200], y[:200], X[200:], y[200:], "accuracy", seed=0, n_boot=300)
    assert score < 0.7
    assert low <= score <= high
    assert low < 0.6  # the interval reaches down to chance


def test_test_score_bootstrap_is_seeded():
    X, y = noise(200, seed=6)
    args = (X[:100], y[:100], X[100:], y[100:], "balanced_accuracy")
    assert held_out_score(*args, seed=7, n_boot=100) == held_out_score(*args, seed=7, n_boot=100)
    assert held_out_score(*args, seed=7, n_boot=100)[1:] != held_out_score(*args, seed=8, n_boot=100)[1:]


def test_the_bootstrap_auroc_is_roc_auc_scores_value_ties_included():
    from sklearn.metrics import roc_auc_score

    from encoderkit.probe import binary_auroc

    rng = np.random.default_rng(0)
    for n in (2, 5, 22, 300):
        y = np.r_[0, 1, rng.integers(0, 2, n - 2)]
        scores = np.round(rng.random(n), 1)  # many ties
        assert binary_auroc(y == 1, scores) == pytest.approx(roc_auc_score(y, scores), abs=1e-12)


def test_auto_probe_is_the_fast_logistic_regression_without_an_accelerator():
    from encoderkit.probe import resolve_probe

    assert resolve_probe("auto") == "fast_logistic"  # CI machines have no GPU
    assert resolve_probe("logistic_regression") == "logistic_regression"


def test_auto_probe_on_an_accelerator_is_the_device_probe_under_jax_only(monkeypatch):
    """One compiled JAX program for all folds under Keras' JAX backend; the other backends keep
    the Keras softmax probe (the device probe is written in JAX)."""
    import keras

    from encoderkit import probe

    monkeypatch.setattr(probe, "has_accelerator", lambda: True)
    for backend, expected in (("jax", "device_softmax"), ("tensorflow", "keras_softmax"), ("torch", "keras_softmax")):
        monkeypatch.setattr(keras.backend, "backend", lambda: backend)
        assert probe.resolve_probe("auto") == expected
    assert probe.resolve_probe("device_softmax") == "device_softmax"


@pytest.mark.parametrize("cheap", [
    "fast_logistic", "keras_softmax",
    pytest.param("device_softmax", marks=pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="no JAX")),
])
def test_cheap_probes_score_within_half_a_point_of_the_reference(cheap):
    """Same folds, same features: 20k overlapping 64-d blobs in 10 classes standing in for
    codes (the softmax probe is meant for large code matrices on an accelerator)."""
    rng = np.random.default_rng(0)
    y = np.arange(20000) % 10
    X = rng.normal(size=(10, 64))[y] + rng.normal(scale=2.2, size=(20000, 64))
    reference, _ = cv_score(X, y, "accuracy", folds=3, seed=0, probe="logistic_regression")
    score, _ = cv_score(X, y, "accuracy", folds=3, seed=0, probe=cheap)
    assert 0.9 < reference < 0.99  # hard enough to tell probes apart
    assert abs(score - reference) <= 0.005, (cheap, score, reference)


def test_softmax_probe_follows_the_classifier_contract():
    from encoderkit.softmax_probe import SoftmaxProbe

    X, y = separable(3)
    labels = np.array(["a", "b", "c"])[y]
    model = SoftmaxProbe(steps=300).fit(X, labels)
    assert list(model.classes_) == ["a", "b", "c"]
    proba = model.predict_proba(X)
    assert proba.shape == (len(X), 3) and np.allclose(proba.sum(axis=1), 1, atol=1e-5)
    assert (model.predict(X) == labels).mean() > 0.95


@pytest.mark.parametrize("metric", ["accuracy", "roc_auc"])
def test_two_methods_are_resampled_on_the_same_test_rows_so_their_difference_is_paired(metric):
    """The export's winner-minus-baseline interval subtracts two methods' bootstrap values
    resample by resample: each must be the metric on the same resampled rows (AUROC skips the
    resamples that lack a class, the same ones for both)."""
    from sklearn.metrics import accuracy_score, roc_auc_score

    from encoderkit.probe import REFERENCE, make_probe, test_score_and_resamples

    X, y = noise(160, seed=8)
    X[:, 0] += 1.2 * y
    train, test = slice(0, 100), slice(100, 160)
    y_test = y[test][:6]  # six test rows: some resamples lack a class
    values = {}
    for name, columns in (("a", slice(0, 2)), ("b", slice(1, 4))):
        codes = X[:, columns]
        score, values[name] = test_score_and_resamples(codes[train], y[train], codes[test][:6], y_test, metric,
                                                       seed=4, n_boot=200)
        probe = make_probe(REFERENCE).fit(codes[train], y[train])
        rng, expected = np.random.default_rng(4), []
        for _ in range(200):  # the resamples as the bootstrap draws them
            idx = rng.integers(0, 6, 6)
            if metric == "accuracy":
                expected.append(accuracy_score(y_test[idx], probe.predict(codes[test][:6][idx])))
            elif len(np.unique(y_test[idx])) == 2:
                expected.append(roc_auc_score(y_test[idx], probe.predict_proba(codes[test][:6][idx])[:, 1]))
        np.testing.assert_allclose(values[name], expected, atol=1e-12)
    assert len(values["a"]) == len(values["b"]) and (metric == "accuracy" or len(values["a"]) < 200)
