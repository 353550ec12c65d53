"""`EncoderSearch`: the whole search as one scikit-learn estimator, in the manner of
`GridSearchCV` and `HalvingRandomSearchCV`.

    from search import EncoderSearch
    searcher = EncoderSearch(trials=30).fit(X, y)        # runs a study
    codes = searcher.transform(X)                        # the best encoder's codes
    searcher.best_params_, searcher.best_score_, searcher.cv_results_, searcher.study_dir_

`fit` runs `search.run` on the data (its labels score the candidates through the probe), so
the study follows the same protocol as the command line: a held-out test part scored once
(`test_score_`), CV on the search part for ranking (`best_score_`). Without `study_dir` the
study lives in a temporary directory removed when the estimator is garbage collected; the
fitted `best_estimator_` is held in memory and does not need it."""

from __future__ import annotations

import shutil
import tempfile
import weakref

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from encoderkit.data import check_labels, from_memory
from encoderkit.fit_state import kept_on_failure

# Imported here, not inside `fit`: optuna keeps the ImportError tracebacks of its optional
# imports, and with them every frame that was on the stack at its first import; imported
# inside `fit`, that pins the first estimator (and its X) for the life of the process.
from search import engine  # noqa: E402  (imports optuna)
from search.errors import OtherStudy  # noqa: E402
from search.settings import BackendOptions, Budget, StudySpec  # noqa: E402


class EncoderSearch(TransformerMixin, BaseEstimator):
    """Searches autoencoder architectures for `X` scored by a probe on `y`; transforms with
    the best encoder, refit on the search part.

    Parameters are those of `search.run` (see its docstring): `space` (a shipped space name,
    a YAML file or a dict in the YAML format), `trials`, `timeout` (seconds), `backend` (optuna, ray, kerastuner),
    `workers`, `metric` and `cv` (the number of the probe's stratified folds, not a splitter;
    None: the space's), `seed`, `test_size`, `subsample`, `scale`,
    `study_dir` (None: a temporary directory; a folder holds one study, so leave it None in
    `cross_val_score` or `GridSearchCV`, whose folds fit clones on other rows), `fresh_process`,
    `storage`, `max_failures`, `gpus`, `address`, `cpus_per_trial`, `gpus_per_trial`, `algorithm`,
    `keras_backend` (a backend option left None: its backend's default); `verbose` (0: no
    printing, notes on the data come as `DataWarning`s; 1: notes and a progress bar).

    Attributes after `fit`: `best_estimator_` (a fitted `AutoencoderTransformer`),
    `best_params_` (the best trial's sampled values), `best_score_` (its CV score),
    `best_index_`, `cv_results_` (one entry per trial, as `GridSearchCV`'s), `test_score_`
    (the held-out score with its 95% interval), `result_` (the `StudyResult`),
    `study_dir_`, `n_features_in_`, `feature_names_in_` (DataFrames)."""

    def __init__(self, space="default", *, trials=Budget.trials, timeout=Budget.timeout, backend="optuna",
                 workers=BackendOptions.workers, metric=StudySpec.metric, cv=StudySpec.cv, seed=StudySpec.seed,
                 test_size=StudySpec.test_size, subsample=StudySpec.subsample, scale=1.0, study_dir=None,
                 fresh_process=None, storage=None, max_failures=Budget.max_failures, gpus=None, address=None,
                 cpus_per_trial=None, gpus_per_trial=None, algorithm=None, keras_backend=None, verbose=0):
        self.space = space
        self.trials = trials
        self.timeout = timeout
        self.backend = backend
        self.workers = workers
        self.metric = metric
        self.cv = cv
        self.seed = seed
        self.test_size = test_size
        self.subsample = subsample
        self.scale = scale
        self.study_dir = study_dir
        self.fresh_process = fresh_process
        self.storage = storage
        self.max_failures = max_failures
        self.gpus = gpus
        self.address = address
        self.cpus_per_trial = cpus_per_trial
        self.gpus_per_trial = gpus_per_trial
        self.algorithm = algorithm
        self.keras_backend = keras_backend
        self.verbose = verbose

    def fit(self, X, y):
        """Searches, refits the best trial on all of X and keeps it as `best_estimator_`. A fit
        that is refused, fails or is interrupted leaves the estimator as it was (fitted or not),
        with its earlier temporary study directory."""
        with kept_on_failure(self):
            return self._fit(X, y)

    def _fit(self, X, y):
        from search.storage import has_password

        if has_password(self.storage):
            from search.errors import SettingsError

            raise SettingsError("storage: give its password through $SEARCH_STORAGE_PASSWORD, not in the URL "
                                "(an estimator's parameters are printed by repr and kept by pickle)")
        # sklearn's own checks and messages for what no search can take (NaN, complex,
        # empty, 1-D); the data then goes to the study as the user gave it (columns kept).
        # DataFrames keep dtype None: the study names a non-numeric column itself.
        if y is not None:  # pd.NA labels, on which sklearn's own check raises a TypeError
            check_labels(y, "y", getattr(y, "name", None) or "y")
        # Numbers written as text (an array of '0.5'): taken, as search.run and the encoder take them.
        ours = hasattr(X, "columns") or getattr(getattr(X, "dtype", None), "kind", "") in ("U", "S")
        if ours and y is not None:  # search.run's checks, which name the column at fault
            from_memory(X, y)  # (sklearn's raised numpy's, narwhals' or "Input X contains NaN.")
        validate_data(self, X, y, allow_nd=True, dtype=None if ours else "numeric", ensure_min_samples=2)
        temporary = None if self.study_dir is not None else _TemporaryStudyDir(self)
        study_dir = self.study_dir if temporary is None else temporary.study_dir
        params = {k: v for k, v in self.get_params().items() if k not in ("study_dir", "verbose")}
        try:
            result = engine.run(X, y, study_dir=study_dir, progress=bool(self.verbose), verbose=bool(self.verbose),
                                **params)
        except OtherStudy as exc:
            if temporary is not None:
                raise
            # each fold of cross_val_score or GridSearchCV fits a clone on other rows, in one folder
            raise OtherStudy(f"{exc} (a study_dir holds one study; in cross-validation, leave study_dir=None)") \
                from None
        if temporary is not None:
            temporary.replace_earlier()
        self.result_ = result
        self.study_dir_ = result.study_dir
        self.best_estimator_ = result.best_estimator
        self.cv_results_ = cv_results(result.trials)
        self.best_index_ = next(i for i, t in enumerate(result.trials) if t.number == result.best_trial)
        self.best_params_ = _params(result.trials[self.best_index_])
        self.best_score_ = result.best_cv
        self.test_score_ = result.test
        self.n_features_out_ = self.best_estimator_.n_features_out_
        # As the encoder counts them: T * F for (n, T, F) sequences (validate_data said T).
        self.n_features_in_ = self.best_estimator_.n_features_in_
        return self

    def transform(self, X):
        check_is_fitted(self, "best_estimator_")
        return self.best_estimator_.transform(X)

    def get_feature_names_out(self, input_features=None):
        check_is_fitted(self, "best_estimator_")
        return self.best_estimator_.get_feature_names_out(input_features)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = True  # the probe needs labels to score candidates
        tags.input_tags.three_d_array = True  # sequences (n, T, F)
        tags.non_deterministic = self.workers != 1  # workers finish trials in any order
        return tags

    def __getstate__(self):
        # A pickled (or cloned-by-pickle) copy does not own the temporary study directory.
        state = dict(self.__dict__)
        state.pop("_cleanup", None)
        return state


