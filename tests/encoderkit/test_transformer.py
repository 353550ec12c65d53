import os

import joblib
import numpy as np
import pytest
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline
from sklearn.utils.estimator_checks import parametrize_with_checks

from encoderkit import AutoencoderTransformer
from encoderkit.errors import DataError


def at_float32_precision(check, monkeypatch):
    """Codes are float32 from batched matrix products: another row order can change the last bit
    (measured in CI under load: 3 of 60 values off by 2.98e-08), beyond the rtol of 1e-7 that
    check_methods_sample_order_invariance uses; it passes on most runs, so it cannot be an
    expected failure either (xfail_strict). That check compares at float32's precision instead;
    rows out of order would still differ by far more."""
    import sklearn.utils.estimator_checks as checks

    if getattr(check, "func", check).__name__ == "check_methods_sample_order_invariance":
        exact = checks.assert_allclose_dense_sparse
        monkeypatch.setattr(checks, "assert_allclose_dense_sparse",
                            lambda x, y, **kwargs: exact(x, y, **{**kwargs, "rtol": 1e-5, "atol": 1e-6}))


@parametrize_with_checks([AutoencoderTransformer(code_size=3, epochs=2, random_state=0)])
def test_sklearn_contract(estimator, check, monkeypatch):
    at_float32_precision(check, monkeypatch)
    check(estimator)


def tiny(**kwargs):
    params = dict(code_size=4, epochs=3, random_state=0,
                  family_params={"layers": [{"units": 16, "activation": "relu"}]})
    return AutoencoderTransformer(**{**params, **kwargs})


def test_transform_gives_codes_of_the_declared_size(small_digits):
    X, _ = small_digits
    codes = tiny().fit(X).transform(X)
    assert codes.shape == (len(X), 4)
    assert np.all(np.isfinite(codes))


def test_include_input_puts_the_inputs_before_the_code(small_digits):
    X, _ = small_digits
    transformer = tiny(include_input=True).fit(X)
    out = transformer.transform(X)
    assert out.shape == (len(X), 64 + 4)
    np.testing.assert_allclose(out[:, :64], X)
    names = transformer.get_feature_names_out()
    assert list(names[:2]) == ["x0", "x1"] and names[-1] == "code3"


def test_pipeline_clone_refit_and_grid_search(small_digits):
    X, y = small_digits
    pipe = Pipeline([("ae", tiny()), ("clf", LogisticRegression(max_iter=500))]).fit(X, y)
    assert pipe.score(X, y) > 0.3
    refit = clone(pipe).fit(X, y)
    assert refit.named_steps["ae"].encoder_ is not pipe.named_steps["ae"].encoder_
    search = GridSearchCV(pipe, {"ae__code_size": [2, 4]}, cv=2).fit(X, y)
    best = search.best_estimator_.named_steps["ae"]  # refit with the winning value, which it uses
    assert best.transform(X).shape == (len(X), search.best_params_["ae__code_size"])
    low, high = search.cv_results_["mean_test_score"]
    assert low != high, "each grid value reached the autoencoder"


def test_joblib_round_trip_gives_identical_codes(small_digits, tmp_path):
    X, _ = small_digits
    transformer = tiny().fit(X)
    joblib.dump(transformer, tmp_path / "t.joblib")
    loaded = joblib.load(tmp_path / "t.joblib")
    np.testing.assert_array_equal(loaded.transform(X), transformer.transform(X))


def test_set_output_pandas_names_the_code_columns(small_digits):
    X, _ = small_digits
    frame = tiny().set_output(transform="pandas").fit(X).transform(X)
    assert list(frame.columns) == ["code0", "code1", "code2", "code3"]


def test_fit_is_repeatable_with_a_seed(small_digits):
    X, _ = small_digits
    np.testing.assert_allclose(tiny().fit(X).transform(X), tiny().fit(X).transform(X), atol=1e-5)


