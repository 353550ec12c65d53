"""Graceful Ctrl-C. Python delivers KeyboardInterrupt wherever the main thread happens to be,
including weakref callbacks and `__del__` methods that swallow it, so a plain Ctrl-C can be
lost inside TensorFlow. Instead the first SIGINT only sets a flag, and the search raises
KeyboardInterrupt at safe points it controls: after each training batch, after the probe and
between trials. A second Ctrl-C interrupts at once, as usual.

SIGTERM is taken the same way: it is how `ray job stop`, `docker stop`, Slurm's time limit and
systemd ask a job to end, and they wait a few seconds before SIGKILL. Without a handler the
search died mid-write with its trial left RUNNING; with it, the trial is recorded as
interrupted and the command exits 128 + the signal's number, as a shell would report it."""

from __future__ import annotations

import contextlib
import os
import signal
import threading

from search.errors import exception_chain

_requested = threading.Event()
_received: list[int] = []  # the signal that asked for the stop


def requested() -> bool:
    return _requested.is_set()


def check():
    """Raises KeyboardInterrupt if Ctrl-C was pressed; call it at safe points."""
    if _requested.is_set():
        raise KeyboardInterrupt


def is_interrupt(exc: BaseException) -> bool:
    """Whether `exc` is a KeyboardInterrupt or was raised while one was being handled (the
    chain a traceback shows: `raise ... from None` translates on purpose and ends it). A
    second Ctrl-C can land inside a library's cleanup; Optuna's trial loop then fails with its
    own UnboundLocalError, chained to the KeyboardInterrupt, which must end the search as one."""
    return any(isinstance(e, KeyboardInterrupt) for e in exception_chain(exc))


def received() -> int:
    """The signal that asked for the stop (SIGINT where none was received: a KeyboardInterrupt)."""
    return _received[0] if _received else signal.SIGINT


CAUSES = {signal.SIGINT: "Ctrl-C", signal.SIGTERM: "SIGTERM"}  # in the words a trial's fail reason uses


def cause() -> str:
    """What asked for the stop."""
    return CAUSES[received()]


def exit_status() -> int:
    """The shell's status for a process ended by the signal received (130 for Ctrl-C)."""
    return 128 + int(received())


@contextlib.contextmanager
def sigterm_like_ctrl_c():
    """For a whole command: outside the search's `graceful` blocks (baseline scores, refit,
    export), SIGTERM raises KeyboardInterrupt at once, as Ctrl-C does, so the command still
    prints what it has and exits 143 instead of vanishing without a word."""
    previous = signal.getsignal(signal.SIGTERM)
    if threading.current_thread() is not threading.main_thread() or previous is signal.SIG_IGN:
        yield
        return
    signal.signal(signal.SIGTERM, _raise_now)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _raise_now(signum, frame):
    _received[:] = [signum]
    raise KeyboardInterrupt


# Said on the first signal inside `deferred` (which may wait on a network): (a copy of the
# stderr it began with, since a quiet import may point fd 2 elsewhere meanwhile; the line)
_announce: list = []


def _handler(signum, frame):
    if _requested.is_set():
        signal.default_int_handler(signum, frame)
    _received[:] = [signum]
    _requested.set()
    if _announce:
        os.write(*_announce[0])  # not print: a handler may run inside a print to the same stream


@contextlib.contextmanager
def graceful():
    """Installs the flag-setting handler for the duration (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _requested.clear()
    _received.clear()  # kept after the block: the command line's exit status reads it
    # a SIGTERM that the caller ignores (SIG_IGN) stays ignored
    handled = [s for s in CAUSES if s == signal.SIGINT or signal.getsignal(s) is not signal.SIG_IGN]
    previous = {s: signal.signal(s, _handler) for s in handled}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        _requested.clear()  # handled: a notebook's next call in this process starts afresh


@contextlib.contextmanager
def deferred():
    """Ctrl-C (or SIGTERM) waits until the block is done, then raises KeyboardInterrupt: for
    imports and a command's setup. A KeyboardInterrupt inside an import leaves the process
    broken for good: the half-imported module stays behind (yaml's "partially initialized
    module", TensorFlow's "already registered"), and a notebook's kernel had to be restarted.
    A second Ctrl-C still interrupts at once."""
    if signal.getsignal(signal.SIGINT) is _handler:  # inside a search's `graceful`: it already waits
        yield
        return
    with graceful():
        try:
            stderr = os.dup(2)
        except OSError:  # no stderr (a daemon's): nothing to say it on
            stderr = None
        if stderr is not None:
            _announce[:] = [(stderr, b"stopping when the setup is done (Ctrl-C again: stop now)\n")]
        try:
            yield
        finally:
            _announce.clear()
            if stderr is not None:
                os.close(stderr)
        check()


def keras_callback():
    """A Keras callback that raises at the end of the batch after Ctrl-C."""
    import keras

    class StopOnInterrupt(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            check()

    return StopOnInterrupt()
