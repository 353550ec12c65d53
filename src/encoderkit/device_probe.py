"""The reference probe's model fitted on the accelerator, all CV folds in one compiled program.

The reference probe is MinMaxScaler + multinomial LogisticRegression (L2, C=1) fitted by
lbfgs on the host CPU. On a GPU the Keras softmax probe trained it as thousands of one-batch
`fit` epochs, a Python round trip each, and cross-validation repeated that per fold: 79% of a
trial on an H200 went to probing (DESIGN.md). Here the k folds' heads are fitted together
by one jitted JAX program over codes uploaded once and kept on the device: per-fold min-max
scaling is an affine map folded into the weights (no scaled copies of the codes), each fold
is a row mask, and L-BFGS runs inside `lax.while_loop`, vmapped over the folds.

L-BFGS, not a fixed number of gradient steps (measured on 10k Fashion-MNIST pixels, 5 folds,
JAX on the CPU): 1000 accelerated (FISTA) steps ended at a loss of 0.2762 and 0.16 point of
accuracy below the reference, whose lbfgs reaches 0.2752; 500 full-batch Adam steps at 0.2800;
optax's L-BFGS with its zoom line search needed 12 times the seconds of a gradient step per
iteration. This one is within 0.1 point there. Its line search costs no extra pass over the
codes: logits are linear in the weights, so along a direction d they are `z + a * (X d)`, and
one product `X d` per iteration lets the loss be evaluated at many step sizes a on the
(n, classes) logits alone. An iteration costs two products with the codes, like a gradient
step, and converges like the reference solver (same objective, same stopping tolerance).

Shapes are padded to buckets (`bucket`; padded rows are in no fold, padded features are
constant zero and keep zero weight) so trials whose codes differ a little reuse one compiled
program, and JAX's persistent cache serves it to the next process. On an accelerator
compiling, not computing, is what a probe costs, so codes are padded much wider there
(`padded_width`): one program serves every code width of a search where memory allows.

Only the JAX backend of Keras runs this on the accelerator; JAX on the CPU runs it too (tests,
`probe: device_softmax`). Under Keras' torch and tensorflow backends `auto` keeps the Keras
softmax probe on an accelerator (encoderkit/softmax_probe.py)."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.multiclass import unique_labels
from sklearn.utils.validation import check_is_fitted, validate_data

# On an accelerator codes are padded to at least WIDE features while the padded copy stays
# within PADDED_BYTES: one H200 took about 9 s to compile each program, against a probe's
# 0.3 s of work, and 7,680 rows x 8,192 features (252 MB) cover the image space's codes
# (16..4096 units + 784 pixels) in one program (benchmarks/results/gpu.md).
WIDE = 8192
PADDED_BYTES = 1 << 30
HISTORY = 10  # L-BFGS memory, as scipy's default
MAX_ITER = 1000  # as the reference probe
TOL = 1e-4  # the reference's tolerance on the largest gradient entry (scikit-learn's lbfgs gtol)
# Step sizes tried along each direction, before a few Newton refinements of the best.
STEPS = tuple(2.0 ** -j for j in range(-2, 25, 2))
NEWTON = 4


def bucket(size: int, rows: bool, accelerator: bool = False) -> int:
    """Padded size: rows to a multiple of 256; features to 2^k or 1.5 * 2^k (at most half
    again: 18 widths cover the image space's codes of 16 to 4096 + 784 features).

    On an accelerator features go to a power of two of at least 256 (`padded_width` widens
    them further)."""
    if rows:
        return -(-size // 256) * 256
    if accelerator:
        return max(256, 1 << (max(size, 1) - 1).bit_length())
    unit = max(8, 2 ** max(0, int(np.log2(max(size, 1))) - 1))
    return -(-size // unit) * unit


def padded_width(size: int, padded_rows: int, accelerator: bool = False) -> int:
    """Features after padding: the bucket, and on an accelerator at least the widest power of
    two up to WIDE whose padded codes (`padded_rows` float32 rows) fit in PADDED_BYTES."""
    width = bucket(size, rows=False, accelerator=accelerator)
    if not accelerator:
        return width
    roomy = WIDE
    while roomy > width and padded_rows * roomy * 4 > PADDED_BYTES:
        roomy //= 2
    return max(width, roomy)


def fold_groups(n_rows: int, folds) -> np.ndarray:
    """Each row's test fold (0..k-1), or k for a row that trains every head, from k-fold
    (train, test) index pairs: every fold trains on all rows but its test rows."""
    groups = np.full(n_rows, len(folds), np.int32)
    for k, (train, test) in enumerate(folds):
        if len(train) + len(test) != n_rows or np.any(groups[test] != len(folds)):
            raise ValueError("folds must split the rows into disjoint test parts, each fold training on the rest")
        groups[test] = k
    return groups


@dataclass(frozen=True)
class Heads:
    """Fitted heads, one per mask, in the units of the codes given (scaling folded in)."""

    probabilities: np.ndarray  # (k, n_rows, n_classes): each head's class probabilities for every row
    coef: np.ndarray  # (k, n_features, n_classes)
    intercept: np.ndarray  # (k, n_classes)
    n_iter: np.ndarray  # (k,) L-BFGS iterations run


def fit_heads(X, y_index, n_classes: int, groups, n_folds: int = 1, C=1.0, max_iter=MAX_ITER, tol=TOL) -> Heads:
    """Fits `n_folds` heads at once on JAX's default device, head k on the rows of X whose
    group (`fold_groups`) is not k (y_index: class positions 0..n_classes-1)."""
    import jax
    import jax.numpy as jnp

    X = np.asarray(X, np.float32)
    n, d = X.shape
    accelerator = jax.default_backend() != "cpu"
    n_pad = bucket(n, rows=True)
    d_pad = padded_width(d, n_pad, accelerator)
    codes = np.zeros((n_pad, d_pad), np.float32)
    codes[:n, :d] = X
    onehot = np.zeros((n_pad, n_classes), np.float32)
    onehot[np.arange(n), y_index] = 1.0
    padded_groups = np.full(n_pad, n_folds + 1, np.int32)  # padding: a group no head trains on
    padded_groups[:n] = groups
    rows = np.array([np.sum((padded_groups != k) & (padded_groups <= n_folds)) for k in range(n_folds)], np.float32)
    # scikit-learn minimises C * sum(losses) + |W|^2 / 2; per row: mean loss + |W|^2 / (2 C n).
    # A binary target is one logistic column there, two softmax columns here, whose weights
    # settle at +-w/2: the penalty on them is half of |w|^2, so it is doubled to match.
    alpha = (1.0 if n_classes > 2 else 2.0) / (C * rows)
    probabilities, coef, intercept, n_iter = compiled_fit(int(max_iter), float(tol))(
        jnp.asarray(codes), jnp.asarray(onehot), jnp.asarray(padded_groups), jnp.asarray(alpha, jnp.float32)
    )
    return Heads(np.asarray(probabilities)[:, :n], np.asarray(coef)[:, :d], np.asarray(intercept), np.asarray(n_iter))


def cv_fold_scores(codes, y, splitter, metric: str) -> list[float]:
    """The metric on each fold's test rows, every fold's head fitted in one program."""
    from encoderkit.probe import metric_value

    y = np.asarray(y)
    folds = list(splitter.split(codes, y))
    classes, y_index = np.unique(y, return_inverse=True)
    heads = fit_heads(codes, y_index, len(classes), fold_groups(len(y), folds), len(folds))
    scores = []
    for k, (_, test) in enumerate(folds):
        proba = heads.probabilities[k][test]
        scores.append(metric_value(metric, y[test], classes[np.argmax(proba, axis=1)], proba, classes))
    return scores


class DeviceSoftmaxProbe(ClassifierMixin, BaseEstimator):
    """The reference probe's model (MinMaxScaler + LogisticRegression, L2, C) as one estimator
    fitted on JAX's default device; it scales the codes itself."""

    def __init__(self, C=1.0, max_iter=MAX_ITER, tol=TOL):
        self.C = C
        self.max_iter = max_iter
        self.tol = tol

    def fit(self, X, y):
        X, y = validate_data(self, X, y, dtype=[np.float64, np.float32])
        self.classes_ = unique_labels(y)
        heads = fit_heads(X, np.searchsorted(self.classes_, y), len(self.classes_), np.ones(len(X), np.int32),
                          C=float(self.C), max_iter=int(self.max_iter), tol=float(self.tol))  # group 1: train
        self.coef_, self.intercept_, self.n_iter_ = heads.coef[0], heads.intercept[0], heads.n_iter
        return self

    def predict_proba(self, X):
        check_is_fitted(self)
        X = validate_data(self, X, dtype=[np.float64, np.float32], reset=False)
        logits = np.asarray(X, np.float64) @ self.coef_ + self.intercept_
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        return p / p.sum(axis=1, keepdims=True)

    def predict(self, X):
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]


