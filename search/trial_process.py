"""Trials in a spawned child process, so nothing a trial allocates (TensorFlow's traced
functions, leaked memory, a crashed native library) outlives the child.

A long-lived TensorFlow process keeps every function it traced, so it grows and slows with
each trial (benchmarks/results/memory.md). A new process per trial stays flat but pays the
TensorFlow import every time. `TrialProcess(problem, every=K)` keeps one child for K trials
and then replaces it: memory and slowdown stay bounded by K trials' worth, and the import is
paid once per K trials (`--fresh-process K`; K=1 is a new process per trial).

Intermediate scores travel over a pipe so the pruner still decides in this process; a child
that dies becomes a failed trial and the next trial gets a new child.

A run holds one child for the whole command (`held`): the baselines, the trials and the
refit of the winner all run in it, so the run's own process never imports Keras and pays
one import less (seconds of CPU, hundreds of MB) and no CUDA context of its own."""

from __future__ import annotations

import contextlib
import functools

from search import devices, faults, interrupts
from search.errors import FailedTrial, PruneTrial, SearchError

PARENT_ENV = "SEARCH_WORKER_PARENT"  # the PID of the process that started a `_worker`

_held = None  # the TrialProcess of `held`, which `trial_runner` hands out instead of a new one


@contextlib.contextmanager
def held(problem, every: int):
    """Yields a `TrialProcess` kept for the block (None when `every` is 0: everything runs
    here); a `trial_runner` for the same problem inside the block uses it, so a command's
    baselines, trials and refit share one child and its one Keras import. Its child starts
    when first needed (a run with nothing left to do starts none)."""
    global _held
    if not every:
        yield None
        return
    process = TrialProcess(problem, every)
    before, _held = _held, process
    try:
        yield process
    finally:
        _held = before
        process.close()


@contextlib.contextmanager
def trial_runner(problem, every: int = 0):
    """Yields `run(candidate, seed, report)`: in this process when `every` is 0, else in a
    child process replaced every `every` trials (closed when the block ends; the one of
    `held` stays open for its block)."""
    if _held is not None and _held.problem is problem and _held.every == every:
        yield _held
        return
    if not every:
        from search.objective import evaluate

        yield functools.partial(evaluate, problem)
        return
    process = TrialProcess(problem, every)
    try:
        yield process
    finally:
        process.close()


def prepare_for_trials(fresh_process: int, cores: int):
    """This worker process made ready to run trials on `cores` cores: Keras imported quietly
    (before anything else imports TensorFlow and its start-up chatter) with JAX's compile cache
    where trials run here (`fresh_process` 0); where they run in child processes only those
    import it, and this process records the thread cap they take (a worker or a joiner saves
    an import of TensorFlow: seconds of CPU and hundreds of MB)."""
    if not fresh_process:
        from search import compile_cache
        from search.quiet import import_keras_quietly

        import_keras_quietly()
        compile_cache.enable()
    devices.limit_threads(cores, here=not fresh_process)


def evaluate_in_subprocess(problem, candidate: dict, seed: int, report=None) -> dict:
    """One trial in a new process of its own."""
    with trial_runner(problem, every=1) as run:
        return run(candidate, seed, report)