@pytest.mark.parametrize(
    "params, message",
    [
        # scikit-learn's own wording (`_parameter_constraints`), naming the parameter and value
        ({"optimizer": "adagrad"}, "'optimizer' parameter of AutoencoderTransformer must be a str among .* Got 'adagrad'"),
        ({"scaling": "robust"}, "'scaling' parameter .* Got 'robust'"),
        ({"family": "nope"}, "'family' parameter .* Got 'nope'"),
        ({"code_size": 0}, r"'code_size' parameter .* must be an int in the range \[1, inf\)\. Got 0"),
        ({"learning_rate": 0.0}, r"'learning_rate' parameter .* range \(0.0, inf\)\. Got 0.0"),
        # the family's own parameters, checked against what the family declares
        ({"family_params": {"unitz": 3}}, "no parameter 'unitz'"),
        ({"family_params": {"dropout": 2.0}}, r"family 'dense': dropout=2.0 must be a float in the range \[0.0, 0.99\]"),
        ({"family_params": {"layers": [{"units": 0}]}}, r"layers\[0\].units=0 must be an int in the range \[1, inf\)"),
    ],
)
def test_bad_settings_are_named_in_the_error(params, message, small_digits):
    X, _ = small_digits
    with pytest.raises(ValueError, match=message):
        tiny(**params).fit(X)


def test_transform_with_wrong_number_of_features_is_refused(small_digits):
    X, _ = small_digits
    transformer = tiny().fit(X)
    with pytest.raises(ValueError, match="features"):
        transformer.transform(X[:, :10])


def test_nan_loss_raises_training_error_and_prints_nothing(small_digits, capsys):
    from encoderkit import TrainingError

    X, _ = small_digits
    with pytest.raises(TrainingError, match="NaN"):
        tiny(learning_rate=1e12, optimizer="sgd", scaling="standard", epochs=5,
             family_params={"layers": [{"units": 16, "activation": "relu"}] * 2}).fit(X * 1e6)
    assert capsys.readouterr().out == ""  # Keras' TerminateOnNaN printed "Batch 0: Invalid loss, ..."


def test_quantile_scaling_trains_on_zero_inflated_columns():
    rng = np.random.default_rng(0)
    X = rng.exponential(10.0, (120, 6)) * (rng.random((120, 6)) < 0.4)  # mostly exact zeros
    transformer = tiny(scaling="quantile").fit(X)
    assert transformer.scaler_.n_quantiles_ == 120  # capped by the rows available
    scaled = transformer.scaler_.transform(X)
    assert scaled.min() >= 0 and scaled.max() <= 1
    assert transformer.transform(X).shape == (120, 4)


@pytest.mark.parametrize("family, params", [
    ("denoising", {"noise": 0.2, "noise_type": "masking", "layers": []}),  # custom MaskingNoise layer
    ("vae", {"layers": [{"units": 8, "activation": "relu"}]}),  # custom GaussianSampling layer
])
def test_bare_joblib_load_in_a_fresh_process_rebuilds_custom_layers(family, params, small_digits, tmp_path):
    """A user's process that never imported encoderkit can `joblib.load` a fitted transformer:
    the pickle itself registers our custom Keras layers before rebuilding the models."""
    import subprocess
    import sys

    from tests.conftest import ROOT, reload_check

    X, _ = small_digits
    fitted = AutoencoderTransformer(family=family, code_size=3, family_params=params, epochs=1,
                                    random_state=0).fit(X)
    code = "import sys; assert 'encoderkit' not in sys.modules;" + reload_check(fitted, X[:7], tmp_path)
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}  # as in a user's shell
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stderr == "", "TensorFlow's start-up lines on a bare joblib.load"


