"""A refused or failed fit leaves an estimator as it was, fitted or not.

scikit-learn's `validate_data` records the new input's width and names (`n_features_in_`,
`feature_names_in_`) before our own checks, or the search, can refuse it; without this, a
refused refit left a fitted estimator claiming a width its model does not take."""

import contextlib


@contextlib.contextmanager
def kept_on_failure(estimator):
    """Restores `estimator`'s fitted attributes (scikit-learn's convention: names ending in
    an underscore, `scaler_`) if the block raises, Ctrl-C included."""
    fitted = {name: value for name, value in vars(estimator).items() if _is_fitted_attribute(name)}
    try:
        yield
    except BaseException:
        for name in [name for name in vars(estimator) if _is_fitted_attribute(name)]:
            delattr(estimator, name)
        vars(estimator).update(fitted)
        raise


def _is_fitted_attribute(name: str) -> bool:
    return name.endswith("_") and not name.startswith("__")