@functools.lru_cache(maxsize=None)
def compiled_fit(max_iter, tol):
    import jax

    fit_one = jax.vmap(functools.partial(_fit_one, max_iter=max_iter, tol=tol), in_axes=(None, None, 0, 0, 0, 0))

    def fit_all(X, Y, groups, alpha):
        masks, lo, hi = _fold_ranges(X, groups, alpha.shape[0])
        return fit_one(X, Y, masks, lo, hi, alpha)

    return jax.jit(fit_all)


def _fold_ranges(X, groups, n_folds):
    """Each head's training rows as a mask, and the per-feature minimum and maximum over them
    (MinMaxScaler's range), from one pass over X: the range of each group of rows first, then
    per head over the groups it trains on. (A masked minimum per head, vmapped, made XLA
    write the codes once per fold: 16 times their size in memory on the CPU.)"""
    import jax
    import jax.numpy as jnp

    segments = jnp.arange(n_folds + 2)  # test parts 0..k-1, rows every head trains on, padding
    trains = (segments[None, :] != jnp.arange(n_folds)[:, None]) & (segments[None, :] <= n_folds)
    group_min = jax.ops.segment_min(X, groups, num_segments=n_folds + 2)  # an empty group: +inf
    group_max = jax.ops.segment_max(X, groups, num_segments=n_folds + 2)
    lo = jnp.min(jnp.where(trains[:, :, None], group_min[None], jnp.inf), axis=1)
    hi = jnp.max(jnp.where(trains[:, :, None], group_max[None], -jnp.inf), axis=1)
    return trains[:, groups].astype(X.dtype), lo, hi


