import numpy as np
import pytest

from encoderkit import baselines
from encoderkit.baselines import baseline_notes, baselines_for, sequence_summaries
from encoderkit.data import Dataset, load_dataset


def test_handcrafted_insurance_features_are_per_type_sum_median_max_variance():
    X = np.arange(24, dtype=float).reshape(2, 12)  # periods x [payment, value, premium]
    features = sequence_summaries(X, steps=4, channels=3)
    first = X[0].reshape(4, 3)
    expected = np.concatenate([first.sum(0), np.median(first, 0), first.max(0), first.var(0, ddof=1)])
    assert features.shape == (2, 12)
    np.testing.assert_allclose(features[0], expected)


def test_baselines_apply_where_defined():
    assert set(baselines_for(load_dataset("digits"))) == {"raw", "pca"}
    insurance = load_dataset("insurance:n=100")
    found = baselines_for(insurance)
    assert set(found) == {"raw", "pca", "handcrafted"}
    assert found["handcrafted"]().fit(insurance.X).transform(insurance.X).shape == (100, 12)


def test_pca_keeps_99_percent_of_the_variance():
    digits = load_dataset("digits")
    pca = baselines_for(digits)["pca"]().fit(digits.X)[-1]
    assert pca.explained_variance_ratio_.sum() >= 0.99 and pca.n_components_ < 64


def test_pca_keeps_a_narrow_informative_column_of_a_table_in_mixed_units():
    """PCA on unscaled columns kept the variance of the widest (here in the thousands) and
    dropped the one that decides the label; on the columns scaled as the encoders' inputs are,
    it keeps it, and the probe scores it like the raw columns."""
    from encoderkit.probe import cv_score

    rng = np.random.default_rng(0)
    X = np.column_stack([rng.normal(0, 1000, 400), rng.normal(0, 1, 400)])
    y = (X[:, 1] > 0).astype(int)
    codes = baselines_for(Dataset("table", X, y, "table", (2,)))["pca"]().fit(X).transform(X)
    assert codes.shape[1] == 2
    assert cv_score(codes, y, "accuracy", 3, 0)[0] > 0.95


def test_minirocket_scores_sequences_fit_on_the_rows_it_is_given():
    """MiniRocket applies to sequences of at least 9 steps (its kernels' span): fitted on the
    training series only (no labels), it maps any series to the same 9,996 features, scored by
    the probe like every baseline."""
    pytest.importorskip("aeon")
    from encoderkit.probe import cv_score, test_score

    unit = load_dataset("ucr:UnitTest")
    assert set(baselines_for(unit)) == {"raw", "pca", "minirocket"} and baseline_notes(unit) == ()
    train, test = unit.X[:20], unit.X[20:]
    rocket = baselines_for(unit)["minirocket"]().fit(train)
    codes = rocket.transform(train)
    assert codes.shape == (20, 9996) and np.isfinite(codes).all()
    np.testing.assert_array_equal(baselines_for(unit)["minirocket"]().fit(train).transform(test), rocket.transform(test))
    mean, _ = cv_score(codes, unit.y[:20], "roc_auc", folds=3)
    score, low, high = test_score(codes, unit.y[:20], rocket.transform(test), unit.y[20:], "roc_auc", n_boot=50)
    assert 0.5 < mean <= 1.0 and 0.5 < score <= 1.0 and low <= score <= high
    insurance = load_dataset("insurance:n=100")  # 4 steps: no MiniRocket, and a note says why
    assert "minirocket" not in baselines_for(insurance)
    assert baseline_notes(insurance) == ("no MiniRocket baseline: its kernels span 9 steps, these series have 4",)
    assert "minirocket" not in baselines_for(load_dataset("digits"))


def test_without_aeon_sequences_get_no_minirocket_and_a_note(monkeypatch):
    monkeypatch.setattr(baselines, "_aeon_problem", lambda: "aeon is not installed (no aeon); `make setup` installs it")
    sequences = Dataset("s", np.zeros((40, 30)), np.arange(40) % 2, "sequence", (10, 3))
    assert set(baselines_for(sequences)) == {"raw", "pca"}
    assert baseline_notes(sequences) == ("no MiniRocket baseline: aeon is not installed (no aeon); `make setup` installs it",)


def test_minirocket_keeps_10000_kernels_on_small_data_and_fewer_on_many_rows():
    assert baselines.minirocket_kernels(640) == baselines.minirocket_kernels(2000) == 10_000
    assert baselines.minirocket_kernels(10_000) == 2_000 and baselines.minirocket_kernels(70_000) == 1_000


def test_minirocket_counts_the_rows_it_fits_on_not_the_held_out_ones():
    """A study passes its search part's size: the test part's size set the kernel count (a
    larger test part gave a weaker anchor)."""
    pytest.importorskip("aeon")
    many = Dataset("s", np.zeros((12_000, 10)), np.arange(12_000) % 2, "sequence", (10, 1))
    assert baselines_for(many)["minirocket"]().n_kernels == baselines.minirocket_kernels(12_000) == 1_666
    assert baselines_for(many, n_fit_rows=9_000)["minirocket"]().n_kernels == baselines.minirocket_kernels(9_000)
    assert baselines.minirocket_kernels(9_000) == 2_222
