"""Training data for Keras' JAX backend: every batch of one shape, so `fit` compiles its
train step (and its validation step) once per model.

JAX compiles a program per input shape. With the rows handed to `fit` as arrays, the last
batch of an epoch is smaller unless the row count divides evenly, and Keras compiled the train
step and the test step twice per model (measured here: 2 x 0.75 s on the CPU for a small conv
autoencoder; a first epoch carried 3-9 s of compilation on an H100, DESIGN.md). TensorFlow
relaxes the batch dimension instead, and torch does not compile: they keep the arrays."""

from __future__ import annotations

import keras
import numpy as np


class FullBatches(keras.utils.PyDataset):
    """(X, X) in `len(X) // batch_size` batches of `batch_size` rows from a new permutation
    each epoch. The remainder (fewer than `batch_size` rows, different ones each epoch) is left
    out of that epoch only, as `drop_last` does in PyTorch's DataLoader."""

    def __init__(self, X, batch_size: int, seed: int):
        super().__init__()
        if not 1 <= batch_size <= len(X):
            raise ValueError(f"batch_size must be between 1 and the {len(X)} rows, got {batch_size}")
        self.X, self.batch_size = X, int(batch_size)
        self._rng = np.random.default_rng(seed)
        self._order = self._rng.permutation(len(X))

    def __len__(self):
        return len(self.X) // self.batch_size

    def __getitem__(self, index):
        rows = self.X[np.sort(self._order[index * self.batch_size : (index + 1) * self.batch_size])]
        return rows, rows

    def on_epoch_end(self):
        self._order = self._rng.permutation(len(self.X))


def trim_to_batches(X, batch_size: int):
    """The first whole batches of X (all of X when it holds no more than one batch), so
    evaluating it in `batch_size` batches meets one shape."""
    if len(X) <= batch_size:
        return X
    return X[: len(X) // batch_size * batch_size]


def training_data(keras_backend: str, train, valid, batch_size: int, seed: int) -> dict:
    """`fit`'s keyword arguments for the training and validation rows of an autoencoder."""
    validation = None if valid is None else (valid, valid)
    if keras_backend != "jax":
        return {"x": train, "y": train, "validation_data": validation, "batch_size": batch_size, "shuffle": True}
    if valid is not None:
        valid = trim_to_batches(valid, batch_size)
        validation = (valid, valid)
    return {"x": FullBatches(train, batch_size, seed), "validation_data": validation,
            "validation_batch_size": min(batch_size, len(valid)) if valid is not None else None}
