"""Importing Keras' backend without its start-up chatter on stderr (fitting, loading and
transforming call it, so a library user sees no absl/oneDNN lines either).

TensorFlow's C++ logging writes lines such as "oneDNN custom operations are on" straight to
file descriptor 2 before `TF_CPP_MIN_LOG_LEVEL` is read, so the CLI's one-line errors would
arrive buried under them. Redirecting the descriptor for the duration of the import is the
only switch that works; Python exceptions from the import still propagate."""

from __future__ import annotations

import os
import sys


def import_keras_quietly():
    if "keras" in sys.modules:
        return sys.modules["keras"]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            import keras
    finally:
        os.dup2(saved, 2)
        os.close(saved)
    import logging

    tf_logger = logging.getLogger("tensorflow")
    if tf_logger.level == logging.NOTSET:  # unless the user configured it: no retracing warnings
        tf_logger.setLevel(logging.ERROR)
    return keras
