"""`SeriesStandardScaler`: each series standardised on its own, channel by channel.

Column scalers (MinMaxScaler, StandardScaler) put every time step on one scale across series, so
a series' offset and amplitude stay in its values. What tells series classes apart is mostly
their shape, which is why the UCR archive z-normalises each series and why nearest-neighbour
and MiniRocket baselines compare series after it. Stateless apart from the layout it was fit on,
so it exports as plain numbers."""

from __future__ import annotations

from numbers import Integral

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils._param_validation import Interval  # scikit-learn's constraint grammar
from sklearn.utils.validation import check_is_fitted, validate_data

# A (nearly) constant channel is centred, not blown up: its spread counts as at least this.
MIN_SPREAD = 1e-8


class SeriesStandardScaler(TransformerMixin, BaseEstimator):
    """Rows are flattened series (steps x channels, row-major, as the transformer flattens a
    (T, F) sample); each row's channels get mean 0 and standard deviation 1 over its steps.

    Parameters
    ----------
    channels : int
        Values per time step (F); the row's length must be a multiple of it.
    """

    _parameter_constraints = {"channels": [Interval(Integral, 1, None, closed="left")]}

    def __init__(self, channels=1):
        self.channels = channels

    def fit(self, X, y=None):
        self._validate_params()
        X = validate_data(self, X, dtype=[np.float64, np.float32])
        if X.shape[1] % int(self.channels):
            raise ValueError(f"X has {X.shape[1]} features, not a multiple of channels={self.channels}")
        if X.shape[1] == int(self.channels):  # every value is its own channel's mean: all zeros
            raise ValueError(f"series scaling standardises each series over its steps, and these series have "
                             f"one step ({X.shape[1]} feature(s), channels={self.channels}): every value would "
                             "become 0; use scaling='standard'")
        return self

    def transform(self, X):
        check_is_fitted(self)
        X = validate_data(self, X, dtype=[np.float64, np.float32], reset=False)
        series = self._series(X)
        mean, spread = _statistics(series)
        return ((series - mean) / spread).reshape(len(X), -1)

    def restore(self, X_scaled, like):
        """The inverse for rows whose statistics are known: X_scaled put back on the scale of
        each row of `like` (the series it was computed from). A per-row scaling has no
        inverse on its own, so the reconstruction of a series borrows its input's scale."""
        check_is_fitted(self)
        mean, spread = _statistics(self._series(np.asarray(like, dtype=np.float64)))
        scaled = self._series(np.asarray(X_scaled, dtype=np.float64))
        return (scaled * spread + mean).reshape(len(scaled), -1)

    def _series(self, X):
        return X.reshape(len(X), -1, int(self.channels))


def _statistics(series):
    """Each series' per-channel mean and spread over its steps (series: n x steps x channels)."""
    return series.mean(axis=1, keepdims=True), np.maximum(series.std(axis=1, keepdims=True), MIN_SPREAD)
