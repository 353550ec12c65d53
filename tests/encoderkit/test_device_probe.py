"""The device probe (all CV folds in one JAX program) against the reference probe on the
same codes and folds. JAX runs on the CPU here; the program is the one a GPU runs.

Compiling the program takes about 3 s on the CPU, once per shape bucket: the tests share a
few shapes (1797 digits rows, 64 features, 5 folds) so that the file stays short."""

import importlib.util
from unittest import mock

import numpy as np
import pytest
from sklearn.datasets import load_digits

from encoderkit.probe import cv_score, make_probe, test_score as held_out_score

pytestmark = pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="JAX is not installed")

HALF_A_POINT = 0.005


@pytest.fixture(scope="module")
def digits():
    return load_digits(return_X_y=True)


def test_scores_the_reference_on_digits_pixels(digits):
    X, y = digits  # constant pixels included: their range is 0, as MinMaxScaler handles
    reference, _ = cv_score(X, y, "accuracy", folds=5, seed=0, probe="logistic_regression")
    score, std = cv_score(X, y, "accuracy", folds=5, seed=0, probe="device_softmax")
    assert reference > 0.95  # chance is 0.1: a broken probe cannot pass
    assert abs(score - reference) <= HALF_A_POINT, (score, reference)
    assert 0 <= std < 0.05


def test_scores_the_reference_on_autoencoder_codes(digits):
    from encoderkit import AutoencoderTransformer

    X, y = digits
    codes = AutoencoderTransformer(family="dense", code_size=48, epochs=6, batch_size=64, learning_rate=3e-3,
                                   family_params={"layers": [{"units": 32, "activation": "relu"}]},
                                   input_shape=(8, 8, 1), random_state=0).fit_transform(X)
    reference, _ = cv_score(codes, y, "accuracy", folds=5, seed=0, probe="logistic_regression")
    score, _ = cv_score(codes, y, "accuracy", folds=5, seed=0, probe="device_softmax")
    assert reference > 0.8
    assert abs(score - reference) <= HALF_A_POINT, (score, reference)


@pytest.mark.parametrize("metric", ["roc_auc", "accuracy", "f1_macro"])
def test_binary_targets_match_the_reference(digits, metric):
    """Two classes: one logistic column in scikit-learn, two softmax columns here (the penalty
    is matched, or the heads would be regularised half as much)."""
    X, y = digits
    pick = np.isin(y, [3, 8, 9])
    X, y = X[pick], (y[pick] == 8)  # 8 against 3 and 9: near, not perfectly separable
    X = X + np.random.default_rng(0).normal(scale=4.0, size=X.shape)
    reference, _ = cv_score(X, y, metric, folds=3, seed=0, probe="logistic_regression")
    score, _ = cv_score(X, y, metric, folds=3, seed=0, probe="device_softmax")
    assert 0.6 < reference < 0.995
    assert abs(score - reference) <= HALF_A_POINT, (metric, score, reference)


def test_random_labels_score_chance(digits):
    X, y = digits
    y = np.random.default_rng(1).permutation(y)
    score, _ = cv_score(X, y, "accuracy", folds=5, seed=0, probe="device_softmax")
    assert score < 0.2


def test_the_estimator_agrees_with_the_reference_pipeline(digits):
    X, y = digits
    labels = np.array(list("abcdefghij"))[y]
    train, test = slice(0, 1200), slice(1200, None)
    reference = make_probe("logistic_regression").fit(X[train], labels[train])
    model = make_probe("device_softmax").fit(X[train], labels[train])
    assert list(model.classes_) == list("abcdefghij")
    proba = model.predict_proba(X[test])
    assert proba.shape == (len(X[test]), 10) and np.allclose(proba.sum(axis=1), 1)
    assert (model.predict(X[test]) == reference.predict(X[test])).mean() > 0.98
    assert np.abs(proba - reference.predict_proba(X[test])).max() < 0.1
    assert model.n_iter_[0] < 1000  # converged to the tolerance, not stopped by the cap
    score, low, high = held_out_score(X[train], labels[train], X[test], labels[test], "accuracy",
                                      n_boot=50, probe="device_softmax")
    assert score > 0.9 and low <= score <= high