def test_a_refused_fit_leaves_a_fitted_encoder_as_it_was(small_digits):
    """scikit-learn's validate_data records the new width before input_shape can refuse it."""
    import pandas as pd

    X, y = small_digits
    frame = pd.DataFrame(X, columns=[f"px{i}" for i in range(64)])
    transformer = tiny(input_shape=(64,)).fit(frame)
    codes = transformer.transform(frame)
    with pytest.raises(ValueError, match=r"input_shape=\(64,\) holds 64 values but X has 65 features"):
        transformer.fit(frame.assign(label=y))  # the target column left in by mistake
    assert list(transformer.feature_names_in_) == list(frame.columns) and transformer.n_features_in_ == 64
    np.testing.assert_array_equal(transformer.transform(frame), codes)


def test_settings_changed_after_fit_wait_for_the_next_fit(small_digits):
    X, _ = small_digits
    transformer = tiny().fit(X)
    codes, names = transformer.transform(X), transformer.get_feature_names_out()
    transformer.set_params(code_size=2, include_input=True)
    np.testing.assert_array_equal(transformer.transform(X), codes)
    assert list(transformer.get_feature_names_out()) == list(names) and len(names) == transformer.n_features_out_
    assert transformer.set_output(transform="pandas").transform(X).shape == codes.shape
    assert transformer.set_output(transform="default").fit(X).transform(X).shape == (len(X), 2 + 64)


def test_values_beyond_float32_are_refused_not_turned_into_nan_codes(small_digits):
    X, _ = small_digits
    transformer = tiny().fit(X)
    huge = X[:3].copy()
    huge[1, 5] = 1e300
    with pytest.raises(DataError, match=r"row 1, feature 5 \(1e\+300\) is beyond the float32 range"):
        transformer.transform(huge)
    # a DataFrame's by its name (it was the position in the fitted order: not the user's frame's)
    import pandas as pd

    names = [f"p{i}" for i in range(X.shape[1])]
    named = tiny().fit(pd.DataFrame(X, columns=names))
    with pytest.raises(DataError, match=r"^X: column 'p5', row 1 \(1e\+300\) is beyond the float32 range"):
        named.transform(pd.DataFrame(huge, columns=names).iloc[:, ::-1])


def test_a_dataframe_that_holds_no_plain_numbers_is_refused_naming_its_column(small_digits):
    """scikit-learn's check raised numpy's DTypePromotionError (a TypeError) for dates, narwhals'
    DuplicateError, pandas' "could not convert string to float" without the column, and named
    a NaN by its array position only."""
    import pandas as pd

    X, _ = small_digits
    frame = pd.DataFrame(X, columns=[f"p{i}" for i in range(X.shape[1])], index=1000 + np.arange(len(X)))
    transformer = tiny().fit(frame)
    cases = [
        (frame.assign(p3=pd.Timestamp("2026-01-01")), r"^X: column 'p3' holds dates, durations or intervals \(datetime64"),
        (frame.assign(p3="x"), r"^X: column 'p3' is not numeric \(row 0 has 'x'\); encode it as numbers "
                              r"\(e.g. one-hot, pandas.get_dummies\) or drop it$"),
        (frame.assign(p3=frame["p3"].mask(frame.index == 1010)),
         r"^X: column 'p3' has nan in row 10 \(X.iloc\[10\]; NaN or inf not allowed: impute or drop them\)$"),
    ]
    for bad, message in cases:
        for call in (tiny().fit, transformer.transform, transformer.reconstruct):
            with pytest.raises(DataError, match=message):
                call(bad)
    with pytest.raises(DataError, match=r"^X: column names repeat \('p1'\)$"):
        tiny().fit(frame.rename(columns={"p2": "p1"}))
    # a nullable string column of numbers is read as numbers, its NA named as a NaN (a bare TypeError before)
    text = frame.assign(p3=frame["p3"].astype(str).astype("string").mask(frame.index == 1010))
    with pytest.raises(DataError, match=r"^X: column 'p3' has nan in row 10 "):
        transformer.transform(text)
    assert np.allclose(transformer.transform(text.drop(index=1010)), transformer.transform(frame.drop(index=1010)))


