"""Under Keras' JAX backend the autoencoder trains on full batches only, so its train and test
steps compile once per model (tests/search/test_compile_cache.py counts the compilations)."""

import numpy as np

from encoderkit.batches import fill_to_batches, training_data, validation_batches


def test_rows_are_filled_up_to_whole_batches_with_distinct_rows_of_their_own():
    X = np.arange(23, dtype="float32").reshape(-1, 1)
    filled = fill_to_batches(X, batch_size=5, seed=0)
    assert len(filled) == 25 and np.array_equal(filled[:23], X)  # as many steps as X alone: 5
    extra = filled[23:].ravel()
    assert len(set(extra)) == 2 and set(extra) <= set(X.ravel())
    assert np.array_equal(fill_to_batches(X, 5, seed=0), filled)  # the seed fixes them
    whole = X[:20]
    assert fill_to_batches(whole, batch_size=5, seed=0) is whole  # whole batches already
    assert len(fill_to_batches(X, batch_size=23, seed=0)) == 23


def test_validation_rows_are_cut_into_equal_batches():
    assert validation_batches(127, 64) == (126, 63)  # one row left out, not 63
    assert validation_batches(500, 256) == (500, 250)
    assert validation_batches(30, 64) == (30, 30)
    assert validation_batches(128, 64) == (128, 64)
    for n, size in ((1000, 64), (333, 128), (7, 3)):
        kept, batch = validation_batches(n, size)
        assert kept % batch == 0 and n - kept < -(-n // size) and batch <= size


def test_fit_arguments_by_backend():
    train, valid = np.zeros((70, 3)), np.ones((30, 3))
    plain = training_data("tensorflow", train, valid, 16, seed=0)
    assert plain["x"] is train and plain["y"] is train and plain["batch_size"] == 16 and plain["shuffle"] is True
    assert plain["validation_data"][0] is valid and "validation_batch_size" not in plain
    jax = training_data("jax", train, valid, 16, seed=0)
    assert len(jax["x"]) == 80 and jax["y"] is jax["x"] and jax["shuffle"] is True
    assert len(jax["validation_data"][0]) == 30 and jax["validation_batch_size"] == 15
    assert training_data("jax", train, None, 16, seed=0)["validation_data"] is None
