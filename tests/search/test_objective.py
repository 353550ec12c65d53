"""The objective's protocol: trained and scored on the search part only."""

import errno

import numpy as np
import pytest

from encoderkit.data import Dataset
from encoderkit.errors import DataError
from search import faults
from search.errors import FailedTrial, PruneTrial
from search.objective import evaluate, thaw_heap
from search.problem import make_problem

# These tests are about checkpoints, pruning and their cost: every trial takes intermediate
# scores here (by default a trial with under 2 s of training left takes none).
pytestmark = pytest.mark.usefixtures("always_checkpoint")

CANDIDATE = {
    "family": "dense",
    "code_size": 4,
    "include_input": False,
    "scaling": "minmax",
    "training": {"epochs": 6, "batch_size": 64, "learning_rate": 1e-2, "optimizer": "adam", "patience": 5},
    "family_params": {"layers": [{"units": 16, "activation": "relu"}]},
}


def poisoned_problem(small_digits):
    """The test rows hold NaN: any use of them during the search breaks the run."""
    X, y = small_digits
    clean = make_problem(Dataset("d", X, y, "image", (8, 8, 1)), folds=3, seed=0)
    X = X.astype(float).copy()
    X[clean.test_rows] = np.nan
    return make_problem(Dataset("d", X, y, "image", (8, 8, 1)), folds=3, seed=0)


def test_evaluate_uses_the_search_part_only(small_digits):
    problem = poisoned_problem(small_digits)
    assert np.isnan(problem.test_part()[0]).all() and np.isfinite(problem.X).all()
    outcome = evaluate(problem, CANDIDATE, seed=0)
    assert 0.3 < outcome["score"] <= 1.0
    assert outcome["score_std"] >= 0
    stages = {"prepare", "build", "fit", "checkpoints", "encode", "probe"}
    import keras

    if keras.backend.backend() == "jax":  # JAX's compile seconds are taken out of the stages
        stages.add("compile")
    assert set(outcome["seconds"]) == stages
    assert outcome["seconds"]["checkpoints"] == 0  # no report, no intermediate scores
    assert outcome["probe"] == "logistic_regression"


def test_checkpoint_time_is_counted_apart_from_training(small_digits):
    problem = poisoned_problem(small_digits)
    outcome = evaluate(problem, CANDIDATE, seed=0, report=lambda step, value: None)
    seconds = outcome["seconds"]
    assert seconds["checkpoints"] > 0 and seconds["fit"] > 0
    assert all(value >= 0 for value in seconds.values())


def test_intermediate_scores_are_reported_and_can_stop_the_trial(small_digits):
    problem = poisoned_problem(small_digits)
    reports = []
    outcome = evaluate(problem, CANDIDATE, seed=0, report=lambda step, value: reports.append((step, value)))
    assert outcome["epochs_run"] == 6
    assert [step for step, _ in reports] == [2, 4]  # every ceil(6 / 3) epochs, before the last
    assert all(0 <= value <= 1 for _, value in reports)

    def prune(step, value):
        raise PruneTrial("stop")

    with pytest.raises(PruneTrial):
        evaluate(problem, CANDIDATE, seed=0, report=prune)


def test_no_intermediate_score_when_too_little_training_is_left_to_save(small_digits, monkeypatch):
    from search.objective import MIN_SAVING_ENV

    problem = poisoned_problem(small_digits)
    monkeypatch.setenv(MIN_SAVING_ENV, "60")  # this trial trains for well under a minute
    reports = []
    outcome = evaluate(problem, CANDIDATE, seed=0, report=lambda step, value: reports.append(step))
    assert reports == [] and outcome["seconds"]["checkpoints"] == 0
    # Unset, the module's default applies (2 s, as the README says). The default is raised here
    # so that the check does not hang on how fast this machine trains (a loaded CI machine
    # trained slowly enough to have more than 2 s left).
    from search import objective

    assert objective.MIN_SAVING_SECONDS == 2.0
    monkeypatch.delenv(MIN_SAVING_ENV)
    monkeypatch.setattr(objective, "MIN_SAVING_SECONDS", 60.0)
    outcome = evaluate(problem, CANDIDATE, seed=0, report=lambda step, value: reports.append(step))
    assert reports == [] and outcome["epochs_run"] == 6