def test_nan_and_inf_are_refused_in_one_line_where_the_user_has_them(small_digits, rng):
    X, _ = small_digits
    with pytest.raises(ValueError, match=r"^X: X\[2, 7\] is nan \(NaN or inf not allowed: impute, drop or pad them\)$"):
        tiny().fit(np.where(np.arange(X.size).reshape(X.shape) == 2 * X.shape[1] + 7, np.nan, X))
    series = AutoencoderTransformer(family="dense", code_size=2, epochs=1).fit(rng.normal(size=(40, 6, 3)))
    bad = rng.normal(size=(4, 6, 3))
    bad[1, 4, 2] = np.inf
    with pytest.raises(ValueError, match=r"^X: X\[1, 4, 2\] is inf \(NaN or inf"):
        series.transform(bad)
    with pytest.raises(ValueError, match=r"^X: X\[1, 14\] is inf \(NaN or inf"):  # given as flat rows
        series.transform(bad.reshape(4, -1))


def test_samples_of_the_fitted_shape_and_flat_rows_give_identical_codes(rng):
    """A (n, T, F) sequence array fits as it is; transform takes (m, T, F) or (m, T*F)."""
    X = rng.normal(size=(120, 6, 3))
    fitted = AutoencoderTransformer(family="conv1d", code_size=4, epochs=1, random_state=0).fit(X)
    assert fitted.sample_shape_ == (6, 3) and fitted.n_features_in_ == 18
    np.testing.assert_array_equal(fitted.transform(X[:10]), fitted.transform(X[:10].reshape(10, -1)))
    with pytest.raises(ValueError, match=r"X has samples of shape \(3, 6\), but the encoder takes samples of shape \(6, 3\)"):
        fitted.transform(X[:10].reshape(10, 3, 6))
    # nested lists of samples are the array they spell (they were refused as "dim 3"); no
    # samples is scikit-learn's clear error (it was NumPy's "cannot reshape array of size 0")
    np.testing.assert_array_equal(fitted.transform(X[:10].tolist()), fitted.transform(X[:10]))
    np.testing.assert_array_equal(fitted.reconstruct(X[:10].tolist()), fitted.reconstruct(X[:10]))  # (10, 6, 3)
    with pytest.raises(ValueError, match=r"Found array with 0 sample\(s\) \(shape=\(0, 18\)\)"):
        fitted.transform(X[:0])


def test_images_with_and_without_their_channel_axis_are_the_same_samples(rng):
    """fit took (m, 8, 8) images for input_shape (8, 8, 1), but transform refused them: a digits
    export refused `load_digits().images`, and a refit on them refused (m, 8, 8, 1). One image
    without its batch axis was read as 8 samples of shape (8, 1)."""
    images = rng.normal(size=(40, 8, 8))
    fitted = AutoencoderTransformer(family="dense", code_size=2, epochs=1, random_state=0,
                                    input_shape=(8, 8, 1)).fit(images[..., None])
    codes = fitted.transform(images[..., None])
    np.testing.assert_array_equal(fitted.transform(images), codes)
    # a batch of one is a batch (float32 sums of another batch size may differ in the last bit)
    np.testing.assert_allclose(fitted.transform(images[:1]), codes[:1], rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match=r"^X has shape \(8, 8, 1\): one sample of the fitted shape, .*"
                                         r"X\[None\] \(shape \(1, 8, 8, 1\)\)"):
        fitted.transform(images[0, ..., None])
    with pytest.raises(ValueError, match=r"^X has shape \(8, 8\): one sample of the fitted shape"):
        fitted.transform(images[0])
    with pytest.raises(ValueError, match=r"^X has samples of shape \(4, 16\), but the encoder takes samples"):
        fitted.transform(images.reshape(40, 4, 16))


