"""Importing Keras' backend without its start-up chatter on stderr (fitting, loading and
transforming call it, so a library user sees no absl/oneDNN lines either).

TensorFlow's C++ logging writes lines such as "oneDNN custom operations are on" straight to
file descriptor 2 before `TF_CPP_MIN_LOG_LEVEL` is read, so the CLI's one-line errors would
arrive buried under them. Redirecting the descriptor for the duration of the import is the
only switch that works; Python exceptions from the import still propagate."""

from __future__ import annotations

import contextlib
import os
import sys
from contextlib import contextmanager


@contextmanager
def stderr_silenced(into=None):
    """File descriptor 2 goes to /dev/null for the block (C++ logging bypasses sys.stderr),
    or into the open file `into`, for a caller that reads what was said there."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") if into is None else contextlib.nullcontext(into) as sink:
            os.dup2(sink.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def import_keras_quietly():
    if "keras" in sys.modules:
        return sys.modules["keras"]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with stderr_silenced():
        try:
            import keras
        except ModuleNotFoundError as exc:  # the package of the backend Keras was told to use
            from encoderkit.errors import KerasBackendMissing

            backend = os.environ.get("KERAS_BACKEND") or "tensorflow (Keras' default)"
            raise KerasBackendMissing(
                f"Keras backend {backend}: needs the Python package {exc.name!r}, which is not installed here "
                f"(pip install {exc.name}, or set KERAS_BACKEND to an installed backend)") from None
        except ValueError as exc:  # Keras: "Unable to import backend : NAME" for a name it does not know
            if "backend" not in str(exc):
                raise
            from encoderkit.errors import KerasBackendMissing

            raise KerasBackendMissing(f"KERAS_BACKEND={os.environ.get('KERAS_BACKEND')!r}: not a Keras backend "
                                      "(tensorflow, jax or torch, in lower case)") from None
    import logging

    tf_logger = logging.getLogger("tensorflow")
    if tf_logger.level == logging.NOTSET:  # unless the user configured it: no retracing warnings
        tf_logger.setLevel(logging.ERROR)
    return keras


def set_random_seed_quietly(seed: int):
    """`keras.utils.set_random_seed`, which seeds TensorFlow wherever it is installed: under
    the JAX or torch backend that is TensorFlow's first import, with its start-up lines."""
    keras = import_keras_quietly()
    if "tensorflow" in sys.modules:
        keras.utils.set_random_seed(seed)
        return
    with stderr_silenced():
        keras.utils.set_random_seed(seed)


def tensorflow_imported_quietly():
    """Keras pickles and unpickles a model through its saving code, which imports TensorFlow
    wherever it is installed, whatever the backend (under JAX: TensorFlow's start-up lines in
    the middle of a joblib.dump). Imported here first, without them; nothing where it is not
    installed or already imported."""
    if "tensorflow" in sys.modules:
        return
    import importlib.util

    if importlib.util.find_spec("tensorflow") is None:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with stderr_silenced():
        import tensorflow  # noqa: F401