def test_a_checkpoint_must_cost_under_a_third_of_the_training_it_could_save():
    from search.objective import checkpoint_worth_taking

    assert checkpoint_worth_taking(10.0, last_cost=3.0, fixed_min_saving=None)
    assert not checkpoint_worth_taking(10.0, last_cost=3.5, fixed_min_saving=None)
    assert not checkpoint_worth_taking(1.9, last_cost=0.0, fixed_min_saving=None)  # the 2 s floor
    # a fixed SEARCH_CHECKPOINT_MIN_SAVING is the whole rule, whatever checkpoints cost (0: every one)
    assert checkpoint_worth_taking(0.0, last_cost=100.0, fixed_min_saving=0.0)
    assert not checkpoint_worth_taking(5.0, last_cost=0.0, fixed_min_saving=6.0)


def test_the_last_checkpoints_cost_in_the_process_decides_the_next(small_digits, monkeypatch):
    from search import objective

    problem = poisoned_problem(small_digits)
    monkeypatch.delenv(objective.MIN_SAVING_ENV, raising=False)
    monkeypatch.setattr(objective, "MIN_SAVING_SECONDS", 0.0)
    monkeypatch.setitem(objective._last_checkpoint, "seconds", 1e6)  # dearer than any training left
    reports = []
    outcome = evaluate(problem, CANDIDATE, seed=0, report=lambda step, value: reports.append(step))
    assert reports == [] and outcome["epochs_run"] == 6
    monkeypatch.setenv(objective.MIN_SAVING_ENV, "0")  # fixed: taken whatever they cost
    evaluate(problem, CANDIDATE, seed=0, report=lambda step, value: reports.append(step))
    assert reports == [2, 4]
    assert 0 < objective._last_checkpoint["seconds"] < 1e6  # measured, for the next trial


def test_a_diverging_candidate_is_a_failed_trial(small_digits):
    problem = poisoned_problem(small_digits)
    bad = {**CANDIDATE, "scaling": "standard",
           "training": {**CANDIDATE["training"], "learning_rate": 1e12, "optimizer": "sgd"}}
    with pytest.raises(FailedTrial, match="NaN"):
        evaluate(problem, bad, seed=0)


def test_the_split_is_stratified_seeded_and_hashed(small_digits):
    X, y = small_digits
    dataset = Dataset("d", X, y, "image", (8, 8, 1))
    a, b = make_problem(dataset, seed=1), make_problem(dataset, seed=1)
    assert a.split_hash() == b.split_hash() != make_problem(dataset, seed=2).split_hash()
    assert not set(a.search_rows) & set(a.test_rows)
    assert set(np.unique(a.y)) == set(np.unique(a.test_part()[1]))


def test_a_predefined_test_part_is_kept(small_digits):
    X, y = small_digits
    problem = make_problem(Dataset("d", X, y, "image", (8, 8, 1), test_rows=np.arange(200, 300)), folds=3)
    assert list(problem.test_rows) == list(range(200, 300))
    assert list(problem.search_rows) == list(range(200))


