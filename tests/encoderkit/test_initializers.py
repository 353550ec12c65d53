"""The families draw their initial weights with NumPy (no compiled random programs under JAX)
from Keras' own distributions, and name Keras' own initializers in the models they build."""

import json

import keras
import numpy as np
import pytest

from encoderkit.families import FAMILIES, get_family
from encoderkit.families.initializers import HostGlorotUniform, HostOrthogonal


@pytest.mark.parametrize("shape", [(30, 50), (3, 3, 4, 8), (5, 16, 7)])
def test_host_glorot_has_keras_limit_and_spread(shape):
    host = HostGlorotUniform(seed=1)(shape, "float32")
    reference = keras.ops.convert_to_numpy(keras.initializers.GlorotUniform(seed=1)(shape, "float32"))
    window = int(np.prod(shape[:-2]))
    limit = np.sqrt(6.0 / ((shape[-2] + shape[-1]) * window))
    assert host.shape == shape and host.dtype == np.float32
    assert np.abs(host).max() <= limit and np.abs(reference).max() <= limit
    assert host.std() == pytest.approx(limit / np.sqrt(3), rel=0.1)
    assert host.std() == pytest.approx(reference.std(), rel=0.1)
    assert np.array_equal(host, HostGlorotUniform(seed=1)(shape, "float32"))  # a seed is a draw
    assert not np.array_equal(host, HostGlorotUniform(seed=2)(shape, "float32"))


@pytest.mark.parametrize("shape", [(8, 32), (32, 8), (4, 2, 6)])
def test_host_orthogonal_is_orthogonal_as_keras_makes_it(shape):
    host = HostOrthogonal(gain=2.0, seed=0)(shape)
    keras_made = keras.ops.convert_to_numpy(keras.initializers.Orthogonal(gain=2.0, seed=0)(shape))
    assert host.shape == keras_made.shape == shape
    for values in (host, keras_made):  # the same property, the same gain convention
        values = values.reshape(-1, shape[-1]).astype(np.float64)
        small = min(values.shape)
        gram = values.T @ values if values.shape[0] >= values.shape[1] else values @ values.T
        assert gram == pytest.approx(4.0 * np.eye(small), abs=1e-5)


def test_host_initializers_refuse_what_keras_refuses():
    with pytest.raises(ValueError, match="2 axes"):
        HostOrthogonal(seed=0)((5,))
    with pytest.raises(TypeError, match="integer seed"):
        HostGlorotUniform(seed=keras.random.SeedGenerator(0))((3, 4))


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_no_family_draws_its_weights_with_keras_random_ops(family, monkeypatch):
    """Keras' random ops are what compile a program per weight shape under JAX (Keras'
    initializers call its backend's ops directly)."""
    from keras.src.backend import random as keras_random

    def compiled_draw(*args, **kwargs):
        raise AssertionError("a weight was drawn with Keras' random ops")

    for name in ("uniform", "normal", "truncated_normal"):
        monkeypatch.setattr(keras_random, name, compiled_draw)
    spec = get_family(family)
    params = {"layers": [{}, {}], "batch_norm": True}
    params.update({"seq2seq": {"cell": "lstm"}}.get(family, {}))
    autoencoder, _ = spec.builder()(family, spec.resolve(params), input_shape=(6, 2), code_size=3, seed=0)
    assert autoencoder.count_params() > 0


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_built_models_name_only_keras_initializers(family):
    """A saved model's config must load with Keras alone: no class of ours for the weights."""
    spec = get_family(family)
    params = {"cell": "gru"} if family == "seq2seq" else {}
    autoencoder, encoder = spec.builder()(family, spec.resolve(params), input_shape=(6, 2), code_size=3, seed=0)
    config = json.dumps(autoencoder.get_config())
    assert "Host" not in config and "GlorotUniform" in config
    if family == "seq2seq":
        assert "Orthogonal" in config
    weights = autoencoder.get_weights()
    again, _ = spec.builder()(family, spec.resolve(params), input_shape=(6, 2), code_size=3, seed=0)
    assert all(np.array_equal(a, b) for a, b in zip(weights, again.get_weights()))  # the seed fixes them
