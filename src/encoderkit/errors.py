"""One exception root for the library, so callers can catch every user-facing error at once."""


class EncoderkitError(Exception):
    """Root of every error encoderkit raises on purpose."""


class DataError(EncoderkitError, ValueError):
    """A dataset, file or array cannot be used; the message names the file/column/value."""


class ExportError(EncoderkitError, ValueError):
    """An export directory is missing, corrupted or incompatible."""


class TrainingError(EncoderkitError, RuntimeError):
    """Training diverged (NaN loss) or the family cannot take the input."""


class KerasBackendMissing(EncoderkitError, ImportError):
    """The Python package of the Keras backend in use (KERAS_BACKEND) is not installed."""


class DataWarning(UserWarning):
    """Data that is used, but perhaps not as meant (a DataFrame column 'target' taken as a
    feature, a setting the data does not use); a quiet search warns of it."""
