"""The per-series scaling: each sample z-normalised per channel, exported as plain numbers."""

import numpy as np
import pytest
from sklearn.utils.estimator_checks import parametrize_with_checks

from encoderkit import AutoencoderTransformer
from encoderkit.export import load_encoder, save_export
from encoderkit.series_scaler import SeriesStandardScaler


def series(n=30, steps=12, channels=2, seed=0):
    rng = np.random.default_rng(seed)
    level = rng.normal(0, 10, size=(n, 1, channels))
    spread = rng.uniform(0.5, 5, size=(n, 1, channels))
    return level + spread * rng.normal(size=(n, steps, channels))


@parametrize_with_checks([SeriesStandardScaler()])
def test_sklearn_contract(estimator, check):
    check(estimator)


def test_each_series_and_channel_gets_mean_zero_and_unit_spread():
    X = series()
    scaled = SeriesStandardScaler(channels=2).fit_transform(X.reshape(30, -1)).reshape(X.shape)
    np.testing.assert_allclose(scaled.mean(axis=1), 0, atol=1e-9)
    np.testing.assert_allclose(scaled.std(axis=1), 1, atol=1e-9)
    # channel by channel, not over the whole row: the other layout would mix the channels
    mixed = SeriesStandardScaler(channels=1).fit_transform(X.reshape(30, -1)).reshape(X.shape)
    assert not np.allclose(mixed.std(axis=1), 1)


def test_a_constant_series_is_centred_not_blown_up_and_restore_inverts():
    X = series(n=4).reshape(4, -1)
    X[0] = 7.0
    scaler = SeriesStandardScaler(channels=2).fit(X)
    scaled = scaler.transform(X)
    assert np.all(np.isfinite(scaled)) and np.all(scaled[0] == 0)
    np.testing.assert_allclose(scaler.restore(scaled, X), X)


def test_a_row_that_is_not_whole_steps_is_refused():
    with pytest.raises(ValueError, match="multiple of channels=2"):
        SeriesStandardScaler(channels=2).fit(np.zeros((3, 5)))


def test_series_of_one_step_are_refused_since_every_value_would_become_zero():
    """A (T=1, F) sample, or a tabular row taken as one series, was scaled to all zeros in
    silence: the autoencoder then learnt nothing and every code was the same."""
    with pytest.raises(ValueError, match=r"these series have one step \(3 feature\(s\), channels=3\).*"
                                         "use scaling='standard'"):
        SeriesStandardScaler(channels=3).fit(series(steps=1, channels=3).reshape(30, -1))
    model = AutoencoderTransformer(family="dense", code_size=2, scaling="series", epochs=1)
    with pytest.raises(ValueError, match="every value would become 0"):
        model.fit(series(steps=1, channels=2))
    SeriesStandardScaler(channels=3).fit(series(steps=2, channels=3).reshape(30, -1))  # two steps: fine


def test_the_transformer_scales_per_series_and_its_export_does_the_same(tmp_path):
    X = series(n=40, steps=16)
    model = AutoencoderTransformer(family="conv1d", code_size=3, scaling="series", epochs=2, random_state=0,
                                   family_params={"layers": [{"filters": 4, "kernel_size": 3}]}).fit(X)
    assert isinstance(model.scaler_, SeriesStandardScaler) and model.scaler_.channels == 2
    # Levels and amplitudes are gone: a series shifted and stretched gets the same code.
    np.testing.assert_allclose(model.transform(3 * X + 100), model.transform(X), atol=1e-4)
    assert model.reconstruct(X).shape == (40, 16, 2) and (X - model.reconstruct(X)).shape == X.shape  # X's layout
    np.testing.assert_array_equal(model.reconstruct(X.reshape(40, 32)), model.reconstruct(X).reshape(40, 32))
    loaded = load_encoder(save_export(tmp_path / "export", model, {}))
    np.testing.assert_allclose(loaded.transform(X), model.transform(X), atol=1e-6)