def test_padding_to_a_bucket_changes_nothing(digits):
    """Buckets pad rows (in no fold) and features (constant zero): the fit must not move."""
    from encoderkit import device_probe
    from encoderkit.device_probe import bucket, fit_heads

    X, y = digits
    X, y = X[:1200, 8:48], y[:1200]  # 1200 rows and 40 features pad to 1280 and 48
    assert bucket(1200, rows=True) == 1280 and bucket(40, rows=False) == 48
    # on an accelerator: powers of two from 256, six widths for the image space's 16..4880
    assert [bucket(d, rows=False, accelerator=True) for d in (16, 256, 257, 784, 2048, 4880)] == [
        256, 256, 512, 1024, 2048, 8192]
    everyone = np.ones(1200, np.int32)  # one head, trained on every row
    plain = fit_heads(X, y, 10, everyone)
    wider = fit_heads(np.hstack([X, np.zeros((1200, 9))]), y, 10, everyone)  # 49 features pad to 64
    np.testing.assert_allclose(plain.probabilities, wider.probabilities, atol=2e-3)
    assert np.abs(wider.coef[0, 40:]).max() == 0
    # an accelerator's padding (40 features to 256) moves nothing either
    import jax

    with mock.patch.object(jax, "default_backend", return_value="gpu"), mock.patch(
            "encoderkit.device_probe.bucket", wraps=device_probe.bucket) as padded:
        coarse = fit_heads(X, y, 10, everyone)
    assert padded.call_args_list[-1] == mock.call(40, rows=False, accelerator=True)
    np.testing.assert_allclose(plain.probabilities, coarse.probabilities, atol=2e-3)
    assert coarse.coef.shape == (1, 40, 10)


def test_on_an_accelerator_one_width_serves_a_search_where_memory_allows():
    from encoderkit.device_probe import PADDED_BYTES, bucket, padded_width

    codes = range(16, 4097 + 784)  # the image space's code widths, with and without the pixels
    assert {padded_width(d, bucket(7500, rows=True), accelerator=True) for d in codes} == {8192}
    full = bucket(45000, rows=True)  # full Fashion-MNIST's search part: half as wide, two programs
    assert {padded_width(d, full, accelerator=True) for d in codes} == {4096, 8192}
    assert all(full * padded_width(d, full, accelerator=True) * 4 <= PADDED_BYTES for d in range(16, 4097))
    assert padded_width(20000, 256, accelerator=True) == 32768  # wider codes keep their own bucket
    assert padded_width(40, 1280) == bucket(40, rows=False) == 48  # the CPU's buckets stay fine


def test_the_probe_is_one_program_per_bucket(digits):
    """Trials whose codes fall in one bucket reuse the compiled program (no new trace)."""
    from encoderkit.device_probe import compiled_fit

    X, y = digits
    fit = compiled_fit(1000, 1e-4)
    cv_score(X, y, "accuracy", folds=5, seed=0, probe="device_softmax")
    before = fit._cache_size()
    assert before >= 1  # the first call compiled through this very function
    cv_score(X[:1793, :60], y[:1793], "accuracy", folds=5, seed=0, probe="device_softmax")  # pads to 2048 x 64 too
    assert fit._cache_size() == before


def test_folds_must_partition_the_rows():
    from encoderkit.device_probe import fold_groups

    folds = [(np.arange(3, 9), np.arange(3)), (np.r_[0:3, 6:9], np.arange(3, 6)), (np.arange(6), np.arange(6, 9))]
    assert list(fold_groups(9, folds)) == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert list(fold_groups(10, [(np.arange(3, 10), np.arange(3))])) == [0] * 3 + [1] * 7
    with pytest.raises(ValueError, match="disjoint"):
        fold_groups(9, [(np.arange(2, 9), np.arange(3)), (np.arange(3, 9), np.arange(3))])
