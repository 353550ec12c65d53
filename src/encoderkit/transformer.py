"""`AutoencoderTransformer`: any registered autoencoder family as a scikit-learn transformer.

Follows sklearn's estimator contract: `__init__` only stores its arguments, `fit` validates,
builds and trains the Keras model and sets attributes ending in `_`, `transform` returns the
codes. A fitted transformer pickles (Keras 3 models implement `__reduce__`), clones and refits.
"""

from __future__ import annotations

import time
import weakref
from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.preprocessing import MinMaxScaler, QuantileTransformer, StandardScaler
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions  # scikit-learn's constraint grammar
from sklearn.utils.validation import _check_feature_names_in, check_is_fitted, validate_data

from encoderkit.batches import training_data
from encoderkit.data import check_frame, first_non_finite, names_features, unequal_samples
from encoderkit.errors import DataError, TrainingError
from encoderkit.families import FAMILIES, OPTIMIZERS, get_family
from encoderkit.fit_state import kept_on_failure
from encoderkit.series_scaler import SeriesStandardScaler

# Each scaling's scaler, from the rows' count, a seed and one sample's shape.
SCALINGS = {
    "minmax": lambda n_rows, seed, shape: MinMaxScaler(),
    "standard": lambda n_rows, seed, shape: StandardScaler(),
    # Ranks mapped to [0, 1]: tames heavy tails and turns zero-inflated columns (many exact
    # zeros, then a spread) into a step the network can pick up.
    "quantile": lambda n_rows, seed, shape: QuantileTransformer(n_quantiles=min(1000, n_rows), random_state=seed),
    # Each series z-normalised per channel (sequences; a flat row counts as one channel).
    "series": lambda n_rows, seed, shape: SeriesStandardScaler(channels=shape[-1] if len(shape) > 1 else 1),
}
# The scaler class behind each scaling (an export rebuilds its scaler from these only).
SCALER_CLASSES = {"minmax": MinMaxScaler, "standard": StandardScaler, "quantile": QuantileTransformer,
                  "series": SeriesStandardScaler}
# The decoder's last activation must be able to reach the scaled input range.
OUTPUT_ACTIVATION = {"minmax": "sigmoid", "standard": "linear", "quantile": "sigmoid", "series": "linear"}
MIN_ROWS_FOR_VALIDATION = 20


