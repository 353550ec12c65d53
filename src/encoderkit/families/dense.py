"""Dense autoencoders: plain, denoising (fresh noise each batch) and sparse (L1 on the code).

`build` returns (autoencoder, encoder); the decoder mirrors the encoder's stack."""

import math

import keras

from encoderkit.families.initializers import HostGlorotUniform
from encoderkit.families.layers import MaskingNoise


def dense_stack(x, params, layers, seed):
    """Applies Dense (+ BatchNorm) + activation (+ Dropout) for each layer config in order."""
    regularizer = keras.regularizers.L2(params["l2"]) if params["l2"] > 0 else None
    for i, layer in enumerate(layers):
        x = keras.layers.Dense(
            int(layer["units"]),
            kernel_regularizer=regularizer,
            kernel_initializer=HostGlorotUniform(seed=seed_offset(seed, i)),
        )(x)
        if params["batch_norm"]:
            x = keras.layers.BatchNormalization()(x)
        x = keras.layers.Activation(layer["activation"])(x)
        if params["dropout"] > 0:
            x = keras.layers.Dropout(params["dropout"], seed=seed_offset(seed, 100 + i))(x)
    return x


def corrupt(x, family, params, seed):
    """Training-time input corruption for the denoising family; identity at inference."""
    if family != "denoising" or params["noise"] <= 0:
        return x
    if params["noise_type"] == "gaussian":
        return keras.layers.GaussianNoise(params["noise"], seed=seed)(x)
    if params["noise_type"] == "masking":
        return MaskingNoise(params["noise"], seed=seed)(x)
    raise ValueError(f"unknown noise_type {params['noise_type']!r} (known: gaussian, masking)")


def decode(code, params, input_dim, output_activation, seed):
    x = dense_stack(code, params, list(reversed(params["layers"])), seed_offset(seed, 200))
    return keras.layers.Dense(
        input_dim,
        activation=output_activation,
        kernel_initializer=HostGlorotUniform(seed=seed_offset(seed, 300)),
        name="reconstruction",
    )(x)


def build(family, params, input_shape, code_size, seed=None, output_activation="sigmoid"):
    input_dim = math.prod(input_shape)  # dense families flatten any data kind
    inputs = keras.Input((input_dim,), name="inputs")
    x = corrupt(inputs, family, params, seed)
    x = dense_stack(x, params, params["layers"], seed)
    sparse = family == "sparse" and params.get("l1", 0) > 0
    code = keras.layers.Dense(
        code_size,
        activation=params["code_activation"],
        activity_regularizer=keras.regularizers.L1(params["l1"]) if sparse else None,
        kernel_initializer=HostGlorotUniform(seed=seed_offset(seed, 50)),
        name="code",
    )(x)
    outputs = decode(code, params, input_dim, output_activation, seed)
    return keras.Model(inputs, outputs, name=family), keras.Model(inputs, code, name="encoder")


def seed_offset(seed, k):
    """Distinct but reproducible seeds per layer; None stays None (random)."""
    return None if seed is None else int(seed) + k
