"""Recurrent seq2seq autoencoder with LSTM, GRU or SimpleRNN cells.

The encoder reads the sequence (T x F; an image is read as H steps of W*C features) through a
stack of recurrent layers, the last returning its final output, then a Dense code. The
decoder repeats the code T times, runs the mirrored stack returning sequences, and a Dense
layer maps each step back to F features."""

import math

import keras

from encoderkit.families.conv import spatial_shape
from encoderkit.families.dense import seed_offset
from encoderkit.families.initializers import HostGlorotUniform, HostOrthogonal

CELLS = {"lstm": keras.layers.LSTM, "gru": keras.layers.GRU, "simple_rnn": keras.layers.SimpleRNN}


def build(family, params, input_shape, code_size, seed=None, output_activation="sigmoid"):
    steps, features = spatial_shape("seq2seq", input_shape)
    if params["cell"] not in CELLS:
        raise ValueError(f"unknown cell {params['cell']!r} (known: {', '.join(CELLS)})")
    cell = CELLS[params["cell"]]
    size = math.prod(input_shape)
    layers = params["layers"] or [{"units": code_size, "activation": "tanh"}]

    inputs = keras.Input((size,), name="inputs")
    x = keras.layers.Reshape((steps, features))(inputs)
    for i, layer in enumerate(layers):
        x = _recurrent(cell, layer, params, return_sequences=i < len(layers) - 1, seed=seed_offset(seed, i))(x)
        x = keras.layers.BatchNormalization()(x) if params["batch_norm"] else x
    code = keras.layers.Dense(
        code_size, activation=params["code_activation"],
        kernel_initializer=HostGlorotUniform(seed=seed_offset(seed, 50)), name="code",
    )(x)
    x = keras.layers.RepeatVector(steps)(code)
    for i, layer in enumerate(reversed(layers)):
        x = _recurrent(cell, layer, params, return_sequences=True, seed=seed_offset(seed, 200 + i))(x)
        x = keras.layers.BatchNormalization()(x) if params["batch_norm"] else x
    x = keras.layers.Dense(
        features, activation=output_activation,
        kernel_initializer=HostGlorotUniform(seed=seed_offset(seed, 300)),
    )(x)
    outputs = keras.layers.Reshape((size,), name="reconstruction")(x)
    return keras.Model(inputs, outputs, name=family), keras.Model(inputs, code, name="encoder")


def _recurrent(cell, layer, params, return_sequences, seed):
    regularizer = keras.regularizers.L2(params["l2"]) if params["l2"] > 0 else None
    return cell(
        int(layer["units"]), activation=layer["activation"], return_sequences=return_sequences,
        dropout=params["dropout"], kernel_regularizer=regularizer, seed=seed,
        kernel_initializer=HostGlorotUniform(seed=seed),
        recurrent_initializer=HostOrthogonal(seed=seed_offset(seed, 1000)),
    )
