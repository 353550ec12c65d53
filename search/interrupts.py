"""Graceful Ctrl-C. Python delivers KeyboardInterrupt wherever the main thread happens to be,
including weakref callbacks and `__del__` methods that swallow it, so a plain Ctrl-C can be
lost inside TensorFlow. Instead the first SIGINT only sets a flag, and the search raises
KeyboardInterrupt at safe points it controls: after each training batch, after the probe and
between trials. A second Ctrl-C interrupts at once, as usual."""

from __future__ import annotations

import contextlib
import signal
import threading

_requested = threading.Event()


def requested() -> bool:
    return _requested.is_set()


def check():
    """Raises KeyboardInterrupt if Ctrl-C was pressed; call it at safe points."""
    if _requested.is_set():
        raise KeyboardInterrupt


def _handler(signum, frame):
    if _requested.is_set():
        signal.default_int_handler(signum, frame)
    _requested.set()


@contextlib.contextmanager
def graceful():
    """Installs the flag-setting handler for the duration (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _requested.clear()
    previous = signal.signal(signal.SIGINT, _handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        _requested.clear()  # handled: a notebook's next call in this process starts afresh


def keras_callback():
    """A Keras callback that raises at the end of the batch after Ctrl-C."""
    import keras

    class StopOnInterrupt(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            check()

    return StopOnInterrupt()
