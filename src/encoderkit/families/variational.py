"""Variational autoencoder on a dense stack; the encoder returns the posterior mean."""

import math

import keras

from encoderkit.families.dense import seed_offset, decode, dense_stack
from encoderkit.families.initializers import HostGlorotUniform
from encoderkit.families.layers import GaussianSampling


def build(family, params, input_shape, code_size, seed=None, output_activation="sigmoid"):
    input_dim = math.prod(input_shape)  # dense families flatten any data kind
    inputs = keras.Input((input_dim,), name="inputs")
    x = dense_stack(inputs, params, params["layers"], seed)
    mean = keras.layers.Dense(
        code_size, kernel_initializer=HostGlorotUniform(seed=seed_offset(seed, 50)), name="code_mean"
    )(x)
    log_var = keras.layers.Dense(
        code_size, kernel_initializer="zeros", bias_initializer="zeros", name="code_log_var"
    )(x)
    z = GaussianSampling(params["beta"], input_dim, seed=seed_offset(seed, 400), name="sampling")(
        [mean, log_var]
    )
    outputs = decode(z, params, input_dim, output_activation, seed)
    return keras.Model(inputs, outputs, name=family), keras.Model(inputs, mean, name="encoder")
