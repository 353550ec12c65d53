"""Scores one candidate: fit the autoencoder on the search part (unsupervised), encode, and
score the probe by stratified k-fold CV on the codes. Intermediate probe scores, on a
stratified subsample, are reported while training so pruners work on the downstream score."""

from __future__ import annotations

import os
import time

import numpy as np

from encoderkit.probe import cv_score, resolve_probe
from search.errors import FailedTrial, PruneTrial
from search import compile_cache, devices, interrupts
from search.faults import MIN_SAVING_ENV, crash_point
from search.problem import rows_per_class, stratified_subsample
from search.suggest import transformer_params

CHECKPOINTS = 2  # intermediate scores per trial
SUBSAMPLE = 600  # rows used for an intermediate score
CHECKPOINT_FOLDS = 2  # cheap: the pruner needs a ranking, not a precise score
# Pruning can save at most the training still to come. Below this many seconds of it, an
# intermediate score costs more than it can save, so none is taken (insurance trials of 2 s
# spent a third of the engine's overhead on checkpoints; benchmarks/results/compare.md).
# Tests set it to 0 through the environment to check checkpoints on tiny models.
MIN_SAVING_SECONDS = 2.0
# ...and, by default, below this many times what the last checkpoint in this process cost: a
# pruned trial saves at most the training still to come, and only some trials are pruned, so a
# checkpoint dearer than a third of that is a loss (on a 300-row table they took up to 46% of
# a trial). Trials in one process share the probe and the checkpoint rows, so the cost carries over.
COST_RATIO = 3.0
_last_checkpoint = {"seconds": 0.0}


def checkpoint_worth_taking(training_left: float, last_cost: float, fixed_min_saving: float | None) -> bool:
    """Whether an intermediate score can repay itself. A fixed SEARCH_CHECKPOINT_MIN_SAVING is
    the whole rule (0 takes every one: a repeatable sequence, whatever the machine's speed)."""
    if fixed_min_saving is not None:
        return training_left >= fixed_min_saving
    return training_left >= max(MIN_SAVING_SECONDS, COST_RATIO * last_cost)


class _OutOfMemory(Exception):
    pass


def evaluate(problem, candidate: dict, seed: int, report=None) -> dict:
    """Returns {"score", "score_std", "epochs_run", "seconds": {...}}.

    Any failure inside the trial (NaN loss, a config the family cannot build, any exception)
    becomes `FailedTrial` with a one-line reason; `PruneTrial` from `report` passes through.
    Out of memory is retried once with half the batch size."""
    try:
        return _evaluate_once(problem, candidate, seed, report)
    except _OutOfMemory as exc:
        release_memory()
        half = int(candidate["training"]["batch_size"]) // 2
        if half < 1:
            raise FailedTrial(f"out of memory at batch size 1: {exc}") from None
        smaller = {**candidate, "training": {**candidate["training"], "batch_size": half}}
        try:
            outcome = _evaluate_once(problem, smaller, seed, report)
        except _OutOfMemory as again:
            raise FailedTrial(f"out of memory, also at batch size {half}: {again}") from None
        return {**outcome, "retried_batch_size": half}
    finally:
        release_memory()


def release_memory():
    """Drops what a finished trial held: Keras' global state and the trial's Python objects.
    TensorFlow itself keeps every traced `fit` function (about 6 MiB per trial, upstream
    tensorflow#61791, keras#17458; measured in benchmarks/results/memory.md): where that
    matters, `--fresh-process` runs each trial in its own process.

    One full collection per trial, then everything still alive (TensorFlow, Keras, sklearn,
    the data, and the functions TensorFlow keeps from this trial) is moved out of the
    collector's sight with `gc.freeze()`. Without it every full collection walks all that:
    0.4 s per collection after the imports alone, and growing with each trial TensorFlow
    keeps (frozen only once: 57 ms per trial early, 649 ms after 80 tiny trials; frozen after
    every trial: 22 ms flat; benchmarks/results/collector.md)."""
    global _heap_frozen
    import gc

    import keras

    keras.backend.clear_session(free_memory=False)
    gc.collect()
    gc.freeze()
    _heap_frozen = True


_heap_frozen = False


def thaw_heap():
    """Hands the frozen objects back to the garbage collector when a search ends, so a
    notebook that called `search.run` keeps its usual collector behaviour."""
    global _heap_frozen
    import gc

    if _heap_frozen:
        gc.unfreeze()
        _heap_frozen = False


def failure_reason(exc: BaseException) -> str:
    """`Type: first line of the message`, short enough for a leaderboard line."""
    lines = str(exc).strip().splitlines()
    text = f"{type(exc).__name__}: {lines[0] if lines else ''}".rstrip(": ")
    return text if len(text) <= 300 else text[:297] + "..."


def is_out_of_memory(exc: BaseException) -> bool:
    """TensorFlow's ResourceExhaustedError, JAX's RESOURCE_EXHAUSTED, torch's OutOfMemoryError,
    or the host's MemoryError."""
    if isinstance(exc, MemoryError) or type(exc).__name__ in ("ResourceExhaustedError", "OutOfMemoryError"):
        return True
    text = str(exc)
    return "RESOURCE_EXHAUSTED" in text or "out of memory" in text.lower()


def _evaluate_once(problem, candidate, seed, report):
    try:
        return _fit_and_score(problem, candidate, seed, report)
    except (FailedTrial, PruneTrial):
        raise
    except Exception as exc:  # the trial's failure, never the search's: record and go on
        if is_out_of_memory(exc):
            raise _OutOfMemory(failure_reason(exc)) from None
        raise FailedTrial(failure_reason(exc)) from None


