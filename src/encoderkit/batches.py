"""Training data for Keras' JAX backend: every batch of one shape, so `fit` compiles its
train step (and its validation step) once per model.

JAX compiles a program per input shape. With the rows handed to `fit` as they are, the last
batch of an epoch is smaller unless the row count divides evenly, and Keras compiled the train
step and the test step a second time for it (measured here for a small conv autoencoder on the
CPU: 2 x 0.74 s for the train step; a first epoch carried 3-9 s of compilation on an H100,
DESIGN.md). Under TensorFlow Keras traces the smaller batch once and then relaxes the batch
dimension, and torch does not compile: they get the rows as they are.

The rows stay arrays that Keras itself shuffles and slices each epoch (a `PyDataset` drawing
a new permutation per epoch would do the same with a Python call per batch)."""

from __future__ import annotations

import numpy as np


def fill_to_batches(X, batch_size: int, seed: int):
    """X with rows drawn at random from it appended (no row twice among them), up to a
    multiple of `batch_size`: each epoch, every row once and those few twice, as many steps as
    X alone takes, all batches full."""
    short = -len(X) % batch_size
    if not short:
        return X
    extra = np.random.default_rng([int(seed), 1]).choice(len(X), size=short, replace=False)  # apart from the weights' seeds
    return np.concatenate([X, X[extra]])


def validation_batches(n_rows: int, batch_size: int) -> tuple[int, int]:
    """(rows kept, batch size) for evaluating `n_rows` in batches of one size, as many batches
    as `batch_size` would make: fewer rows than batches are left out (always the same ones)."""
    batches = -(-n_rows // batch_size)
    size = n_rows // batches
    return batches * size, size


def training_data(keras_backend: str, train, valid, batch_size: int, seed: int) -> dict:
    """`fit`'s keyword arguments for the training and validation rows of an autoencoder."""
    data = {"batch_size": batch_size, "shuffle": True}
    if keras_backend == "jax":
        train = fill_to_batches(train, batch_size, seed)
        if valid is not None:
            kept, size = validation_batches(len(valid), batch_size)
            valid = valid[:kept]
            data["validation_batch_size"] = size
    return {**data, "x": train, "y": train, "validation_data": None if valid is None else (valid, valid)}