def test_misshapen_input_is_named_in_the_fitted_samples_terms(rng):
    """One (T, F) sample without its batch axis was "X has 3 features, but ... expecting 18",
    rows of another width spoke only of features, one 1-D row printed the whole array, and a
    ragged list of series gave NumPy's "inhomogeneous part"."""
    X = rng.normal(size=(40, 6, 3))
    fitted = AutoencoderTransformer(family="dense", code_size=2, epochs=1, random_state=0).fit(X)
    for method in (fitted.transform, fitted.reconstruct):
        with pytest.raises(ValueError, match=r"^X has shape \(6, 3\): one sample of the fitted shape, .*X\[None\]"):
            method(X[0])
        with pytest.raises(ValueError, match=r"^X has rows of 12 values, but the encoder takes samples of shape "
                                             r"\(6, 3\) \(or flat rows of 18 values\)$"):
            method(X.reshape(40, -1)[:, :12])
        one_row = r"^X is one row of 18 values \(1-D\), .*Reshape your data: X.reshape\(1, -1\)$"
        with pytest.raises(ValueError, match=one_row):
            method(X[0].ravel())
    ragged = [X[0], X[1, :4], X[2]]
    for method in (fitted.transform, AutoencoderTransformer(family="dense", epochs=1).fit):
        with pytest.raises(ValueError, match=r"^X holds samples of unequal shape: X\[0\] has shape \(6, 3\), "
                                             r"X\[1\] has \(4, 3\); every sample"):
            method(ragged)
    np.testing.assert_array_equal(fitted.transform(X[:1]), fitted.transform(X[0][None]))  # the remedy works
    one_step = AutoencoderTransformer(family="dense", code_size=2, epochs=1, random_state=0).fit(X[:, :1, :])
    assert one_step.transform(X[:1, 0, :]).shape == (1, 2)  # a (1, 3) sample is also one flat row: taken


def test_fit_takes_lists_of_samples_and_refuses_samples_that_contradict_input_shape(rng):
    """fit read a list of (T, F) samples as "dim 3" (transform took it), and took (4, 3)
    samples for input_shape=(6, 2) because both hold 12 values: steps and channels mixed."""
    X = rng.normal(size=(60, 6, 2))
    params = dict(family="conv1d", code_size=2, epochs=1, random_state=0)
    from_list = AutoencoderTransformer(**params).fit(X.tolist())
    assert from_list.sample_shape_ == (6, 2)
    np.testing.assert_array_equal(from_list.transform(X[:5]), AutoencoderTransformer(**params).fit(X).transform(X[:5]))
    with pytest.raises(ValueError, match=r"^X has samples of shape \(4, 3\), but input_shape=\(6, 2\)$"):
        AutoencoderTransformer(**params, input_shape=(6, 2)).fit(X.reshape(60, 4, 3))
    assert AutoencoderTransformer(**params, input_shape=(6, 2)).fit(X).sample_shape_ == (6, 2)
    images = rng.random((60, 4, 4))  # (n, H, W) for input_shape=(H, W, 1): the same samples, as it always was
    assert AutoencoderTransformer(code_size=2, epochs=1, input_shape=(4, 4, 1)).fit(images).sample_shape_ == (4, 4)


def test_a_dataframe_is_matched_by_column_name(rng):
    import pandas as pd

    frame = pd.DataFrame(rng.normal(size=(100, 4)), columns=["a", "b", "c", "d"])
    fitted = AutoencoderTransformer(code_size=2, epochs=1, random_state=0).fit(frame)
    shuffled = frame[["d", "b", "a", "c"]].assign(label=1)  # reordered, with an extra column
    np.testing.assert_array_equal(fitted.transform(shuffled), fitted.transform(frame))
    with pytest.raises(ValueError, match="X lacks column\\(s\\) 'c', which the encoder was fit on"):
        fitted.transform(frame.drop(columns="c"))
    # columns without string names are no feature names: taken by position with scikit-learn's
    # warning, as the same values in an array are (they were refused as lacking 'a', 'b', ...)
    with pytest.warns(UserWarning, match="X does not have valid feature names"):
        by_position = fitted.transform(pd.DataFrame(frame.to_numpy()))
    np.testing.assert_array_equal(by_position, fitted.transform(frame))


