"""Under Keras' JAX backend the autoencoder trains on full batches only, so its train and test
steps compile once per model (tests/search/test_compile_cache.py counts the compilations)."""

import numpy as np
import pytest

from encoderkit.batches import FullBatches, training_data, trim_to_batches


def test_each_epoch_is_a_new_permutation_cut_into_full_batches():
    X = np.arange(23, dtype="float32").reshape(-1, 1)
    batches = FullBatches(X, batch_size=5, seed=0)
    assert len(batches) == 4
    seen, epochs = [], []
    for _ in range(6):
        rows = [batches[i] for i in range(len(batches))]
        assert all(x.shape == (5, 1) and np.array_equal(x, y) for x, y in rows)
        epoch = np.concatenate([x for x, _ in rows]).ravel()
        assert len(set(epoch)) == 20  # no row twice in an epoch
        epochs.append(tuple(sorted(epoch)))
        seen.extend(epoch)
        batches.on_epoch_end()
    assert len(set(epochs)) > 1  # the rows left out differ from epoch to epoch
    assert set(seen) == set(range(23))


def test_fit_arguments_by_backend():
    train, valid = np.zeros((70, 3)), np.ones((30, 3))
    plain = training_data("tensorflow", train, valid, 16, seed=0)
    assert plain["x"] is train and plain["batch_size"] == 16 and plain["shuffle"] is True
    assert plain["validation_data"][0] is valid
    jax = training_data("jax", train, valid, 16, seed=0)
    assert isinstance(jax["x"], FullBatches) and len(jax["x"]) == 4
    assert len(jax["validation_data"][0]) == 16 and jax["validation_batch_size"] == 16
    assert training_data("jax", train, None, 16, seed=0)["validation_data"] is None
    assert len(trim_to_batches(valid, 64)) == 30  # one batch: its own shape, compiled once


def test_a_batch_larger_than_the_rows_is_refused():
    with pytest.raises(ValueError, match="batch_size"):
        FullBatches(np.zeros((3, 2)), batch_size=4, seed=0)