class AutoencoderTransformer(TransformerMixin, BaseEstimator):
    """Learns an autoencoder on X (unsupervised) and transforms X into its codes.

    Parameters
    ----------
    family : str
        A registered family: dense, denoising, sparse, vae, conv1d, conv2d, seq2seq
        (`encoderkit.families.FAMILIES`).
    code_size : int
        Width of the code (the transformer's output, plus the inputs if `include_input`).
    family_params : dict or None
        The family's parameters, e.g. ``{"layers": [{"units": 128, "activation": "relu"}],
        "dropout": 0.1}``; missing ones take the family's defaults.
    epochs, batch_size, learning_rate, optimizer
        Training settings. Training stops early when the reconstruction loss on a held-out
        `validation_fraction` of the rows has not improved for `patience` epochs, and the best
        weights are kept.
    input_shape : tuple or None
        Shape of one sample before flattening, e.g. ``(28, 28, 1)`` for images or ``(T, F)``
        for sequences; X stays 2-D (n_samples, prod(input_shape)) and the model reshapes
        inside, so the export needs nothing else. None means flat tabular rows.
    scaling : {"minmax", "standard", "quantile", "series"}
        Input scaling learned in `fit` (the decoder's output activation follows it); "series"
        z-normalises each sample on its own, channel by channel (for sequences).
    include_input : bool
        Output the inputs, as given, before the code (a FeatureUnion of passthrough and
        code): the code adds to the inputs instead of replacing them.
    random_state : int, RandomState or None
        Seeds weights, noise and shuffling; an int makes `fit` repeatable on CPU.
    verbose : int
        Keras' verbosity during fit.
    """

    # What each parameter may take, in scikit-learn's grammar: `fit` checks them
    # (`_validate_params`), and the search's space parser checks a space's values against them.
    _parameter_constraints = {
        "family": [StrOptions(set(FAMILIES))],
        "code_size": [Interval(Integral, 1, None, closed="left")],
        "family_params": [dict, None],
        "epochs": [Interval(Integral, 1, None, closed="left")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "learning_rate": [Interval(Real, 0, None, closed="neither")],
        "optimizer": [StrOptions(set(OPTIMIZERS))],
        "input_shape": [tuple, list, None],
        "scaling": [StrOptions(set(SCALINGS))],
        "include_input": ["boolean"],
        "validation_fraction": [Interval(Real, 0, 1, closed="left")],
        "patience": [Interval(Integral, 1, None, closed="left")],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        family="dense",
        code_size=32,
        family_params=None,
        epochs=30,
        batch_size=64,
        learning_rate=1e-3,
        optimizer="adam",
        input_shape=None,
        scaling="minmax",
        include_input=False,
        validation_fraction=0.1,
        patience=5,
        random_state=None,
        verbose=0,
    ):
        self.family = family
        self.code_size = code_size
        self.family_params = family_params
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.optimizer = optimizer
        self.input_shape = input_shape
        self.scaling = scaling
        self.include_input = include_input
        self.validation_fraction = validation_fraction
        self.patience = patience
        self.random_state = random_state
        self.verbose = verbose

    def fit(self, X, y=None, callbacks=None):
        """Trains the autoencoder on X; y is ignored. `callbacks` are extra Keras callbacks
        (the search uses one to score the code at checkpoints while training). A fit that is
        refused or fails leaves a fitted encoder as it was: scikit-learn's `validate_data`
        records the new input's width and names before our own checks could refuse it."""
        with kept_on_failure(self):
            return self._fit(X, callbacks)

    def _fit(self, X, callbacks):
        from encoderkit.quiet import import_keras_quietly, set_random_seed_quietly

        keras = import_keras_quietly()

        started = time.perf_counter()
        X = _nested_samples_as_array(X)  # lists of (T, F) samples, as transform takes them
        given_shape = tuple(X.shape[1:]) if _dims(X) > 2 else None
        self._validate_params()
        X, columns = _checked_columns(X)
        X = validate_data(self, _flat(X), dtype=[np.float64, np.float32], ensure_all_finite=False)
        _refuse_non_finite(X, given_shape, columns)
        shape = self._sample_shape(X.shape[1], given_shape)
        self.sample_shape_ = given_shape or shape  # one sample as given; transform takes it or flat rows
        params = get_family(self.family).resolve(self.family_params)
        rng = check_random_state(self.random_state)
        seed = int(rng.randint(0, 2**31 - 1))
        set_random_seed_quietly(seed)

        self.scaler_ = SCALINGS[self.scaling](len(X), seed, shape).fit(X)
        Xs = self._scaled(X)
        train, valid = _split_validation(Xs, self.validation_fraction, rng)
        prepared = time.perf_counter()

        autoencoder, encoder = get_family(self.family).builder()(
            self.family,
            params,
            input_shape=shape,
            code_size=int(self.code_size),
            seed=seed,
            output_activation=OUTPUT_ACTIVATION[self.scaling],
        )
        autoencoder.compile(optimizer=self._make_optimizer(keras), loss="mse")
        self.autoencoder_, self.encoder_ = autoencoder, encoder
        self.n_features_out_ = int(self.code_size) + (X.shape[1] if self.include_input else 0)
        built = time.perf_counter()

        monitor = "val_loss" if valid is not None else "loss"
        data = training_data(keras.backend.backend(), train, valid, min(int(self.batch_size), len(train)), seed)
        history = autoencoder.fit(
            **data,
            epochs=int(self.epochs),
            verbose=self.verbose,
            callbacks=[
                _stop_on_nan(keras),
                keras.callbacks.EarlyStopping(
                    monitor=monitor, patience=int(self.patience), restore_best_weights=True
                ),
                *(callbacks or []),
            ],
        )
        self.history_ = {k: [float(v) for v in vals] for k, vals in history.history.items()}
        # Where fit's time went (the search shows it per trial): scaling and splitting,
        # building and compiling the model, training (which includes Keras' tracing).
        self.fit_seconds_ = {"prepare": prepared - started, "build": built - prepared,
                             "train": time.perf_counter() - built}
        losses = self.history_.get("loss", [])
        if not losses or not np.all(np.isfinite(losses)):
            raise TrainingError(f"loss became NaN or infinite at epoch {len(losses)}")
        return self

    def transform(self, X):
        """Returns the codes of X (with the inputs first if `include_input`)."""
        check_is_fitted(self)
        X = _nested_samples_as_array(X)
        given_shape = tuple(X.shape[1:]) if _dims(X) > 2 else None  # where a NaN is named as the user has it
        X, columns = _checked_columns(self._as_fitted(X))
        X = validate_data(self, X, dtype=[np.float64, np.float32], reset=False, ensure_all_finite=False)
        _refuse_non_finite(X, given_shape, columns)
        codes = encode_in_chunks(self.encoder_, self._scaled(X, columns))
        if self._fitted_with_inputs():  # as fitted: `set_params(include_input=...)` waits for the next fit
            codes = np.hstack([np.asarray(X, dtype=np.float64), codes])
        return codes

    def _scaled(self, X, columns=None):
        """X in the units the autoencoder was trained in, as float32. A value beyond float32's
        range would become an infinite input and NaN codes, with only NumPy's warning. `columns`:
        a DataFrame's names, in the fitted order, to name the value's column by."""
        with np.errstate(over="ignore"):
            Xs = self.scaler_.transform(X).astype("float32")
        if not np.isfinite(Xs).all():
            row, column = map(int, np.argwhere(~np.isfinite(Xs))[0])
            where = f"column {columns[column]!r}, row {row}" if columns else f"row {row}, feature {column}"
            error = DataError(f"X: {where} ({float(np.asarray(X)[row, column]):g}) is beyond the "
                              "float32 range the encoder computes in, once scaled (the fit data's range of that "
                              "feature is far narrower: rescale it)")
            error.position = (row, column)  # for a caller that knows the rows' and columns' names
            raise error
        return Xs

    def _n_codes(self) -> int:
        return int(self.encoder_.outputs[0].shape[-1])

    def _fitted_with_inputs(self) -> bool:
        return self.n_features_out_ != self._n_codes()

    def reconstruct(self, X):
        """X passed through the whole autoencoder and back into X's units: what the code
        keeps of each sample (the report's input/reconstruction grid). In X's layout, so that
        `X - reconstruct(X)` works: flat rows for rows, (m, T, F) samples for samples of that
        shape, and for a DataFrame a DataFrame with the fitted columns and X's index (lined up
        by name whatever X's column order)."""
        check_is_fitted(self)
        given = X = _nested_samples_as_array(X)
        samples = tuple(X.shape) if _dims(X) > 2 else None  # an array of samples: rebuilt as such
        X, columns = _checked_columns(self._as_fitted(X))
        X = validate_data(self, X, dtype=[np.float64, np.float32], reset=False, ensure_all_finite=False)
        _refuse_non_finite(X, samples[1:] if samples else None, columns)  # as transform names it
        rebuilt = encode_in_chunks(self.autoencoder_, self._scaled(X, columns))
        if isinstance(self.scaler_, SeriesStandardScaler):  # per-row statistics: borrowed from X
            rebuilt = self.scaler_.restore(rebuilt, X)
        else:
            rebuilt = self.scaler_.inverse_transform(rebuilt)
        names = getattr(self, "feature_names_in_", None)
        if hasattr(given, "columns") and names is not None:
            import pandas as pd

            return pd.DataFrame(rebuilt, columns=list(names), index=given.index)
        return rebuilt if samples is None else rebuilt.reshape(samples)

    def _as_fitted(self, X):
        """X as the user has it, in the layout `fit` saw: a DataFrame's columns picked by name
        (in the fitted order; others, such as a target column, ignored), samples of the
        fitted shape ((m, T, F), (m, H, W, C)) flattened like the rows fit flattened."""
        names = getattr(self, "feature_names_in_", None)
        if names is not None and names_features(X):
            missing = [name for name in names if name not in X.columns]
            if missing:
                raise ValueError(f"X lacks column(s) {', '.join(map(repr, missing[:5]))}"
                                 f"{' and more' if len(missing) > 5 else ''}, which the encoder was fit on")
            return X[list(names)]
        X = _nested_samples_as_array(X)
        if _dims(X) <= 2:
            self._refuse_misshapen_rows(X)
            return X
        shape, sample = tuple(X.shape[1:]), self._fitted_sample()
        if _without_ones(shape) != _without_ones(sample):  # (m, 8, 8) images for (8, 8, 1), as fit takes them
            if _without_ones(X.shape) == _without_ones(sample):
                raise self._one_sample(X.shape)
            raise ValueError(f"X has samples of shape {shape}, but the encoder takes {self._what_it_takes()}")
        return _flat(X)

    def _refuse_misshapen_rows(self, X):
        """Rows that cannot be what fit saw, named in its terms where scikit-learn's message
        would not: one sample passed without its batch axis, rows of another width than the
        fitted samples, one 1-D row (scikit-learn prints the whole array)."""
        shape = getattr(X, "shape", None)
        if not isinstance(shape, tuple):
            return
        sample = self._fitted_sample()
        width = int(np.prod(sample))
        if len(shape) == 1 and shape[0] == width > 1:  # (one feature: a column or a row, sklearn asks)
            raise ValueError(f"X is one row of {width} values (1-D), but the encoder takes a batch of rows. "
                             "Reshape your data: X.reshape(1, -1)")  # scikit-learn's words, which its checks expect
        if len(sample) < 2 or len(shape) != 2:
            return  # tabular: scikit-learn names the number of features
        if _without_ones(shape) == _without_ones(sample) and shape[1] != width:  # (a (1, F) sample is a row too)
            raise self._one_sample(shape)
        if shape[1] != width:
            raise ValueError(f"X has rows of {shape[1]} values, but the encoder takes {self._what_it_takes()}")

    def _one_sample(self, shape) -> ValueError:
        sample = self._fitted_sample()
        return ValueError(f"X has shape {tuple(shape)}: one sample of the fitted shape, but the encoder takes a batch "
                          f"of samples: pass X[None] (shape (1, {', '.join(map(str, sample))}))")

    def _fitted_sample(self) -> tuple:
        """One sample's shape as fit saw it ((F,) for rows)."""
        return tuple(getattr(self, "sample_shape_", None) or (self.n_features_in_,))

    def _what_it_takes(self) -> str:
        sample = self._fitted_sample()
        return f"samples of shape {sample} (or flat rows of {int(np.prod(sample))} values)"

    def __getstate__(self):
        state = super().__getstate__()
        if "encoder_" not in state:
            return state
        # Unpickling rebuilds what a pickle references in order. Naming one of our custom Keras
        # layers first imports (and so registers) them before the models in the state are
        # rebuilt, so a bare `joblib.load` works without importing encoderkit beforehand.
        from encoderkit.families.layers import MaskingNoise
        from encoderkit.pickling import QuietTensorFlow  # pickling the models imports TensorFlow too

        return {"_quiet": QuietTensorFlow, "_custom_layers": MaskingNoise, **state}

    def __setstate__(self, state):
        state = dict(state)
        state.pop("_quiet", None)
        state.pop("_custom_layers", None)
        super().__setstate__(state)

    def get_feature_names_out(self, input_features=None):
        check_is_fitted(self)
        codes = [f"code{i}" for i in range(self._n_codes())]  # as fitted, like transform
        if not self._fitted_with_inputs():
            _check_feature_names_in(self, input_features, generate_names=False)
            return np.asarray(codes, dtype=object)
        inputs = _check_feature_names_in(self, input_features)
        return np.asarray([*inputs, *codes], dtype=object)

    def _sample_shape(self, n_features, given_shape=None):
        if self.input_shape is None:
            return tuple(given_shape) if given_shape else (n_features,)
        shape = tuple(int(s) for s in self.input_shape)
        if given_shape and _without_ones(given_shape) != _without_ones(shape):  # steps and channels mixed
            raise ValueError(f"X has samples of shape {tuple(given_shape)}, but input_shape={shape}")
        if int(np.prod(shape)) != n_features:
            raise ValueError(f"input_shape={shape} holds {int(np.prod(shape))} values but X has {n_features} features "
                             "(set_params(input_shape=None) fits rows of any width)")
        return shape

    def _make_optimizer(self, keras):
        lr = float(self.learning_rate)
        if self.optimizer == "sgd":
            return keras.optimizers.SGD(lr, momentum=0.9, nesterov=True)
        return {"adam": keras.optimizers.Adam, "rmsprop": keras.optimizers.RMSprop}[
            self.optimizer
        ](lr)


def _without_ones(shape) -> tuple:
    """A sample shape less its size-1 axes: (28, 28) images fit input_shape=(28, 28, 1)."""
    return tuple(int(s) for s in shape if int(s) != 1)


def _stop_on_nan(keras):
    """Keras' TerminateOnNaN without the line it prints on stdout: fit prints nothing, and a
    NaN loss ends as a TrainingError with its epoch."""

    class StopOnNaN(keras.callbacks.Callback):
        def on_batch_end(self, batch, logs=None):
            loss = (logs or {}).get("loss")
            if loss is not None and not np.isfinite(loss):
                self.model.stop_training = True

    return StopOnNaN()


def _nested_samples_as_array(X):
    """Nested lists of N-D samples as the array they spell; lists of rows as given (sklearn's
    validation judges them); ragged lists refused naming the first sample of another shape
    (numpy's own message speaks of an "inhomogeneous part")."""
    if isinstance(X, (list, tuple)):
        try:
            return np.asarray(X) if np.ndim(X) > 2 else X
        except ValueError:
            raise ValueError(unequal_samples(X)) from None
    return X


def _dims(X) -> int:
    """Dimensions of an array-like with a shape (lists and other inputs count as 2-D: sklearn's
    validation judges them)."""
    shape = getattr(X, "shape", None)
    return 2 if hasattr(X, "columns") or not isinstance(shape, tuple) else len(shape)


def _flat(X):
    """Rows of N-D samples flattened row-major (the model reshapes them back)."""
    # (not -1: no rows would leave it undefined; scikit-learn's validation then names the empty X)
    return np.reshape(X, (len(X), int(np.prod(X.shape[1:])))) if _dims(X) > 2 else X


def encode_in_chunks(encoder, X, chunk=4096):
    """Calls the encoder directly in chunks: for the small models searched here this is about
    ten times faster than `Model.predict`, whose per-call set-up dominates (TensorFlow)."""
    import keras
    from keras import ops

    if len(X) == 0:
        return np.zeros((0, encoder.output_shape[-1]))
    if keras.backend.backend() == "jax":
        return _encode_jax(encoder, X, chunk)
    if any(isinstance(layer, (keras.layers.RNN, keras.layers.Bidirectional)) for layer in encoder.layers):
        # A direct call steps a recurrent layer op by op through every time step: 10-13 s per
        # call on 2,000 steps, against 0.4 s for predict's compiled function.
        return encoder.predict(X, batch_size=chunk, verbose=0).reshape(len(X), -1).astype(np.float64)
    parts = [ops.convert_to_numpy(encoder(X[i : i + chunk], training=False)) for i in range(0, len(X), chunk)]
    return np.concatenate(parts).reshape(len(X), -1).astype(np.float64)


jitted_encoders = weakref.WeakKeyDictionary()


def _encode_jax(encoder, X, chunk):
    """Under JAX a direct call runs the model op by op, compiling each op for every new shape
    (encoding took 4.1 s per trial on an H200, DESIGN.md): here the encoder is one jitted
    function per model over chunks padded to one size, so a trial compiles it once for all its
    checkpoints and its final encode. On the CPU, where a padded forward pass costs more than
    a compile, rows are padded only to the next power of two."""
    import jax

    call = jitted_encoders.get(encoder)
    if call is None:
        model = weakref.ref(encoder)  # the cache must not keep the model alive
        call = jax.jit(lambda trainable, other, x: model().stateless_call(trainable, other, x, training=False)[0])
        jitted_encoders[encoder] = call
    trainable = [v.value for v in encoder.trainable_variables]
    other = [v.value for v in encoder.non_trainable_variables]
    size = min(chunk, 1 << (len(X) - 1).bit_length()) if jax.devices()[0].platform == "cpu" else chunk
    parts = []
    for start in range(0, len(X), size):
        part = X[start : start + size]
        if len(part) < size:
            part = np.concatenate([part, np.zeros((size - len(part), *part.shape[1:]), part.dtype)])
        parts.append(np.asarray(call(trainable, other, part))[: min(size, len(X) - start)])
    return np.concatenate(parts).reshape(len(X), -1).astype(np.float64)


def _split_validation(X, fraction, rng):
    """Holds out a random slice for early stopping; too few rows -> no slice."""
    n_valid = int(round(len(X) * float(fraction)))
    if len(X) < MIN_ROWS_FOR_VALIDATION or n_valid < 1:
        return X, None
    order = rng.permutation(len(X))
    return X[order[n_valid:]], X[order[:n_valid]]


def _checked_columns(X):
    """(X, its column names) for a DataFrame, with numbers in every column (`check_frame` names
    the column of a date, a text or a repeated name); (X, None) for arrays."""
    if not hasattr(X, "columns"):
        return X, None
    return check_frame(X), list(X.columns)


def _refuse_non_finite(X, sample_shape, columns=None):
    """One line naming the first NaN or inf in flat rows X: by its DataFrame column, or by its
    position in the samples of `sample_shape` where the user gave N-D samples (scikit-learn's
    message ran to three lines and suggested switching to HistGradientBoosting)."""
    found = first_non_finite(X, sample_shape or ())
    if found is not None:
        row, position, value = found
        if columns is not None:
            raise DataError(f"X: column {columns[position[0]]!r} has {value} in row {row} (X.iloc[{row}]; NaN or "
                            "inf not allowed: impute or drop them)")
        raise DataError(f"X: X[{', '.join(map(str, (row, *position)))}] is {value} (NaN or inf "
                        "not allowed: impute, drop or pad them)")