def _fit_one(X, Y, mask, lo, hi, alpha, max_iter, tol):
    import jax
    import jax.numpy as jnp
    from jax import lax

    hi_precision = lax.Precision.HIGHEST  # no TF32 on the GPU: the line search needs accurate logits
    dot = functools.partial(jnp.dot, precision=hi_precision)
    n_rows = jnp.sum(mask)
    # MinMaxScaler on this fold's rows, then centring (the intercept absorbs it, so the
    # optimum is the reference's): one affine map Z = X * r - c, applied inside products.
    span = hi - lo
    r = 1.0 / jnp.where(span > 0, span, 1.0)  # a constant feature keeps scale 1, as MinMaxScaler
    c = dot(mask, X) / n_rows * r  # the fold's mean of the scaled codes: min-max's shift cancels

    def linear(W, b):  # logits of all rows for weights (W, b) on the scaled, centred codes
        return dot(X, r[:, None] * W) - dot(c, W) + b

    def loss_and_residual(logits, W):
        log_p = jax.nn.log_softmax(logits)
        loss = -jnp.sum(mask * jnp.sum(Y * log_p, axis=1)) / n_rows + 0.5 * alpha * jnp.sum(W * W)
        residual = mask[:, None] * (jnp.exp(log_p) - Y) / n_rows
        return loss, residual

    def gradient(residual, W):
        back = dot(X.T, residual)
        total = jnp.sum(residual, axis=0)
        return r[:, None] * back - jnp.outer(c, total) + alpha * W, total

    def along(logits, delta, W, dW, a):
        """Loss and its first two derivatives along the direction at step a."""
        z = logits + a * delta
        log_p = jax.nn.log_softmax(z)
        p = jnp.exp(log_p)
        loss = -jnp.sum(mask * jnp.sum(Y * log_p, axis=1)) / n_rows
        loss += 0.5 * alpha * (jnp.sum(W * W) + 2 * a * jnp.sum(W * dW) + a * a * jnp.sum(dW * dW))
        pd = jnp.sum(p * delta, axis=1)
        slope = jnp.sum(mask * (pd - jnp.sum(Y * delta, axis=1))) / n_rows
        slope += alpha * (jnp.sum(W * dW) + a * jnp.sum(dW * dW))
        curve = jnp.sum(mask * (jnp.sum(p * delta * delta, axis=1) - pd * pd)) / n_rows + alpha * jnp.sum(dW * dW)
        return loss, slope, curve

    d, k = X.shape[1], Y.shape[1]
    W = jnp.zeros((d, k), X.dtype)
    b = jnp.zeros((k,), X.dtype)
    logits = linear(W, b)
    loss, residual = loss_and_residual(logits, W)
    gW, gb = gradient(residual, W)
    history = (jnp.zeros((HISTORY, d, k), X.dtype), jnp.zeros((HISTORY, k), X.dtype),
               jnp.zeros((HISTORY, d, k), X.dtype), jnp.zeros((HISTORY, k), X.dtype),
               jnp.zeros((HISTORY,), X.dtype))  # s_W, s_b, y_W, y_b, rho (0: empty slot)
    steps = jnp.asarray(STEPS, X.dtype)

    def direction(gW, gb, history, head):
        sW, sb, yW, yb, rho = history

        def newest_first(i, carry):
            qW, qb, alphas = carry
            j = (head - 1 - i) % HISTORY
            a = rho[j] * (jnp.sum(sW[j] * qW) + jnp.sum(sb[j] * qb))
            return qW - a * yW[j], qb - a * yb[j], alphas.at[j].set(a)

        qW, qb, alphas = lax.fori_loop(0, HISTORY, newest_first, (gW, gb, jnp.zeros((HISTORY,), X.dtype)))
        last = (head - 1) % HISTORY
        yy = jnp.sum(yW[last] ** 2) + jnp.sum(yb[last] ** 2)
        sy = jnp.where(rho[last] > 0, 1.0 / jnp.where(rho[last] > 0, rho[last], 1.0), 0.0)
        gamma = jnp.where(rho[last] > 0, sy / jnp.where(yy > 0, yy, 1.0), 1.0)
        qW, qb = gamma * qW, gamma * qb

        def oldest_first(i, carry):
            qW, qb = carry
            j = (head + i) % HISTORY
            beta = rho[j] * (jnp.sum(yW[j] * qW) + jnp.sum(yb[j] * qb))
            return qW + (alphas[j] - beta) * sW[j], qb + (alphas[j] - beta) * sb[j]

        qW, qb = lax.fori_loop(0, HISTORY, oldest_first, (qW, qb))
        return -qW, -qb

    def line_search(logits, delta, W, dW, loss):
        losses = jax.vmap(lambda a: along(logits, delta, W, dW, a)[0])(steps)
        best = jnp.argmin(losses)
        a, best_loss = steps[best], losses[best]

        def refine(i, carry):  # Newton on the step size, kept only where it lowers the loss
            a, best_loss = carry
            _, slope, curve = along(logits, delta, W, dW, a)
            trial = jnp.clip(a - slope / jnp.maximum(curve, 1e-12), 0.0, 2 * a + 1.0)
            trial_loss = along(logits, delta, W, dW, trial)[0]
            better = trial_loss < best_loss
            return jnp.where(better, trial, a), jnp.where(better, trial_loss, best_loss)

        a, best_loss = lax.fori_loop(0, NEWTON, refine, (a, best_loss))
        improved = best_loss < loss
        return jnp.where(improved, a, 0.0), jnp.where(improved, best_loss, loss), improved

    def not_done(state):
        it, _, _, _, _, gW, gb, _, _, stuck = state
        largest = jnp.maximum(jnp.max(jnp.abs(gW)), jnp.max(jnp.abs(gb)))
        return (it < max_iter) & (largest > tol) & ~stuck

    def step(state):
        it, W, b, logits, loss, gW, gb, history, head, stuck = state
        dW, db = direction(gW, gb, history, head)
        slope = jnp.sum(dW * gW) + jnp.sum(db * gb)
        dW, db = jnp.where(slope < 0, dW, -gW), jnp.where(slope < 0, db, -gb)  # not a descent: steepest
        delta = dot(X, r[:, None] * dW) - dot(c, dW) + db
        a, new_loss, improved = line_search(logits, delta, W, dW, loss)
        W2, b2, logits2 = W + a * dW, b + a * db, logits + a * delta
        _, residual = loss_and_residual(logits2, W2)
        gW2, gb2 = gradient(residual, W2)
        sW, sb, yW, yb = a * dW, a * db, gW2 - gW, gb2 - gb
        sy = jnp.sum(sW * yW) + jnp.sum(sb * yb)
        keep = improved & (sy > 1e-10)
        hs = history
        history = (hs[0].at[head].set(jnp.where(keep, sW, hs[0][head])),
                   hs[1].at[head].set(jnp.where(keep, sb, hs[1][head])),
                   hs[2].at[head].set(jnp.where(keep, yW, hs[2][head])),
                   hs[3].at[head].set(jnp.where(keep, yb, hs[3][head])),
                   hs[4].at[head].set(jnp.where(keep, 1.0 / jnp.where(keep, sy, 1.0), hs[4][head])))
        # No step lowered the loss: drop the history and go steepest; stuck if that failed too.
        was_steepest = jnp.all(hs[4] == 0)
        history = jax.tree.map(lambda h: jnp.where(improved, h, jnp.zeros_like(h)), history)
        head = jnp.where(keep, (head + 1) % HISTORY, head)
        return (it + 1, W2, b2, logits2, new_loss, gW2, gb2, history, head, ~improved & was_steepest)

    state = (jnp.asarray(0), W, b, logits, loss, gW, gb, history, jnp.asarray(0), jnp.asarray(False))
    it, W, b, logits = lax.while_loop(not_done, step, state)[:4]
    # In the codes' own units: Z W + b = X (r W) + (b - c W).
    return jax.nn.softmax(logits), r[:, None] * W, b - dot(c, W), it