def test_a_given_test_part_must_leave_cv_rows_of_every_class_in_the_search_part():
    """A dataset's own test part (a UCR split) can leave a class short in the search part even
    when the whole dataset has plenty: the rows CV runs on are checked, in one line naming
    every class's count. Each class needs a row in every test fold and two in every training
    fold: `folds` rows from 3 folds up, 4 for 2 folds."""
    from encoderkit.errors import DataError
    from search.problem import rows_per_class

    assert [rows_per_class(k) for k in (2, 3, 5, 10)] == [4, 3, 5, 10]
    y = np.array(["a"] * 12 + ["b"] * 3 + ["a"] * 10 + ["b"] * 10)  # 15 search rows, then the test part
    dataset = Dataset("small", np.arange(len(y) * 2.0).reshape(-1, 2), y, "tabular", (2,), test_rows=np.arange(15, 35))
    assert len(make_problem(dataset, folds=3).search_rows) == 15
    with pytest.raises(DataError, match=r"^small: the search part \(the dataset's own training rows\) has 3 rows of class 'b', "
                                        r"too few for 5-fold CV \(each class needs 5: one in every test fold, two in every "
                                        r"training fold; rows per class: 'a' 12, 'b' 3\); use cv=3 \(these rows allow "
                                        r"it\)$"):
        make_problem(dataset, folds=5)
    # (2 folds need 4 rows of each class, 3 folds 3)
    with pytest.raises(DataError, match=r"has 3 rows of class 'b', too few for 2-fold CV \(each class needs 4.*'b' 3\)"
                                        r"; use cv=3 \(these rows allow it\)$"):
        make_problem(dataset, folds=2)
    with pytest.raises(DataError, match=r"'b' 3\)$"):  # a stored study's folds (a resume): none to advise
        make_problem(dataset, folds=5, folds_fixed=True)
    absent = Dataset("absent", dataset.X, np.r_[["a"] * 15, y[15:]], "tabular", (2,), test_rows=np.arange(15, 35))
    with pytest.raises(DataError, match=r"has 0 rows of class 'b'.*rows per class: 'a' 15, 'b' 0\)$"):  # no advice
        make_problem(absent, folds=3)


def test_subsamples_keep_every_class_in_every_fold():
    """A class too rare for a proportional draw to keep in every fold gets the rows CV needs
    from the search part: in the trials' subsample and in the checkpoints' 600 rows."""
    from search.objective import CHECKPOINT_FOLDS, SUBSAMPLE
    from search.problem import rows_per_class, stratified_subsample

    y = np.array([0] * 1990 + [1] * 10)
    assert np.bincount(y[stratified_subsample(y, SUBSAMPLE, 0)])[1] == 3  # too few for 2-fold CV
    checkpoint_rows = stratified_subsample(y, SUBSAMPLE, 0, rows_per_class(CHECKPOINT_FOLDS))
    assert list(np.bincount(y[checkpoint_rows])) == [597, 4]
    problem = make_problem(Dataset("rare", np.zeros((2000, 2)), y, "tabular", (2,)), folds=5, subsample=100)
    assert np.bincount(problem.trial_y)[1] == 5 and len(problem.trial_rows) == 104


def test_any_exception_inside_a_trial_is_a_failed_trial_with_a_one_line_reason(small_digits, monkeypatch):
    from encoderkit.transformer import AutoencoderTransformer

    def broken_fit(self, X, y=None, callbacks=None):
        raise RuntimeError("kernel exploded\nsecond line of a long native message")

    monkeypatch.setattr(AutoencoderTransformer, "fit", broken_fit)
    with pytest.raises(FailedTrial) as failed:
        evaluate(poisoned_problem(small_digits), CANDIDATE, seed=0)
    assert str(failed.value) == "RuntimeError: kernel exploded"


def test_a_shape_the_family_cannot_take_is_a_failed_trial(small_digits):
    X, y = small_digits
    flat = make_problem(Dataset("d", X, y, "tabular", (64,)), folds=3, seed=0)
    candidate = {**CANDIDATE, "family": "conv2d",
                 "family_params": {"layers": [{"filters": 4, "kernel_size": 3, "activation": "relu", "pool": True}]}}
    with pytest.raises(FailedTrial, match="Error: .*shape"):
        evaluate(flat, candidate, seed=0)  # flat rows are no image


