"""Scores one candidate: fit the autoencoder on the search part (unsupervised), encode, and
score the probe by stratified k-fold CV on the codes. Intermediate probe scores, on a
stratified subsample, are reported while training so pruners work on the downstream score."""

from __future__ import annotations

import time

import numpy as np

from encoderkit.errors import TrainingError
from encoderkit.probe import cv_score
from search.errors import FailedTrial
from search.suggest import transformer_params

CHECKPOINTS = 2  # intermediate scores per trial
SUBSAMPLE = 600  # rows used for an intermediate score
CHECKPOINT_FOLDS = 2  # cheap: the pruner needs a ranking, not a precise score


def evaluate(problem, candidate: dict, seed: int, report=None) -> dict:
    """Returns {"score", "score_std", "epochs_run", "seconds": {...}}; raises FailedTrial."""
    import keras

    from encoderkit.transformer import AutoencoderTransformer

    keras.backend.clear_session()  # drop the previous trial's graph and layer names
    X, y = problem.X, problem.y
    transformer = AutoencoderTransformer(**transformer_params(candidate, seed, problem.dataset.shape))
    callbacks = [] if report is None else [_checkpoint_callback(keras, transformer, problem, report)]
    started = time.perf_counter()
    try:
        transformer.fit(X, callbacks=callbacks)
    except TrainingError as exc:
        raise FailedTrial(str(exc)) from None
    except (ValueError, TypeError) as exc:  # a config the family cannot build
        raise FailedTrial(f"{type(exc).__name__}: {exc}") from None
    fitted = time.perf_counter()
    codes = transformer.transform(X)
    if not np.all(np.isfinite(codes)):
        raise FailedTrial("the code has NaN or infinite values")
    encoded = time.perf_counter()
    mean, std = cv_score(codes, y, problem.metric, problem.folds, problem.seed, problem.probe, problem.probe_jobs)
    probed = time.perf_counter()
    return {
        "score": mean,
        "score_std": std,
        "epochs_run": len(transformer.history_.get("loss", [])),
        "seconds": {
            "fit": round(fitted - started, 3),
            "encode": round(encoded - fitted, 3),
            "probe": round(probed - encoded, 3),
        },
    }


def _checkpoint_callback(keras, transformer, problem, report):
    rows = _stratified_subsample(problem.y, SUBSAMPLE, problem.seed)
    X_sub, y_sub = problem.X[rows], problem.y[rows]
    every = -(-int(transformer.epochs) // (CHECKPOINTS + 1))  # ceil: at most CHECKPOINTS reports

    class ProbeCheckpoint(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            done = epoch + 1
            if done % every or done >= int(transformer.epochs):
                return
            codes = transformer.transform(X_sub)
            if not np.all(np.isfinite(codes)):
                raise FailedTrial(f"the code has NaN or infinite values at epoch {done}")
            score, _ = cv_score(
                codes, y_sub, problem.metric, CHECKPOINT_FOLDS, problem.seed, problem.probe, problem.probe_jobs
            )
            report(done, score)  # may raise the backend's "prune" exception

    return ProbeCheckpoint()


def _stratified_subsample(y, size, seed):
    if len(y) <= size:
        return np.arange(len(y))
    from sklearn.model_selection import train_test_split

    rows, _ = train_test_split(np.arange(len(y)), train_size=size, stratify=y, random_state=seed)
    return np.sort(rows)
