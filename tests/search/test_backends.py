"""Backend conformance: every backend runs the same tiny space on the same budget and leaves
the same results schema, leaderboard, export and resume behaviour. Plus device placement:
Optuna workers through the environment, Ray trials on fake GPUs.

Ray tests share one xdist group (`make test` runs `--dist loadgroup`): Ray's processes are
machine-wide, so they run one after another on one worker."""

import contextlib
import json
import os
import subprocess
import sys

import pytest

from search.testing.backend_conformance import (  # noqa: F401  (stored_trials: other tests' too)
    check_backend, check_timeout_stops_early, finished, stored_trials,
)
from tests.conftest import ROOT, TINY_SPACE, run_cli, run_cli_with_worker_barrier

BACKENDS = [
    pytest.param("optuna", [], id="optuna"),
    pytest.param("ray", ["--workers", "2"], id="ray", marks=pytest.mark.xdist_group("ray")),
    pytest.param("kerastuner", ["--algorithm", "bayesian"], id="kerastuner"),
]


@pytest.mark.parametrize("backend, extra", BACKENDS)
def test_backend_conformance(tmp_path, backend, extra):
    check_backend(backend, tmp_path, extra_args=extra)


@pytest.mark.xdist_group("ray")
def test_ray_resume_after_a_crash_runs_exactly_the_count_and_no_trial_twice(tmp_path):
    """A Ray search killed mid-experiment (SIGKILL right after its second trial is stored, by
    the crash hook, so no timing decides where; Ray's processes with it) resumes to exactly
    the requested count, each configuration once. `Tuner.restore` of the cut-off experiment
    brought its searcher back from an older checkpoint: it suggested stored trials again (same
    configuration and seed) and ran its old sample count, 6 trials for --trials 4."""
    import signal

    study = tmp_path / "study"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": f"{ROOT / 'src'}:{ROOT}",
           "SEARCH_CRASH_AT": "trial_written:2"}
    with open(tmp_path / "stderr", "w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "search", "run", "--backend", "ray", "--space", str(TINY_SPACE), "--trials",
             "5", "--study-dir", str(study), "--no-progress"],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=err, start_new_session=True,
        )
        proc.wait(timeout=600)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # the Ray processes the driver started
    assert proc.returncode == -signal.SIGKILL, (tmp_path / "stderr").read_text()[-3000:]
    assert len(finished(stored_trials(study))) == 2
    # A trial that Ctrl-C or SIGTERM cut short (stored as interrupted): the next experiment runs
    # its configuration first.
    interrupted = _add_interrupted_trial(study, donor=finished(stored_trials(study))[0])

    resumed = run_cli("resume", study, "--no-progress")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    trials = stored_trials(study)
    assert len(finished(trials)) == 5, [(t.number, t.state.name) for t in trials]
    seeds = [t.user_attrs["seed"] for t in finished(trials)]
    assert len(set(seeds)) == len(seeds), seeds  # no stored trial run again
    configs = [json.dumps(t.params, sort_keys=True) for t in finished(trials) if "retry_of" not in t.user_attrs]
    assert len(set(configs)) == len(configs)
    (retry,) = [t for t in trials if t.user_attrs.get("retry_of") == interrupted.number]
    assert retry.params == interrupted.params and retry.state.name in ("COMPLETE", "PRUNED")
    assert (study / "ray" / "exp-2").is_dir()  # a new experiment, not the cut-off one restored


def _add_interrupted_trial(study, donor):
    """A trial stored as interrupted, with a config of its own (the donor's, another learning rate)."""
    import optuna

    stored = optuna.load_study(study_name="search", storage=f"sqlite:///{study / 'study.db'}")
    params = dict(donor.params)
    lr = next(name for name in params if name.endswith("learning_rate"))
    distribution = donor.distributions[lr]
    params[lr] = distribution.low + 0.37 * (distribution.high - distribution.low)
    stored.add_trial(optuna.trial.create_trial(
        state=optuna.trial.TrialState.FAIL, params=params, distributions=donor.distributions,
        user_attrs={"fail_reason": "interrupted (SIGTERM)", "ray_trial_id": "cut-short"}))
    return stored.get_trials(deepcopy=False)[-1]