def test_out_of_memory_is_retried_once_with_half_the_batch(small_digits, monkeypatch):
    from encoderkit.transformer import AutoencoderTransformer

    real_fit, batches = AutoencoderTransformer.fit, []

    class ResourceExhaustedError(Exception):  # TensorFlow's name; matched by name and message
        pass

    def fit_that_needs_a_small_batch(self, X, y=None, callbacks=None):
        batches.append(self.batch_size)
        if self.batch_size > 32:
            raise ResourceExhaustedError("OOM when allocating tensor")
        return real_fit(self, X, callbacks=callbacks)

    monkeypatch.setattr(AutoencoderTransformer, "fit", fit_that_needs_a_small_batch)
    problem = poisoned_problem(small_digits)
    outcome = evaluate(problem, CANDIDATE, seed=0)
    assert batches == [64, 32] and outcome["retried_batch_size"] == 32
    batches.clear()
    tight = {**CANDIDATE, "training": {**CANDIDATE["training"], "batch_size": 128}}
    with pytest.raises(FailedTrial, match="out of memory, also at batch size 64"):
        evaluate(problem, tight, seed=0)
    assert batches == [128, 64]
    batches.clear()
    single = {**CANDIDATE, "training": {**CANDIDATE["training"], "batch_size": 1}}

    def always_out_of_memory(self, X, y=None, callbacks=None):
        batches.append(self.batch_size)
        raise ResourceExhaustedError("OOM when allocating tensor")

    monkeypatch.setattr(AutoencoderTransformer, "fit", always_out_of_memory)
    with pytest.raises(FailedTrial, match="^out of memory at batch size 1: "):  # no half batch to try
        evaluate(problem, single, seed=0)
    assert batches == [1]


def test_codes_with_nan_are_a_failed_trial(small_digits, monkeypatch):
    """A NaN in the codes (an overflow in the encoder) fails the trial by name, not later as
    the probe's "Input X contains NaN"."""
    from encoderkit.transformer import AutoencoderTransformer

    real_transform = AutoencoderTransformer.transform

    def one_bad_value(self, X):
        codes = real_transform(self, X)
        codes[3, 1] = np.inf
        return codes

    monkeypatch.setattr(AutoencoderTransformer, "transform", one_bad_value)
    with pytest.raises(FailedTrial, match="^the code has NaN or infinite values$"):
        evaluate(poisoned_problem(small_digits), CANDIDATE, seed=0)


def test_the_cost_breakdown_takes_checkpoints_out_of_the_training_time():
    from search.objective import cost_breakdown

    parts = cost_breakdown({"prepare": 0.5, "build": 1.0, "train": 5.0}, 2.0, 0.25, 0.75)
    assert parts == {"prepare": 0.5, "build": 1.0, "fit": 3.0, "checkpoints": 2.0, "encode": 0.25, "probe": 0.75}
    jax = cost_breakdown({"prepare": 0.5, "build": 1.0, "train": 5.0}, 2.0, 0.25, 0.75, {"fit": 1.5, "probe": 0.5})
    assert jax["fit"] == 1.5 and jax["probe"] == 0.25 and jax["compile"] == 2.0


def test_a_trial_in_a_fresh_process_scores_like_one_in_this_process(small_digits, monkeypatch, capfd):
    """... also when a Ctrl-C and a SIGTERM to the process group reach the child while it
    is still starting Python (they killed it with a KeyboardInterrupt traceback: the parent
    decides what a signal ends, and the trial is its to stop)."""
    import multiprocessing.context
    import os
    import signal

    from search.trial_process import evaluate_in_subprocess

    start = multiprocessing.context.SpawnProcess.start

    def start_then_signal(process):
        start(process)
        for signum in (signal.SIGINT, signal.SIGTERM):  # long before the child's first line of ours
            os.kill(process.pid, signum)

    monkeypatch.setattr(multiprocessing.context.SpawnProcess, "start", start_then_signal)
    problem = poisoned_problem(small_digits)
    here, reports = evaluate(problem, CANDIDATE, seed=0), []
    there = evaluate_in_subprocess(problem, CANDIDATE, seed=0, report=lambda step, value: reports.append(step))
    assert there["score"] == pytest.approx(here["score"], abs=0.02)
    assert reports == [2, 4]  # intermediate scores crossed the pipe
    assert "KeyboardInterrupt" not in capfd.readouterr().err