class TrialProcess:
    def __init__(self, problem, every: int = 1):
        if int(every) < 1:
            raise ValueError(f"every must be at least 1, got {every}")
        self.problem, self.every = problem, int(every)
        self.started = 0  # children started so far (the tests check the recycling)
        self._child = self._conn = None
        self._trials = 0  # trials run by the current child
        # The next child, started while the current one runs its last trial, so its
        # TensorFlow import overlaps that trial instead of delaying the next one.
        self._spare = None

    def _replace_child(self):
        self._retire()
        spare, self._spare = self._spare, None
        if spare is not None and not spare[0].is_alive():  # died while starting: not worth a failed trial
            _end(*spare, wait=False)
            spare = None
        self._child, self._conn = spare or self._spawn()
        self._trials = 0

    def call(self, function, *args):
        """`function(problem, *args)` in the child, where Keras is imported (the baselines, the
        refit): what it returns, or the exception it raised, raised here. It counts as no
        trial, but runs in a child that has not yet run its `every` trials (the spare, where one
        was started during the last): the refit of the winner, on the whole search part, gets
        a child without the memory its trials left (with `every` 1 that costs a child's start);
        `ChildDied` if the child dies on it."""
        if self._child is None or self._trials >= self.every or not self._child.is_alive():
            self._replace_child()
        in_step = False
        try:
            self._send(("call", function, args))
            kind, payload = self._receive()
            in_step = True
        except FailedTrial as exc:  # it died (the OOM killer, a kill -9)
            raise ChildDied(str(exc)) from None
        finally:
            if not in_step:
                self.close(wait=False)
        if kind == "raised":
            raise payload
        return payload

    def __call__(self, candidate: dict, seed: int, report=None) -> dict:
        """`search.objective.evaluate` in the child: the outcome, `FailedTrial` or `PruneTrial`."""
        if self._child is None or self._trials >= self.every or not self._child.is_alive():
            self._replace_child()
        self._trials += 1
        if self._trials == self.every and self.every > 1:
            self._spare = self._spawn()
        in_step = False  # whether the child is back waiting for its next trial
        try:
            self._send(("trial", candidate, seed, report is not None))
            while True:
                kind, *payload = self._receive()
                if kind == "report":
                    try:
                        report(*payload)
                    except PruneTrial:
                        self._send("prune")
                        in_step = self._receive() == ("pruned",)
                        raise
                    self._send("go on")
                elif kind == "done":
                    in_step = True
                    return payload[0]
                elif kind == "failed":
                    in_step = True
                    raise FailedTrial(payload[0])
        finally:
            if not in_step:  # interrupted, died or out of step: this child cannot be reused
                self.close(wait=False)

    def close(self, wait: bool = True):
        """Ends the child and any spare: asks them to stop and waits (`wait`), else kills
        them at once."""
        spare, self._spare = self._spare, None
        if spare is not None:
            _end(*spare, wait=False)
        self._retire(wait)

    def _retire(self, wait: bool = True):
        """Ends the current child (not the spare)."""
        if self._child is None:
            return
        child, conn = self._child, self._conn
        self._child = self._conn = None
        _end(child, conn, wait)

    def _spawn(self):
        import multiprocessing
        import os

        context = multiprocessing.get_context("spawn")
        ours, theirs = context.Pipe()
        # Not a daemon: a daemonic process may not start the probe's parallel fold workers.
        # It dies with this process all the same (`die_with`).
        child = context.Process(target=_child_main, daemon=False,
                                args=(theirs, os.getpid(), faults.armed(), devices.thread_cap()))
        with _main_module_hidden(), _signals_held():
            child.start()
        theirs.close()
        self.started += 1
        # The problem (the data) goes over the pipe, not with the start: a child that dies while
        # starting makes this send fail (then its first trial is failed) where multiprocessing's
        # own start-up write of a large payload would block for ever.
        with contextlib.suppress(OSError):
            ours.send(self.problem)
        return child, ours

    def _send(self, message):
        try:
            self._conn.send(message)
        except OSError:  # the child is gone (BrokenPipeError)
            self._died()

    def _receive(self):
        while not self._conn.poll(0.2):
            interrupts.check()
        try:
            return self._conn.recv()
        except (EOFError, OSError):  # the child is gone (ConnectionResetError where it never started)
            self._died()

    def _died(self):
        self._child.join()
        # A Ctrl-C to the terminal's process group reaches the child too, and kills it while it
        # is still importing (before it ignores signals): an interrupted trial, run again on
        # resume, not a failed one
        interrupts.check()
        raise FailedTrial(f"trial process died (exit code {self._child.exitcode})") from None


class ChildDied(SearchError):
    """The child process died while it ran a `call` (the OOM killer, a kill -9): said in one
    line, with exit status 1 (the machine's, not the input's, as for a full disk)."""

    exit_status = 1


STOP_SIGNALS = ("SIGINT", "SIGTERM")


@contextlib.contextmanager
def _signals_held():
    """SIGINT and SIGTERM blocked in this thread while it starts a child, which inherits the
    mask: a Ctrl-C to the terminal's process group while the child is still starting Python
    waits in it until it ignores them (`_ignore_stop_signals`), instead of killing it with a
    KeyboardInterrupt traceback. This process gets its own copy when the block ends."""
    import signal
    from multiprocessing import resource_tracker

    if not hasattr(signal, "pthread_sigmask"):  # Windows: no masks (and no process groups either)
        yield
        return
    # Started now, not inside the block: starting it unblocks both signals (as this does for it)
    resource_tracker.ensure_running()
    held = {getattr(signal, name) for name in STOP_SIGNALS}
    before = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, before)


def _ignore_stop_signals():
    """In the child: SIGINT and SIGTERM ignored (the parent decides, and kills this process),
    then let through, so one that came while it started is dropped."""
    import signal

    held = {getattr(signal, name) for name in STOP_SIGNALS}
    for signum in held:
        signal.signal(signum, signal.SIG_IGN)
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, held)


@contextlib.contextmanager
def _main_module_hidden():
    """The spawned child runs none of the user's main module: multiprocessing would run a
    script again there (one without an `if __name__ == "__main__":` guard would start its
    search again in the child, which then died), or try to run `<stdin>` for `python - <<EOF`.
    Trials need only this package's code; without a `__spec__` and a `__file__` the child skips
    the main module, as for a notebook or `python -c`."""
    import sys

    main = sys.modules.get("__main__")
    if main is None:
        yield
        return
    saved = {name: vars(main)[name] for name in ("__spec__", "__file__") if name in vars(main)}
    main.__spec__ = None
    vars(main).pop("__file__", None)
    try:
        yield
    finally:
        vars(main).update(saved)