def test_a_recurrent_encoder_encodes_through_a_compiled_function(rng, monkeypatch):
    """Called directly, TensorFlow steps a recurrent layer op by op through every time step:
    10-13 s per transform of 2,000-step series, against 0.4 s through predict's compiled
    function. Same codes either way."""
    import keras

    X = rng.normal(size=(30, 12, 2))
    fitted = AutoencoderTransformer(family="seq2seq", code_size=3, epochs=1, random_state=0,
                                    family_params={"layers": [{"units": 4, "activation": "tanh"}], "cell": "gru"}).fit(X)
    scaled = fitted.scaler_.transform(X.reshape(30, -1)).astype("float32")
    direct = keras.ops.convert_to_numpy(fitted.encoder_(scaled, training=False))
    predicted = []
    original = fitted.encoder_.predict
    monkeypatch.setattr(fitted.encoder_, "predict", lambda *a, **k: predicted.append(1) or original(*a, **k))
    codes = fitted.transform(X)
    assert np.allclose(codes, direct, atol=1e-5)
    if keras.backend.backend() == "tensorflow":  # JAX jits its own function over every model
        assert predicted


def test_early_stopping_watches_held_out_rows_and_keeps_the_best_epochs_weights(rng, monkeypatch):
    """The validation slice is rows the model never trains on, and the fitted model is the
    epoch with the lowest validation loss, not the last one (`restore_best_weights`)."""
    import encoderkit.transformer as transformer_module

    seen = {}
    original = transformer_module.training_data

    def recording(backend, train, valid, batch_size, seed):
        seen.update(train=np.asarray(train), valid=np.asarray(valid))
        return original(backend, train, valid, batch_size, seed)

    monkeypatch.setattr(transformer_module, "training_data", recording)
    X = rng.normal(size=(200, 12))
    # a learning rate this high makes the validation loss jump about, so the last epoch is not the best
    fitted = AutoencoderTransformer(code_size=3, epochs=10, patience=10, learning_rate=0.3, validation_fraction=0.2,
                                    random_state=0).fit(X)
    train, valid = seen["train"], seen["valid"]
    assert len(train) == 160 and len(valid) == 40
    assert not {row.tobytes() for row in train} & {row.tobytes() for row in valid}
    losses = fitted.history_["val_loss"]
    assert int(np.argmin(losses)) != len(losses) - 1, losses  # else this test could not tell
    now = fitted.autoencoder_.evaluate(valid, valid, verbose=0)
    np.testing.assert_allclose(now, min(losses), rtol=1e-4)


@pytest.mark.parametrize("optimizer, name", [("adam", "Adam"), ("rmsprop", "RMSprop"), ("sgd", "SGD")])
def test_the_chosen_optimizer_and_learning_rate_train_the_model(rng, optimizer, name):
    fitted = AutoencoderTransformer(code_size=2, epochs=1, optimizer=optimizer, learning_rate=0.004,
                                    random_state=0).fit(rng.normal(size=(40, 5)))
    assert type(fitted.autoencoder_.optimizer).__name__ == name
    assert float(fitted.autoencoder_.optimizer.learning_rate) == pytest.approx(0.004)


def test_quantile_scaling_on_few_rows_fits_without_a_warning(rng):
    """QuantileTransformer warns when asked for more quantiles than rows: as many as the rows."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*n_quantiles.*")
        fitted = AutoencoderTransformer(code_size=2, epochs=1, scaling="quantile", random_state=0).fit(
            rng.normal(size=(200, 4)))
    assert fitted.scaler_.n_quantiles_ == 200