def test_a_trial_process_runs_every_trials_then_is_replaced_and_survives_prunes_and_failures(
        small_digits, monkeypatch):
    """`--fresh-process 3`: one child runs a scored, a pruned and a failed trial (each leaves
    it in step for the next), the fourth trial gets the next child (started, as a spare,
    during the third); a child that dies mid-trial
    is a failed trial and the next trial gets a new one."""
    import os

    from search.trial_process import ChildDied, TrialProcess

    problem = poisoned_problem(small_digits)

    def prune(step, value):
        raise PruneTrial("stop")

    bad = {**CANDIDATE, "scaling": "standard",
           "training": {**CANDIDATE["training"], "learning_rate": 1e12, "optimizer": "sgd"}}
    process = TrialProcess(problem, every=3)
    try:
        first = process(CANDIDATE, 0)
        # A call runs in the child on its problem and counts as no trial (the spare still comes
        # during the third); its exception comes back as it was raised, with the child's traceback
        rows, pid = process.call(rows_and_process, 2)
        assert rows == 2 * len(problem.trial_y) and pid != os.getpid()
        with pytest.raises(DataError, match="no rows like these") as raised:
            process.call(refuse_rows)
        assert "in the trial process" in raised.value.__notes__[-1] and "refuse_rows" in raised.value.__notes__[-1]
        with pytest.raises(OSError) as raised:  # a full disk, as the parent names it (the chain does not travel)
            process.call(fill_the_disk)
        assert raised.value.errno == errno.ENOSPC and raised.value.filename == "export/encoder.keras"
        with pytest.raises(PruneTrial):
            process(CANDIDATE, 0, report=prune)
        with pytest.raises(FailedTrial, match="NaN"):
            process(bad, 0)
        assert process.started == 2  # the next child, started during the third trial
        assert process.call(rows_and_process, 1)[1] != pid  # ... takes a call after the first one's three trials
        again = process(CANDIDATE, 0)
        assert process.started == 2  # ... and runs the fourth
        assert again["score"] == pytest.approx(first["score"], abs=0.02)

        process.close()
        faults.arm("epoch:2:self")  # the next child is handed the hook and kills itself mid-trial
        try:
            with pytest.raises(FailedTrial, match="trial process died"):
                process(CANDIDATE, 0, report=lambda step, value: None)  # epochs pass the crash point
        finally:
            faults.arm(None)
        assert process(CANDIDATE, 0)["score"] == pytest.approx(first["score"], abs=0.02)
        assert process.started == 4
        with pytest.raises(ChildDied, match="exit code 3"):  # a call whose child dies (the OOM killer)
            process.call(die_with_status, 3)
        assert process.call(rows_and_process, 1)[1] not in (pid, os.getpid())  # ... the next call gets a new child
        import json

        with pytest.raises(json.JSONDecodeError):  # Python's own exceptions come back as themselves
            process.call(read_bad_json)
        # a library's: a RuntimeError that names it
        with pytest.raises(RuntimeError, match=r"^numpy\.linalg\.LinAlgError: Singular matrix\n"):
            process.call(invert_a_singular_matrix)
    finally:
        process.close()


def rows_and_process(problem, times):
    """(Called in a trial process:) its problem's trial rows times `times`, and its PID."""
    import os

    return times * len(problem.trial_y), os.getpid()


def refuse_rows(problem):
    raise DataError("no rows like these")