def test_optuna_workers_get_gpus_round_robin_from_the_environment(tmp_path):
    """`--gpus 0,1 --workers 2`: worker 0 (this process) runs on device 0, worker 1 on device
    1, at the same time. On a CPU machine the ids are only recorded, which is what we check;
    CUDA_VISIBLE_DEVICES declares the two devices, as a machine with two GPUs would."""
    study = tmp_path / "study"
    result = run_cli_with_worker_barrier(study, "--space", TINY_SPACE, "--trials", 6, "--workers", 2, "--gpus", "0,1",
                                         "--no-progress", env={"CUDA_VISIBLE_DEVICES": "0,1"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert_two_devices_at_once(stored_trials(study))


@pytest.mark.xdist_group("ray")
def test_ray_runs_two_trials_at_once_on_fake_gpus_0_and_1(tmp_path):
    assert_two_devices_at_once(_ray_on_fake_gpus(tmp_path / "study", num_gpus=2, gpus_per_trial=1))


def _ray_on_fake_gpus(study, num_gpus, gpus_per_trial):
    """A 4-trial Ray search, 2 at once, on a local Ray that declares `num_gpus` (logical) GPUs."""
    code = f"""
import ray
ray.init(address="local", num_cpus=2, num_gpus={num_gpus}, include_dashboard=False, log_to_driver=False)
from search import engine
engine.run("digits", space={str(TINY_SPACE)!r}, trials=4, backend="ray", workers=2, gpus_per_trial={gpus_per_trial},
           study_dir={str(study)!r}, progress=False, export=False)
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return stored_trials(study)


@pytest.mark.xdist_group("ray")
def test_ray_shares_one_fake_gpu_between_two_trials_at_half_a_gpu_each(tmp_path):
    """`gpus_per_trial=0.5` on one (logical) GPU: two trials run at the same time, both on
    device 0. With a whole GPU per trial they would run one after another; with none, on no
    device."""
    trials = _ray_on_fake_gpus(tmp_path / "study", num_gpus=1, gpus_per_trial=0.5)
    assert len(finished(trials)) >= 4
    assert {t.user_attrs["device"] for t in trials} == {"0"}
    assert _overlapping(trials, trials, distinct=True), "no two trials shared the GPU at the same time"


@pytest.mark.xdist_group("ray")
def test_a_ray_experiment_that_stores_no_trial_stops_the_search_instead_of_starting_another(tmp_path):
    """Under Ray Client (now refused) no trial reached the study, and the search began new
    experiments for ever; any such experiment ends the search with one line."""
    code = f"""
import ray
ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
from search import engine
from search.backends import ray_backend

class Silent:  # an experiment whose trials never report back
    def fit(self):
        return None

ray_backend._new_tuner = lambda *args: Silent()
engine.run("digits", space={str(TINY_SPACE)!r}, trials=2, backend="ray", study_dir={str(tmp_path / "study")!r},
           progress=False, export=False)
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert result.returncode == 1 and "SearchError: Ray ran experiment " in result.stderr, result.stderr[-3000:]
    assert "exp-1 and none of its trials reached the study; stopped" in result.stderr


@pytest.mark.xdist_group("ray")
def test_a_notebooks_next_search_goes_to_the_cluster_it_names_not_the_local_ray_an_earlier_one_started(tmp_path):
    """A search without --address starts Ray in this process and keeps it for the next one;
    the next one, given a cluster, was connected to that local Ray without a word (and Ray's
    checks were skipped as if the caller had started it). A Ray the caller starts after is theirs."""
    code = f"""
import os, ray
from search import engine
from search.preflight import check_machine
from search.settings import RayOptions
engine.run("digits", space={str(TINY_SPACE)!r}, trials=1, backend="ray", study_dir={str(tmp_path / "one")!r},
           progress=False, export=False)
first = ray.get_runtime_context().gcs_address
engine.run("digits", space={str(TINY_SPACE)!r}, trials=1, backend="ray", study_dir={str(tmp_path / "two")!r},
           progress=False, export=False)
print("reused:", ray.get_runtime_context().gcs_address == first)
from search.ray_connection import TUNE_ENVIRONMENT, stop_ray
print("tune settings left:", sorted(key for key in TUNE_ENVIRONMENT if key in os.environ))  # the notebook's Tune
os.environ["RAY_ADDRESS"] = "10.0.0.5:6379"
print("notes:", check_machine("ray", RayOptions()))
try:
    check_machine("ray", RayOptions(address="127.0.0.1:1"))
except Exception as exc:
    print("refused:", exc)
import psutil
family = psutil.Process().children(recursive=True)
stop_ray()  # at once, where ray.shutdown waited a second on each of Ray's processes (they ignore SIGTERM)
print("left running:", [p.name() for p in psutil.wait_procs(family, timeout=20)[1]])
ray.init(address="local", num_cpus=1, include_dashboard=False, log_to_driver=False)  # the caller's own, now
from search.ray_connection import callers_ray
print("callers:", callers_ray())
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "reused: True" in result.stdout
    assert "tune settings left: []" in result.stdout and "left running: []" in result.stdout, result.stdout
    # a note in the caller's own terms: the keyword of search.run, not the command line's flag
    assert "RAY_ADDRESS=10.0.0.5:6379 is set, but without address Ray is started here" in result.stdout, result.stdout
    assert "address='auto' uses that cluster" in result.stdout, result.stdout
    assert "refused: address 127.0.0.1:1: no Ray cluster answers at 127.0.0.1:1" in result.stdout, result.stdout
    assert "callers: True" in result.stdout  # left alone: a search uses it as it is


def test_a_trial_ray_stopped_at_a_rung_is_stored_with_its_real_start_and_end(monkeypatch):
    """ASHA's last report is an intermediate one, with no end time: the stored pruned trial
    still spans from its real start to when it was stopped, not a zero-length instant (which
    made device-overlap checks and the report's timeline wrong)."""
    import time
    from types import SimpleNamespace

    import optuna

    from search.backends import ray_backend
    from search.backends.records import TrialLifecycle
    from search.space import load_space
    from search.suggest import OptunaSuggest, sample

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    space = load_space(str(TINY_SPACE))
    asked = optuna.create_study().ask()
    sample(space, OptunaSuggest(asked))
    session = ray_backend._Session.__new__(ray_backend._Session)
    session.space, session.optuna_study = space, optuna.create_study()
    session.life = TrialLifecycle.__new__(TrialLifecycle)
    session.life.max_failures, session.life.failures_in_a_row, session.life.progress = 10, 0, None
    session.recorded, session.intermediate = set(), {"t1": {1: 0.5}}
    session.retries, session.cut_short_ids = {}, {}  # nothing was cut short before
    # The worker side: a trial that reports one intermediate score and is then stopped.
    reports = []
    monkeypatch.setattr(ray_backend.tune, "report", reports.append)
    monkeypatch.setattr("search.devices.limit_threads", lambda cores: None)

    def stopped_after_one_epoch(problem, candidate, seed, report):
        report(1, 0.5)
        raise KeyboardInterrupt  # stands in for Tune ending the trial at the rung

    monkeypatch.setattr(ray_backend, "evaluate", stopped_after_one_epoch)
    # The node id, as an actor has it: asked of Ray here, it started Ray in the test's process,
    # which a later test of the same worker took for a caller's own ray.init.
    monkeypatch.setattr(ray_backend.ray, "get_runtime_context", lambda: SimpleNamespace(get_node_id=lambda: "node-1"))
    config = {**asked.params, "_number": 0}
    began = time.time()
    with pytest.raises(KeyboardInterrupt):
        ray_backend._trial(config, problem=None, space=space)
    time.sleep(1.0)
    session.record(SimpleNamespace(trial_id="t1", config=config), reports[-1])

    (stored,) = session.optuna_study.get_trials()
    assert stored.state.name == "PRUNED" and stored.intermediate_values == {1: 0.5}
    assert abs(stored.datetime_start.timestamp() - began) < 0.5
    assert 0.9 < (stored.datetime_complete - stored.datetime_start).total_seconds() < 60


@pytest.mark.parametrize("backend", [
    pytest.param("ray", marks=pytest.mark.xdist_group("ray")),
    "kerastuner",
])
def test_timeout_stops_every_backend_early(tmp_path, backend):
    check_timeout_stops_early(backend, tmp_path)


def test_backend_options_are_checked_before_any_work(tmp_path):
    cases = [
        (["--backend", "kerastuner", "--workers", "2"], "--workers"),
        (["--backend", "kerastuner", "--algorithm", "grid"], "--algorithm"),
        (["--backend", "optuna", "--address", "auto"], "--address"),
        (["--backend", "ray", "--gpus-per-trial", "1.5"], "--gpus-per-trial"),
        (["--gpus", "0,x"], "--gpus"),
    ]
    for args, named in cases:
        result = run_cli("run", *args, "--study-dir", tmp_path / "never", "--no-progress")
        assert result.returncode == 2, (args, result.stderr[-2000:])
        assert result.stderr.count("\n") == 1 and named in result.stderr, (args, result.stderr)
        assert not (tmp_path / "never").exists()


def assert_two_devices_at_once(trials):
    """Trials ran on devices 0 and 1, and some ran on both at the same time."""
    by_device = {}
    for trial in trials:
        by_device.setdefault(trial.user_attrs["device"], []).append(trial)
    assert set(by_device) == {"0", "1"}
    assert _overlapping(by_device["0"], by_device["1"])


def _overlapping(first, second, distinct=False) -> bool:
    """Some trial of `first` and some of `second` ran at the same time (`distinct`: two
    different trials, for overlaps within one list)."""
    return any(a.datetime_start < b.datetime_complete and b.datetime_start < a.datetime_complete
               for a in first for b in second if not (distinct and a.number == b.number))


def test_the_trial_count_is_exact_and_a_surplus_trial_from_the_queue_puts_its_config_back():
    """Of two workers starting the last trial at once, the one with the higher trial number
    stands down; if its trial came from the queue (a start point, a retry), the config goes
    back in the queue instead of being lost."""
    import optuna

    from search.backends.optuna_backend import is_surplus, keep_queued

    study = optuna.create_study()
    first = study.ask()  # another worker's trial, running
    study.enqueue_trial({"x": 2})  # a start point still queued
    second = study.ask()  # this worker's next trial takes it
    assert second.number == first.number + 1 and second.suggest_int("x", 0, 3) == 2
    assert not is_surplus(first, 1) and is_surplus(second, 1) and not is_surplus(second, 2)
    keep_queued(second)
    waiting = study.get_trials(states=(optuna.trial.TrialState.WAITING,))
    assert [t.system_attrs["fixed_params"] for t in waiting] == [{"x": 2}]