class _TemporaryStudyDir:
    """A fresh temporary directory for one fit, removed with the estimator (or at exit): a
    notebook's searches leave nothing behind unless asked to. A successful fit removes the
    previous fit's; a failed fit's stays until then (an `Interrupted`'s result points into it),
    and so does the one the estimator's results point into."""

    def __init__(self, estimator):
        self.estimator = estimator
        directory = tempfile.mkdtemp(prefix="encoder-search-")
        self.study_dir = f"{directory}/study"
        self.cleanup = weakref.finalize(estimator, shutil.rmtree, directory, True)

    def replace_earlier(self):
        earlier = getattr(self.estimator, "_cleanup", None)
        if earlier is not None:
            earlier()
        self.estimator._cleanup = self.cleanup


def cv_results(trials) -> dict:
    """`GridSearchCV`-style results, one entry per trial: `params`, `param_NAME` (masked
    where a trial did not sample NAME), `mean_test_score` and `std_test_score` (the CV probe
    score on the search part; NaN unless complete), `rank_test_score`, `mean_fit_time`,
    `state`, `number`."""
    params = [_params(t) for t in trials]
    names = sorted({name for trial_params in params for name in trial_params})
    mean = np.array([np.nan if t.score is None else t.score for t in trials], dtype=float)
    results = {
        "number": np.array([t.number for t in trials], dtype=int),
        "state": np.array([t.state for t in trials], dtype=object),
        "params": params,
        "mean_test_score": mean,
        "std_test_score": np.array([np.nan if t.score_std is None else t.score_std for t in trials], dtype=float),
        "rank_test_score": _ranks(mean),
        "mean_fit_time": np.array([np.nan if t.seconds is None else t.seconds for t in trials], dtype=float),
    }
    for name in names:
        values = [p.get(name) for p in params]
        results[f"param_{name}"] = np.ma.MaskedArray(np.array(values, dtype=object), mask=[name not in p for p in params])
    return results


def _params(trial) -> dict:
    """A trial's sampled values, with its family also where the space has one (not sampled)."""
    return {"family": trial.family, **trial.params}


def _ranks(scores) -> np.ndarray:
    """1 for the best; ties share the lowest rank; trials without a score rank last."""
    from scipy.stats import rankdata

    filled = np.where(np.isnan(scores), -np.inf, scores)
    return rankdata(-filled, method="min").astype(np.int32)
