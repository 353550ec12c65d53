"""Baselines scored with the same probe protocol as the autoencoders: raw features, PCA,
handcrafted features where a dataset defines them, and MiniRocket's random convolutions for
sequences (where aeon is installed)."""

from functools import cache, partial

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.decomposition import PCA
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, MinMaxScaler
from sklearn.utils.validation import check_is_fitted


def raw():
    return FunctionTransformer()


def pca():
    """PCA keeping 99% of the variance of the inputs scaled as the encoders' are by default
    (MinMaxScaler): on unscaled columns in other units (age in years, income in thousands)
    the variance of the widest decided what was kept, and an informative narrow column was
    dropped (a table's PCA scored 0.68 against 0.90 for the raw columns)."""
    return make_pipeline(MinMaxScaler(), PCA(n_components=0.99, svd_solver="full"))


def sequence_summaries(X, steps, channels):
    """Per channel over the time steps: sum, median, max and sample variance (the article's
    handcrafted insurance features: 3 channels x 4 statistics = 12 columns)."""
    X = np.asarray(X, dtype=np.float64).reshape(len(X), steps, channels)
    return np.hstack([X.sum(1), np.median(X, 1), X.max(1), X.var(1, ddof=1)])


HANDCRAFTED = {"insurance": partial(sequence_summaries, steps=4, channels=3)}
BASELINES = {"raw": raw, "pca": pca}


# MiniRocket (Dempster et al. 2021; aeon's implementation): a fixed transform of 84 kernels of
# length 9 at several dilations, with biases taken from the data, whose features a linear model
# scores: the same shape of solution as a learned encoder under a linear probe, so the anchor
# for sequences. 10,000 kernels (9,996 features) is its published default; on the bundled UCR
# datasets (36-200 training series) it costs 0.1-1.2 s to transform and 0.3-6 s for the probe's
# 5-fold CV on 2 cores, and scores as high as 1,000 or 2,000 kernels or higher (OSULeaf 0.959
# against 0.942 with 1,000). On many rows the kernels shrink so that rows x features stays
# near MINIROCKET_VALUES (the probe's matrix), to no fewer than 1,000.
MINIROCKET_KERNELS = 10_000
MINIROCKET_MIN_KERNELS = 1_000
MINIROCKET_VALUES = 20_000_000
MINIROCKET_MIN_STEPS = 9  # its kernels' length; aeon refuses shorter series


class MiniRocketFeatures(TransformerMixin, BaseEstimator):
    """aeon's MiniRocket on rows of flattened sequences ((steps, channels) row-major, as every
    Dataset holds them): fit takes its dilations and biases from the rows it is given (no
    labels), transform returns MiniRocket's features. Seeded, so a refit on the same rows gives
    the same features."""

    def __init__(self, steps=None, channels=1, n_kernels=MINIROCKET_KERNELS, random_state=0):
        self.steps = steps
        self.channels = channels
        self.n_kernels = n_kernels
        self.random_state = random_state

    def fit(self, X, y=None):
        from aeon.transformations.collection.convolution_based import MiniRocket

        self.rocket_ = MiniRocket(n_kernels=self.n_kernels, n_jobs=1, random_state=self.random_state)
        self.rocket_.fit(self._series(X))
        return self

    def transform(self, X):
        check_is_fitted(self, "rocket_")
        return np.asarray(self.rocket_.transform(self._series(X)))

    def _series(self, X):
        """(n, channels, steps) float32, the layout aeon takes."""
        X = np.asarray(X, dtype=np.float32)
        return np.ascontiguousarray(X.reshape(len(X), int(self.steps), int(self.channels)).transpose(0, 2, 1))


def warm_minirocket():
    """Compiles MiniRocket's numba kernels (univariate and multivariate) into numba's on-disk
    cache: about 40 s and 15 s once per installation (2 cores), then under a second per
    process. `make setup` calls it so that no search or test pays the compilation."""
    rng = np.random.default_rng(0)
    for channels in (1, 2):
        MiniRocketFeatures(steps=16, channels=channels, n_kernels=84).fit_transform(rng.random((4, 16 * channels)))


def minirocket_kernels(n_rows: int) -> int:
    return int(np.clip(MINIROCKET_VALUES // max(1, n_rows), MINIROCKET_MIN_KERNELS, MINIROCKET_KERNELS))


@cache
def _aeon_problem():
    """Why MiniRocket cannot run here (None: it can)."""
    try:
        from aeon.transformations.collection.convolution_based import MiniRocket  # noqa: F401
    except ImportError as exc:
        return f"aeon is not installed ({exc}); `make setup` installs it"
    return None


def _minirocket_skip(dataset):
    """Why a sequence dataset gets no MiniRocket baseline (None: it gets one)."""
    if dataset.kind != "sequence":
        return None
    if dataset.shape[0] < MINIROCKET_MIN_STEPS:
        return f"its kernels span {MINIROCKET_MIN_STEPS} steps, these series have {dataset.shape[0]}"
    return _aeon_problem()


def baselines_for(dataset, n_fit_rows: int | None = None) -> dict:
    """Name -> factory of an unfitted transformer, for every baseline that applies.
    `n_fit_rows`: the most rows they fit on (a study's search part; default all the
    dataset's), which sets MiniRocket's kernel count: the held-out rows must not."""
    found = dict(BASELINES)
    if dataset.handcrafted in HANDCRAFTED:
        found["handcrafted"] = partial(FunctionTransformer, HANDCRAFTED[dataset.handcrafted])
    if dataset.kind == "sequence" and _minirocket_skip(dataset) is None:
        steps, channels = dataset.shape
        found["minirocket"] = partial(MiniRocketFeatures, steps=steps, channels=channels,
                                      n_kernels=minirocket_kernels(n_fit_rows or len(dataset.y)))
    return found


def baseline_notes(dataset) -> tuple:
    """One line per baseline that would apply to this kind of data but is skipped, and why."""
    reason = _minirocket_skip(dataset)
    return (f"no MiniRocket baseline: {reason}",) if reason else ()