def _fit_and_score(problem, candidate, seed, report):
    import keras

    from encoderkit.transformer import AutoencoderTransformer

    keras.backend.clear_session(free_memory=False)  # drop layer names; `release_memory` collects
    clock = compile_cache.enable()  # JAX only: a trial's compile seconds are shown apart
    X, y = problem.trial_X, problem.trial_y
    compiled = [compile_cache.seconds()]
    transformer = AutoencoderTransformer(**transformer_params(candidate, seed, problem.dataset.shape))
    callbacks = [interrupts.keras_callback()]
    if clock:  # compile seconds before training began belong to preparing and building the model
        mark = keras.callbacks.LambdaCallback(on_train_begin=lambda logs: compiled.append(compile_cache.seconds()))
        callbacks.append(mark)
    checkpoint = _checkpoint_callback(keras, transformer, problem, report) if report is not None else None
    if checkpoint is not None:
        callbacks.append(checkpoint)
    transformer.fit(X, callbacks=callbacks)
    fitted = time.perf_counter()
    compiled.append(compile_cache.seconds())
    codes = transformer.transform(X)
    if not np.all(np.isfinite(codes)):
        raise FailedTrial("the code has NaN or infinite values")
    encoded = time.perf_counter()
    compiled.append(compile_cache.seconds())
    mean, std = cv_score(codes, y, problem.metric, problem.folds, problem.seed, problem.probe, problem.probe_jobs)
    probed = time.perf_counter()
    compiled.append(compile_cache.seconds())
    interrupts.check()
    compile_parts = None
    if clock:
        setup, fit, encode, probe = np.diff(compiled)
        checkpoints = checkpoint.compile_seconds if checkpoint else 0.0
        build = min(setup, transformer.fit_seconds_["build"])  # Keras' eager ops compile as layers are built
        compile_parts = {"prepare": setup - build, "build": build, "fit": fit - checkpoints,
                         "checkpoints": checkpoints, "encode": encode, "probe": probe}
    return {
        "score": mean,
        "score_std": std,
        "probe": resolve_probe(problem.probe),
        "epochs_run": len(transformer.history_.get("loss", [])),
        "rows": int(len(y)),
        "threads": devices.intra_op_threads(),
        "seconds": cost_breakdown(transformer.fit_seconds_, checkpoint.seconds if checkpoint else 0.0,
                                  encoded - fitted, probed - encoded, compile_parts),
        # where the compile seconds fell: the model's programs (fit, encode) or the probe's
        **({"compile_by_stage": {k: round(max(0.0, v), 3) for k, v in compile_parts.items()}} if compile_parts else {}),
    }


def cost_breakdown(fit_parts: dict, checkpoints: float, encode: float, probe: float, compile_parts=None) -> dict:
    """Seconds per stage of a trial. "fit" is the training alone: the intermediate probe
    scores taken while training run inside Keras' fit and are counted as "checkpoints".
    With `compile_parts` (JAX: seconds spent compiling within each stage), those seconds move
    out of their stages into "compile"."""
    parts = {
        "prepare": fit_parts["prepare"], "build": fit_parts["build"], "fit": fit_parts["train"] - checkpoints,
        "checkpoints": checkpoints, "encode": encode, "probe": probe,
    }
    if compile_parts is not None:
        for stage, seconds in compile_parts.items():
            parts[stage] -= seconds
        parts["compile"] = sum(compile_parts.values())
    return {k: round(max(0.0, v), 3) for k, v in parts.items()}


def _checkpoint_callback(keras, transformer, problem, report):
    # every class in every checkpoint fold, also where the trial rows hold a rare one
    rows = stratified_subsample(problem.trial_y, SUBSAMPLE, problem.seed, rows_per_class(CHECKPOINT_FOLDS))
    X_sub, y_sub = problem.trial_X[rows], problem.trial_y[rows]
    epochs = int(transformer.epochs)
    every = -(-epochs // (CHECKPOINTS + 1))  # ceil: at most CHECKPOINTS reports
    fixed = os.environ.get(MIN_SAVING_ENV)
    fixed = float(fixed) if fixed is not None else None

    class ProbeCheckpoint(keras.callbacks.Callback):
        seconds = 0.0  # spent scoring checkpoints, inside Keras' fit
        compile_seconds = 0.0  # of which compiling (JAX)
        training_started = None

        def on_train_begin(self, logs=None):
            self.training_started = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            crash_point("epoch")
            done = epoch + 1
            if not np.isfinite((logs or {}).get("loss", 0.0)):
                return  # training stops here and `fit` reports the NaN
            if done % every or done >= epochs:
                return
            if not checkpoint_worth_taking(self._training_left(done), _last_checkpoint["seconds"], fixed):
                return
            started, compiled = time.perf_counter(), compile_cache.seconds()
            try:
                self._score(done)
            finally:
                cost = time.perf_counter() - started
                self.seconds += cost
                self.compile_seconds += compile_cache.seconds() - compiled
                _last_checkpoint["seconds"] = cost

        def _training_left(self, done):
            """Seconds of training still to come at the pace so far (an upper bound: early
            stopping may end it sooner)."""
            trained = time.perf_counter() - self.training_started - self.seconds
            return trained / done * (epochs - done)

        def _score(self, done):
            codes = transformer.transform(X_sub)
            if not np.all(np.isfinite(codes)):
                raise FailedTrial(f"the code has NaN or infinite values at epoch {done}")
            score, _ = cv_score(
                codes, y_sub, problem.metric, CHECKPOINT_FOLDS, problem.seed, problem.probe, problem.probe_jobs
            )
            report(done, score)  # may raise PruneTrial

    return ProbeCheckpoint()
