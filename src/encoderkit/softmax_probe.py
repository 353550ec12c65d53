"""A softmax (multinomial logistic) probe trained with Keras, for accelerators: the same model
as the reference logistic regression, fitted by minibatch Adam on the device the autoencoder
used, instead of lbfgs on the host CPU (55 s vs 12 s on 60k x 3136 codes on an H100; DESIGN.md)."""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.multiclass import unique_labels
from sklearn.utils.validation import check_is_fitted, validate_data


class SoftmaxProbe(ClassifierMixin, BaseEstimator):
    """Softmax regression with a small L2 penalty, trained for `steps` minibatch steps over
    reshuffled passes of the rows: what convergence needs depends on steps, not on the
    dataset's size. Steps go through `train_on_batch`, one compiled step each: as Keras epochs
    (one batch each on a few hundred rows) their per-epoch overhead took a minute per fit on a
    CPU, 14 times the steps themselves."""

    def __init__(self, steps=2000, batch_size=512, learning_rate=1e-2, l2=1e-5, random_state=0):
        self.steps = steps
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.l2 = l2
        self.random_state = random_state

    def fit(self, X, y):
        import keras

        from encoderkit.quiet import set_random_seed_quietly

        X, y = validate_data(self, X, y, dtype=np.float32)
        self.classes_ = unique_labels(y)
        target = np.searchsorted(self.classes_, y)
        set_random_seed_quietly(int(self.random_state))
        self.model_ = keras.Sequential([
            keras.Input((X.shape[1],)),
            keras.layers.Dense(len(self.classes_), activation="softmax",
                               kernel_regularizer=keras.regularizers.L2(float(self.l2))),
        ])
        self.model_.compile(optimizer=keras.optimizers.Adam(float(self.learning_rate)),
                            loss="sparse_categorical_crossentropy")
        batch = min(int(self.batch_size), len(X))
        rows = _shuffled_batches(len(X), batch, np.random.default_rng(int(self.random_state)))
        for _ in range(int(self.steps)):
            index = next(rows)
            self.model_.train_on_batch(X[index], target[index])
        return self

    def predict_proba(self, X):
        from keras import ops

        check_is_fitted(self)
        X = validate_data(self, X, dtype=np.float32, reset=False)
        return np.asarray(ops.convert_to_numpy(self.model_(X, training=False)), dtype=np.float64)

    def predict(self, X):
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]


def _shuffled_batches(n, batch, rng):
    """Row indices in batches of exactly `batch` (one compiled shape), cut from a stream of
    permutations of the n rows, so every row is seen once per pass."""
    stream = np.empty(0, dtype=np.intp)
    while True:
        while len(stream) < batch:
            stream = np.concatenate([stream, rng.permutation(n)])
        yield stream[:batch]
        stream = stream[batch:]
