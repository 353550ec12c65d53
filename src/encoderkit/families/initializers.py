"""Keras' GlorotUniform and Orthogonal initializers, drawn with NumPy on the host.

Under Keras' JAX backend an initializer is a jitted random program compiled for each weight
shape, and every trial meets new shapes: measured here, 5 such compiles took 1.7 s of a small
conv autoencoder's 3.7 s of compiling on the CPU. Drawn with NumPy, the weights go to the
device as arrays and nothing compiles. The distributions are Keras' own (same limits and
fans); the draws differ from Keras' random streams, under every backend alike, and the same
seed gives the same weights under TensorFlow, JAX and torch.

Once the weights are drawn, `name_keras_initializers` puts Keras' own classes (same seed, same
distribution) back on the layers, so a saved model's config names Keras' classes only and
loads with Keras alone, as models received from someone else must."""

from __future__ import annotations

import math

import keras
import numpy as np


def _generator(seed):
    # Keras' initializers turn a seed of None into a random integer when they are made.
    if not isinstance(seed, (int, np.integer)):
        raise TypeError(f"host initializers take an integer seed, got {seed!r}")
    return np.random.default_rng(int(seed))


def _cast(values, dtype):
    return values.astype(keras.backend.standardize_dtype(dtype or keras.config.floatx()))


def _fans(shape):
    """Keras' fans: a kernel's last two axes are (inputs, outputs), earlier ones its window."""
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    window = math.prod(shape[:-2])
    return shape[-2] * window, shape[-1] * window


class HostGlorotUniform(keras.initializers.GlorotUniform):
    """Uniform on [-limit, limit], limit = sqrt(6 / (fan_in + fan_out)), as `GlorotUniform`."""

    def __call__(self, shape, dtype=None):
        fan_in, fan_out = _fans(tuple(int(s) for s in shape))
        limit = math.sqrt(3.0 / max(1.0, (fan_in + fan_out) / 2.0))
        unit = _generator(self.seed).random(shape, dtype=np.float32)  # float32 draws: half the time of float64
        return _cast((2 * unit - 1) * limit, dtype)

    def as_keras(self):
        return keras.initializers.GlorotUniform(seed=self.seed)


class HostOrthogonal(keras.initializers.Orthogonal):
    """An orthogonal matrix (the Q of a normal matrix's QR, signs fixed) times `gain`, over the
    last axis against all others, as `Orthogonal` (recurrent kernels)."""

    def __call__(self, shape, dtype=None):
        shape = tuple(int(s) for s in shape)
        if len(shape) < 2:
            raise ValueError(f"an orthogonal initializer needs at least 2 axes, got shape {shape}")
        rows, cols = math.prod(shape[:-1]), shape[-1]
        normal = _generator(self.seed).standard_normal((max(rows, cols), min(rows, cols)))
        q, r = np.linalg.qr(normal)
        q = q * np.sign(np.diag(r))
        if rows < cols:
            q = q.T
        return _cast(self.gain * q.reshape(shape), dtype)

    def as_keras(self):
        return keras.initializers.Orthogonal(gain=self.gain, seed=self.seed)


INITIALIZER_ATTRIBUTES = ("kernel_initializer", "recurrent_initializer")


def name_keras_initializers(model) -> None:
    """Replaces the host initializers on `model`'s layers, nested ones included (a recurrent
    layer's cell holds its initializers), by Keras' own classes with the same seeds."""
    for layer in model._flatten_layers(include_self=False, recursive=True):
        for name in INITIALIZER_ATTRIBUTES:
            value = vars(layer).get(name)  # attributes only: an RNN layer's are its cell's properties
            if isinstance(value, (HostGlorotUniform, HostOrthogonal)):
                setattr(layer, name, value.as_keras())