def _end(child, conn, wait: bool):
    if wait and child.is_alive():
        with contextlib.suppress(OSError):
            conn.send(("stop",))
        child.join(timeout=10)
    if child.is_alive():
        _kill_group(child)
    child.join()
    conn.close()


def _child_main(conn, worker_pid, crash_hook=None, threads=None):
    """The child: receives the problem, then runs the trials it is sent until told to stop or
    the parent goes away, on the worker's thread cap (`threads`, cores per worker: TensorFlow
    would take every core)."""
    import os

    from encoderkit.quiet import import_keras_quietly
    from search import faults

    _ignore_stop_signals()
    os.setpgrp()  # a group of its own: killing it takes the probe's worker processes along
    die_with(worker_pid)
    try:
        problem = conn.recv()  # at once: the parent waits on this send
    except (EOFError, OSError):
        return  # the parent went away
    import_keras_quietly()  # before anything else imports TensorFlow and its start-up chatter
    if threads:
        devices.limit_threads(threads)
    from search.objective import evaluate

    faults.arm(crash_hook)
    faults.crash_search_with(worker_pid)

    def report(step, value):
        conn.send(("report", step, value))
        if conn.recv() == "prune":
            raise PruneTrial(f"intermediate score {value:.4f} at epoch {step}")

    try:
        while True:
            message = conn.recv()
            if message[0] == "stop":
                return
            if message[0] == "call":
                _, function, args = message
                try:
                    conn.send(("returned", function(problem, *args)))
                except Exception as exc:
                    conn.send(("raised", _sendable(exc)))
                continue
            _, candidate, seed, reports = message
            try:
                conn.send(("done", evaluate(problem, candidate, seed, report if reports else None)))
            except FailedTrial as exc:
                conn.send(("failed", str(exc)))
            except PruneTrial:
                conn.send(("pruned",))
    except (EOFError, BrokenPipeError):
        return  # the parent went away
    finally:
        conn.close()
        _stop_probe_workers()


def _sendable(exc: Exception) -> Exception:
    """`exc` as the parent can receive it: with this process's traceback as a note (shown
    where the parent prints a traceback), a full disk as the OSError that says so, or a
    RuntimeError saying it where it is not Python's, ours, or cannot be pickled."""
    import errno
    import pickle
    import sys
    import traceback

    from search.errors import exception_chain, is_disk_full

    note = "in the trial process:\n" + "".join(traceback.format_exception(exc)).rstrip()
    if is_disk_full(exc):  # the parent names the full disk from the chain, which pickling drops: its OSError
        full = (e for e in exception_chain(exc) if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT))
        exc = next(full, None) or OSError(errno.ENOSPC, str(exc))  # (SQLite's "database or disk is full")
    exc.add_note(note)
    try:
        # Ours and Python's own: a framework's (TensorFlow's, JAX's out of memory) would import it
        # in the parent to be unpickled, or fail to
        if type(exc).__module__.split(".")[0] not in ("search", "encoderkit", *sys.stdlib_module_names):
            raise TypeError(type(exc).__module__)
        pickle.loads(pickle.dumps(exc))
    except Exception:
        return RuntimeError(f"{type(exc).__module__}.{type(exc).__name__}: {exc}\n{note}")
    return exc


def _stop_probe_workers():
    """The probe's parallel folds run in joblib's reusable worker processes, which otherwise
    idle for minutes after this child is done, holding its output open."""
    import sys

    if "joblib" in sys.modules:
        from joblib.externals.loky import get_reusable_executor

        get_reusable_executor().shutdown(wait=True, kill_workers=True)


def die_with(parent_pid: int):
    """Linux: the kernel kills this process when its parent dies (kill -9 included), so no orphan
    goes on training or writing after its worker is gone; it ends at once if the parent died
    before that. Armed by the child itself, not as Popen's preexec_fn: that runs Python between
    fork and exec, unsafe once the parent runs threads, such as JAX's, which warns of a deadlock."""
    import ctypes
    import os
    import signal

    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux (macOS): a thread watches for it instead
        _watch_parent(parent_pid)
    if os.getppid() != parent_pid:
        os._exit(1)


def _watch_parent(parent_pid: int, every: float = 0.5):
    """Ends this process within `every` seconds of its parent's death, where the kernel does not
    (an orphan is handed to another parent): a refit going on after its run was killed would
    write its export while a `resume` writes its own."""
    import os
    import threading
    import time

    def watch():
        while os.getppid() == parent_pid:
            time.sleep(every)
        os._exit(1)

    threading.Thread(target=watch, name="die-with-parent", daemon=True).start()


def _kill_group(child):
    """Kills the child and the worker processes it started (its process group)."""
    import os
    import signal

    try:
        os.killpg(child.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):  # not yet in its own group
        child.kill()
