"""Baselines scored with the same probe protocol as the autoencoders: raw features, PCA, and
handcrafted features where a dataset defines them."""

from functools import partial

import numpy as np
from sklearn.decomposition import PCA
from sklearn.preprocessing import FunctionTransformer


def raw():
    return FunctionTransformer()


def pca():
    """PCA keeping 99% of the variance."""
    return PCA(n_components=0.99, svd_solver="full")


def sequence_summaries(X, steps, channels):
    """Per channel over the time steps: sum, median, max and sample variance (the article's
    handcrafted insurance features: 3 channels x 4 statistics = 12 columns)."""
    X = np.asarray(X, dtype=np.float64).reshape(len(X), steps, channels)
    return np.hstack([X.sum(1), np.median(X, 1), X.max(1), X.var(1, ddof=1)])


HANDCRAFTED = {"insurance": partial(sequence_summaries, steps=4, channels=3)}
BASELINES = {"raw": raw, "pca": pca}


def baselines_for(dataset) -> dict:
    """Name -> factory of an unfitted transformer, for every baseline that applies."""
    found = dict(BASELINES)
    if dataset.handcrafted in HANDCRAFTED:
        found["handcrafted"] = partial(FunctionTransformer, HANDCRAFTED[dataset.handcrafted])
    return found
