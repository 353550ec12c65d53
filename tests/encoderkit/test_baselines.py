import numpy as np

from encoderkit.baselines import baselines_for, sequence_summaries
from encoderkit.data import load_dataset


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
    pca = baselines_for(digits)["pca"]().fit(digits.X)
    assert pca.explained_variance_ratio_.sum() >= 0.99 and pca.n_components_ < 64