def fill_the_disk(problem):
    try:
        raise OSError(errno.ENOSPC, "No space left on device", "export/encoder.keras")
    except OSError as exc:
        raise RuntimeError("saving the model failed") from exc


def read_bad_json(problem):
    import json

    return json.loads("{not json")


def invert_a_singular_matrix(problem):
    return np.linalg.inv(np.zeros((2, 2)))


def die_with_status(problem, status):
    import os

    os._exit(status)


def test_a_finished_trial_leaves_no_model_alive_and_later_collections_skip_the_frozen_heap(small_digits, monkeypatch):
    """Each trial's transformer and Keras model die with it (one collection per trial), and
    after the first trial the long-lived heap is frozen, so that collection stays cheap."""
    import gc
    import weakref

    from encoderkit.transformer import AutoencoderTransformer

    problem = poisoned_problem(small_digits)
    fitted = []
    original_fit = AutoencoderTransformer.fit

    def fit_and_remember(self, X, y=None, **kwargs):
        result = original_fit(self, X, y, **kwargs)
        fitted.append((weakref.ref(self), weakref.ref(self.autoencoder_)))
        return result

    monkeypatch.setattr(AutoencoderTransformer, "fit", fit_and_remember)
    for seed in (0, 1):
        evaluate(problem, CANDIDATE, seed=seed, report=lambda step, value: None)
    assert len(fitted) == 2
    assert all(transformer() is None and model() is None for transformer, model in fitted)
    assert gc.get_freeze_count() > 0
    thaw_heap()
    assert gc.get_freeze_count() == 0


def test_a_worker_whose_trials_run_in_child_processes_imports_no_keras_and_hands_them_its_thread_cap():
    """An Optuna worker process or a joiner imported TensorFlow only to run its trials in
    child processes (seconds of CPU and hundreds of MB each); the children take its cap."""
    import subprocess
    import sys

    from tests.conftest import ROOT

    code = ("import sys\nfrom search import devices\nfrom search.trial_process import prepare_for_trials\n"
            "prepare_for_trials(1, 3)\n"
            "print(devices.thread_cap(), sorted(m for m in ('tensorflow', 'keras', 'jax') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["3", "[]"]


_ORPHAN = """
import ctypes, os, sys, time

def no_prctl(*args, **kwargs):
    raise OSError("no prctl here")  # as on macOS

ctypes.CDLL = no_prctl
from search.trial_process import die_with

die_with(os.getppid())
open(sys.argv[1], "w").close()  # armed
time.sleep(120)
"""


def test_without_the_kernels_parent_death_signal_a_child_still_ends_soon_after_its_parent(tmp_path):
    """Where prctl is missing (macOS), `die_with` watches the parent from a thread: a trial child
    or worker does not go on training and writing for minutes after its run was killed."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from tests.conftest import ROOT

    armed = tmp_path / "armed"
    parent = subprocess.Popen(
        [sys.executable, "-c", "import subprocess, sys, time\n"
         f"child = subprocess.Popen([sys.executable, '-c', {_ORPHAN!r}, {str(armed)!r}])\n"
         "print(child.pid, flush=True)\ntime.sleep(120)"],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE, text=True)
    child = int(parent.stdout.readline())
    deadline = time.time() + 60
    while not armed.exists():
        assert time.time() < deadline, "the child never armed its watch"
        time.sleep(0.1)
    parent.kill()
    parent.wait()

    def alive():
        try:
            with open(f"/proc/{child}/stat") as stat:
                return stat.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie waits only to be reaped
        except FileNotFoundError:
            return False
        except OSError:  # no /proc
            return _signal_reaches(child)

    deadline = time.time() + 10
    while alive() and time.time() < deadline:
        time.sleep(0.1)
    still = alive()
    if still:
        os.kill(child, signal.SIGKILL)
    assert not still, "the orphaned child outlived its parent by 10 s"


def _signal_reaches(pid):
    import os

    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
