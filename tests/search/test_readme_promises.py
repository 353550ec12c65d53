"""README promises that no other test checked, each by a test that fails if the behaviour it
names goes away. Several share one study made by the command line (`table_study`), and the
commands that need no new interpreter (`report`, `replay`, `export`, a refused `resume`) run
in this one, through `search.cli.main`, to keep the suite's time down."""

import importlib.metadata
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys

import numpy as np
import pytest
import yaml

from search import cli
from tests.conftest import ROOT, TINY_SPACE, run_cli

START = [  # the order the README promises ("tried first, in order"); conv2d's goes with its family
    {"family": "conv2d", "code_size": 5},
    {"family": "denoising", "code_size": 7, "denoising.depth": 0, "training.learning_rate": 0.0031},
    {"family": "dense", "code_size": 3, "dense.depth": 1, "dense.layer_0.units": 9},
]
TRIALS = 3
# The tests of the one study run on one xdist worker, so that its fixture runs once.
on_the_table_study = pytest.mark.xdist_group("readme-table-study")


def optuna_trials(study_dir):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    return optuna.load_study(study_name="search", storage=f"sqlite:///{study_dir / 'study.db'}").get_trials()


def finished(trials):
    return [t for t in trials if t.state.name in ("COMPLETE", "PRUNED")]


def cli_main(capsys, *args):
    """`python -m search ARGS` in this process: (exit status, stdout, stderr)."""
    capsys.readouterr()
    status = cli.main([str(a) for a in args])
    out, err = capsys.readouterr()
    return status, out, err


# Session scope: a module fixture is made again whenever xdist runs another module's test
# between two of this group's (seen in CI: twice per run).
@pytest.fixture(scope="session")
def table_study(tmp_path_factory):
    """A tabular CSV (digits' pixels as columns) searched with the tiny space plus a conv2d
    family (which cannot take tabular data), three start points, and the `auto` probe."""
    from sklearn.datasets import load_digits

    folder = tmp_path_factory.mktemp("promises")
    X, y = load_digits(return_X_y=True)
    header = ",".join([f"px{i}" for i in range(64)] + ["target"])
    np.savetxt(folder / "table.csv", np.column_stack([X[:300], y[:300]]), fmt="%g", delimiter=",", header=header,
               comments="")
    space = yaml.safe_load(TINY_SPACE.read_text())
    space["families"]["conv2d"] = {"stack": {"depth": 1, "filters": 4, "kernel_size": 3, "activation": "relu",
                                             "pool": True}}
    space["probe"] = {"model": "auto", "metric": "auto", "cv": 3}
    space["start"] = START
    (folder / "space.yaml").write_text(yaml.safe_dump(space, sort_keys=False))
    study = folder / "study"
    result = run_cli("run", "--data", folder / "table.csv", "--space", folder / "space.yaml", "--trials", TRIALS,
                     "--study-dir", study, "--no-progress")
    assert result.returncode == 0, result.stderr[-3000:]
    return study, result.stdout


@on_the_table_study
def test_families_that_cannot_take_the_data_are_dropped_with_a_note_and_start_points_run_first_in_order(
        table_study):
    study, stdout = table_study
    assert "note: family 'conv2d' dropped, with its start point 0: it does not take tabular data" in stdout
    trials = sorted(optuna_trials(study), key=lambda t: t.number)
    assert len(finished(trials)) == TRIALS
    assert all(t.user_attrs["candidate"]["family"] in ("dense", "denoising") for t in trials)
    # The two start points left are the study's first two trials, in the file's order.
    for trial, point in zip(trials[:2], START[1:]):
        assert point.items() <= trial.params.items(), (trial.number, trial.params)


@on_the_table_study
def test_trials_rank_with_the_auto_probe_and_every_held_out_score_uses_the_reference(table_study, tmp_path,
                                                                                      capsys, monkeypatch):
    """The space's probe is `auto` (the cheap logistic regression on a CPU): the trials' CV
    used it, and the export's held-out scores (winner and baselines) the reference."""
    from encoderkit import probe

    study, _ = table_study
    assert {t.user_attrs["probe"] for t in finished(optuna_trials(study))} == {probe.resolve_probe("auto")}
    assert probe.resolve_probe("auto") != probe.REFERENCE  # else this test would prove nothing
    copy = shutil.copytree(study, tmp_path / "study")
    made, real = [], probe.make_probe

    def spy(model=probe.REFERENCE):
        caller = sys._getframe(1)
        while caller.f_code.co_name.startswith("_"):  # the probe module's private helpers
            caller = caller.f_back
        made.append((caller.f_code.co_name, probe.resolve_probe(model)))
        return real(model)

    monkeypatch.setattr(probe, "make_probe", spy)
    status, out, err = cli_main(capsys, "export", copy)
    assert status == 0, err
    manifest = json.loads((copy / "export" / "manifest.json").read_text())
    held_out = 1 + len(manifest["baselines_test"])  # the winner, raw and PCA
    assert made == [("test_score_and_resamples", probe.REFERENCE)] * held_out


@on_the_table_study
def test_threads_are_capped_per_worker_also_in_the_trial_process(table_study):
    """The default runs trials in a child process (`--fresh-process 25`): it gets the
    worker's thread cap, cores / workers (here one worker: every core, set explicitly)."""
    from search import devices

    study, _ = table_study
    assert json.loads((study / "manifest.json").read_text())["fresh_process"] == 25
    assert {t.user_attrs["threads"] for t in finished(optuna_trials(study))} == {devices.cores_per_worker(1)}


@on_the_table_study
def test_a_corrupt_study_db_is_refused_in_one_line_and_left_as_it_was(table_study, tmp_path, capsys):
    study = shutil.copytree(table_study[0], tmp_path / "study")
    db = study / "study.db"
    with open(db, "r+b") as file:  # a damaged b-tree page header: "database disk image is malformed"
        file.seek(4096)
        file.write(b"\x0d\xff\xff\xff\xff\xff\xff\xff")
    before = db.read_bytes()
    status, out, err = cli_main(capsys, "resume", study, "--no-progress")
    assert status == 2, err[-2000:]
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {db}: ") and "malformed" in lines[0], lines
    assert db.read_bytes() == before
    assert not list(study.glob("study.db-*"))  # no journal or WAL left beside it


def _add_stale_trial_of_another_host(study, donor):
    """A RUNNING trial that a worker on another machine began and stopped beating for 5
    minutes (Optuna's heartbeat table, as a dead worker leaves it)."""
    import optuna

    from search.storage import open_storage

    storage = open_storage(f"sqlite:///{study / 'study.db'}")
    optuna_study = optuna.load_study(study_name="search", storage=storage)
    attrs = {**donor.user_attrs, "worker_host": "another-machine", "worker_pid": 4242, "seed": 99}
    trial_id = storage.create_new_trial(optuna_study._study_id, template_trial=optuna.trial.create_trial(
        state=optuna.trial.TrialState.RUNNING, params=donor.params, distributions=donor.distributions,
        user_attrs={k: v for k, v in attrs.items() if k in ("candidate", "seed", "worker_host", "worker_pid", "device")}))
    storage.record_heartbeat(trial_id)
    with sqlite3.connect(study / "study.db") as db:
        db.execute("update trial_heartbeats set heartbeat = datetime('now', '-300 seconds') where trial_id = ?",
                   (trial_id,))
    return storage.get_trial_number_from_id(trial_id)


@on_the_table_study
def test_resume_fails_another_hosts_silent_trial_runs_its_config_again_and_keeps_the_keras_backend(
        table_study, tmp_path, capsys):
    """`resume`: a trial left RUNNING on another host is failed once its heartbeat is older
    than 60 s and its config runs again. The same resume keeps the study's Keras backend
    (JAX here, while the environment says TensorFlow) for its trial and its export."""
    from search import storage

    assert (storage.HEARTBEAT_SECONDS, storage.GRACE_BEATS * storage.HEARTBEAT_SECONDS) == (15, 60)  # the README's
    study = shutil.copytree(table_study[0], tmp_path / "study")
    donor = next(t for t in optuna_trials(study) if t.state.name == "COMPLETE")
    stale = _add_stale_trial_of_another_host(study, donor)
    manifest = json.loads((study / "manifest.json").read_text())
    manifest["trials"] = TRIALS + 1  # the stale trial's retry makes the count
    assert manifest["keras_backend"] == "tensorflow"
    manifest["keras_backend"] = "jax"  # (JAX is a test dependency: pyproject's dev extra)
    (study / "manifest.json").write_text(json.dumps(manifest))

    resumed = run_cli("resume", study, "--no-progress", env={"KERAS_BACKEND": "tensorflow"}, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    trials = {t.number: t for t in optuna_trials(study)}
    assert trials[stale].state.name == "FAIL"
    (retry,) = [t for t in trials.values() if t.system_attrs.get("failed_trial") == stale]
    assert retry.params == donor.params and retry.state.name in ("COMPLETE", "PRUNED")
    assert retry.user_attrs["worker_host"] != "another-machine"
    assert len(finished(trials.values())) == TRIALS + 1
    assert "its worker stopped answering (heartbeat lost)" in resumed.stdout
    # a trial under JAX records the seconds JAX spent compiling; the export names its backend
    assert "compile" in retry.user_attrs["seconds"] and retry.user_attrs["threads"] is None
    by_stage = retry.user_attrs["compile_by_stage"]  # the same seconds, by the stage they fell in
    assert set(by_stage) == {"prepare", "build", "fit", "checkpoints", "encode", "probe"}
    assert abs(sum(by_stage.values()) - retry.user_attrs["seconds"]["compile"]) < 0.01
    assert json.loads((study / "export" / "manifest.json").read_text())["keras_backend"] == "jax"
    # `export` and `replay` fit the study's models too: in a process that already runs another
    # backend they refuse in one line (they exported and replayed under it, silently)
    import keras

    assert keras.backend.backend() == "tensorflow"
    for command in ("export", "replay"):
        status, out, err = cli_main(capsys, command, study, "--trial", donor.number)
        assert status == 2 and err == ("error: study uses Keras backend 'jax' but this process already runs "
                                       "'tensorflow'; set KERAS_BACKEND=jax\n"), (command, err)
    assert not (study / f"export-trial-{donor.number}").exists()
    exported = run_cli("export", study, "--trial", donor.number, env={"KERAS_BACKEND": "tensorflow"}, timeout=300)
    assert exported.returncode == 0, exported.stderr[-3000:]  # a command of its own takes the study's
    assert json.loads((study / f"export-trial-{donor.number}" / "manifest.json").read_text())["keras_backend"] == "jax"


def test_the_median_pruner_prunes_a_trial_behind_the_median_and_stores_it_pruned(tmp_path, monkeypatch):
    """The optuna backend's own loop (`optimize`), with trials that report fixed intermediate
    scores: after the pruner's five start-up trials, one far behind the median at its first
    checkpoint is stopped there and stored PRUNED; the next good one completes."""
    import contextlib

    from search.backends import optuna_backend
    from search.space import load_space
    from search.study import Study

    behind = 5
    reported = {}

    def run_trial(candidate, seed, report):
        number = seed  # the study's seed is 0: a trial's seed is its number
        score = 0.1 if number == behind else 0.9
        for epoch in (1, 2):
            reported.setdefault(number, []).append(epoch)
            report(epoch, score)
        return {"score": score, "score_std": 0.0, "epochs_run": 3, "rows": 1, "seconds": {}}

    monkeypatch.setattr(optuna_backend, "trial_runner", lambda problem, every: contextlib.nullcontext(run_trial))
    study = Study(tmp_path, {"seed": 0, "trials": behind + 2, "max_failures": 3, "workers": 1, "fresh_process": 0,
                             "gpus": []})
    optuna_backend.optimize(study, None, load_space(str(TINY_SPACE)))
    states = {t.number: t.state.name for t in optuna_trials(tmp_path)}
    assert states == {**{n: "COMPLETE" for n in range(behind + 2)}, behind: "PRUNED"}
    assert reported[behind] == [1]  # stopped at its first checkpoint


# In a fresh interpreter: signals sent to the test process itself would reach pytest-xdist's
# worker wherever its handlers stand, and a stray KeyboardInterrupt there takes the worker down.
_CTRL_C = """
import os, signal, time
from search import interrupts

before = signal.getsignal(signal.SIGINT)  # Python's default, or SIG_IGN under a shell's background job
with interrupts.graceful():
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(0.05)  # Python runs the handler between bytecodes: nothing is raised
    assert interrupts.requested()
    try:
        interrupts.check()  # ... until a safe point asks
        raise SystemExit("a safe point did not raise after Ctrl-C")
    except KeyboardInterrupt:
        pass
    try:
        os.kill(os.getpid(), signal.SIGINT)
        for _ in range(200):  # no safe point in here: only the second Ctrl-C can end it
            time.sleep(0.01)
        raise SystemExit("a second Ctrl-C did not stop at once")
    except KeyboardInterrupt:
        pass
assert signal.getsignal(signal.SIGINT) is before  # the handler found is put back
assert not interrupts.requested()  # handled: the next search or replay in a notebook starts afresh
assert interrupts.cause() == "Ctrl-C" and interrupts.exit_status() == 130

before_term = signal.getsignal(signal.SIGTERM)
with interrupts.graceful():  # SIGTERM (ray job stop, docker stop, Slurm) asks for the same stop
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(0.05)
    assert interrupts.requested() and interrupts.cause() == "SIGTERM"
assert signal.getsignal(signal.SIGTERM) is before_term
assert interrupts.exit_status() == 143  # what a shell reports for a process ended by SIGTERM

signal.signal(signal.SIGTERM, signal.SIG_IGN)  # `nohup`-like callers that ignore it keep it ignored
with interrupts.graceful():
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_IGN
print("ok")
"""


def test_a_first_ctrl_c_or_sigterm_asks_for_a_stop_at_a_safe_point_and_a_second_stops_at_once():
    result = subprocess.run([sys.executable, "-c", _CTRL_C], capture_output=True, text=True, cwd=ROOT, timeout=60,
                            env={**os.environ, "PYTHONPATH": f"{ROOT / 'src'}:{ROOT}"})
    assert result.returncode == 0 and result.stdout == "ok\n", result.stderr[-2000:]


# A command stage outside the search loop (baseline scores, the refit, `export`): SIGTERM there
# (a scheduler's time limit) ends the command at once, saying so, with 143.
_SIGTERM_OUTSIDE_THE_SEARCH = """
import os, signal, sys, time
from search import cli

def refit_like(args):
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(5)
    raise SystemExit("SIGTERM did not stop the command")

cli.COMMANDS["spaces"] = refit_like
before = signal.getsignal(signal.SIGTERM)
status = cli.main(["spaces"])
assert signal.getsignal(signal.SIGTERM) is before  # a caller's own handler is put back
sys.exit(status)
"""


def test_sigterm_outside_the_search_loop_ends_the_command_at_once_saying_so():
    result = subprocess.run([sys.executable, "-c", _SIGTERM_OUTSIDE_THE_SEARCH], capture_output=True, text=True,
                            cwd=ROOT, timeout=60, env={**os.environ, "PYTHONPATH": f"{ROOT / 'src'}:{ROOT}"})
    assert result.returncode == 143, result.stderr[-2000:]
    assert result.stderr == "interrupted\n"


def test_gpus_auto_none_and_ids_memory_growth_and_thread_caps(monkeypatch):
    """`--gpus auto` takes every GPU the machine has, round-robin over the workers with memory
    growth on; `--gpus none` pins nothing; threads are capped at cores / workers."""
    from search import devices
    from search.backends.optuna_backend import worker_env
    from search.settings import OptunaOptions

    growth = {"TF_FORCE_GPU_ALLOW_GROWTH": "true", "XLA_PYTHON_CLIENT_PREALLOCATE": "false"}
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")  # a machine with two GPUs, as CUDA shows it
    auto = OptunaOptions(workers=3, gpus="auto")
    assert auto.gpus == ["0", "1"] and OptunaOptions(gpus="1").gpus == ["1"]
    assert auto.process_env() == {"CUDA_VISIBLE_DEVICES": "0", **growth}  # worker 0: this process
    for index, device in ((1, "1"), (2, "0")):
        env = worker_env(index, devices.for_worker(auto.gpus, index))
        assert {k: env[k] for k in ("CUDA_VISIBLE_DEVICES", *growth)} == {"CUDA_VISIBLE_DEVICES": device, **growth}
    none = OptunaOptions(workers=2, gpus="none")
    assert none.gpus == [] and none.process_env() == {}
    assert not set(growth) & (set(worker_env(1, devices.for_worker(none.gpus, 1))) - set(os.environ))

    monkeypatch.setattr(devices, "usable_cores", lambda: 8)
    assert [devices.cores_per_worker(w) for w in (1, 2, 3, 16)] == [8, 4, 2, 1]
    code = ("from search import devices; devices.limit_threads(3); import tensorflow as tf;"
            "print(tf.config.threading.get_intra_op_parallelism_threads(), devices.intra_op_threads(),"
            " devices.thread_cap())")
    env = {**os.environ, "KERAS_BACKEND": "tensorflow", "PYTHONPATH": f"{ROOT / 'src'}:{ROOT}"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["3", "3", "3"]


@pytest.mark.xdist_group("ray")
def test_ray_cpus_per_trial_reused_actors_and_report_and_replay_of_a_ray_study(tmp_path, capsys):
    """`cpus_per_trial=2` on a Ray of 2 CPUs: two workers' worth of trials run one at a time,
    each with TensorFlow capped at 2 threads, all in one actor (reused, TensorFlow imported
    once). `report` and `replay` work on the study as on the optuna backend's."""
    study = tmp_path / "study"
    code = f"""
import ray
ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
from search import engine
engine.run("digits", space={str(TINY_SPACE)!r}, trials=3, backend="ray", workers=2, cpus_per_trial=2,
           study_dir={str(study)!r}, progress=False)
"""
    # Intermediate scores off in this test: on a loaded machine they let ASHA stop a trial,
    # and a stopped trial carries no outcome (threads) to check.
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "PYTHONPATH": f"{ROOT / 'src'}:{ROOT}",
           "SEARCH_CHECKPOINT_MIN_SAVING": "1e9"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    trials = sorted(finished(optuna_trials(study)), key=lambda t: t.datetime_start)
    assert len(trials) == 3 and {t.state.name for t in trials} == {"COMPLETE"}
    assert all(a.datetime_complete <= b.datetime_start for a, b in zip(trials, trials[1:])), "ran at once"
    assert len({t.user_attrs["worker_pid"] for t in trials}) == 1, "a new actor per trial"
    assert {t.user_attrs["threads"] for t in trials} == {2}
    _report_and_replay(study, capsys, len(trials))


def test_kerastuner_hyperband_allocates_clamped_epochs_stops_at_the_count_and_report_and_replay_work(
        tmp_path, capsys):
    """Hyperband's `tuner/epochs` (1 or 3 for the tiny space's epochs 2-3) is each trial's
    epochs, clamped into the space's range and stored as the trial's parameter. Its first
    bracket runs 3 trials of 1 epoch, then the best of them for 3; the search stops at the
    count (whole brackets ran before, however many trials they held)."""
    study = tmp_path / "study"
    status, out, err = cli_main(capsys, "run", "--backend", "kerastuner", "--algorithm", "hyperband", "--space",
                                TINY_SPACE, "--trials", 4, "--study-dir", study, "--no-progress")
    assert status == 0, err[-3000:]
    trials = finished(optuna_trials(study))
    assert len(trials) == 4
    allocated = {}
    for path in (study / "kerastuner").glob("trial_*/trial.json"):
        record = json.loads(path.read_text())
        allocated[record["trial_id"]] = record["hyperparameters"]["values"]["tuner/epochs"]
    assert min(allocated.values()) < 2 <= 3 == max(allocated.values())  # the clamp had work to do
    for trial in trials:
        epochs = min(max(allocated[trial.user_attrs["kerastuner_trial_id"]], 2), 3)
        assert trial.params["training.epochs"] == trial.user_attrs["candidate"]["training"]["epochs"] == epochs
        assert trial.user_attrs["epochs_run"] <= epochs
    _report_and_replay(study, capsys, len(trials))


def _report_and_replay(study, capsys, count):
    backend = json.loads((study / "manifest.json").read_text())["backend"]
    tuner = {"ray": "ray", "kerastuner": "keras-tuner"}[backend]  # the tuner's version is recorded with the rest
    assert json.loads((study / "manifest.json").read_text())["packages"][tuner] == importlib.metadata.version(tuner)
    status, out, err = cli_main(capsys, "report", study)
    assert status == 0, err[-2000:]
    assert out.startswith(f"Leaderboard (accuracy, {count} trials") and "Held-out test" in out
    best = json.loads((study / "export.json").read_text())["trial"]
    status, out, err = cli_main(capsys, "replay", study, "--trial", best)
    assert status == 0, out + err[-2000:]
    assert f"trial {best}: stored CV accuracy" in out and ": matches (difference" in out


def test_the_readme_names_each_shipped_space_with_the_families_it_holds():
    """The README's list of shipped spaces ("`image` (conv2d, ...)") and the space files agree."""
    from encoderkit.families import FAMILIES
    from search.space import builtin_spaces, load_space

    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Search spaces\n", 1)[1].split("\n## ", 1)[0]
    listing = section.split("\n\n", 1)[0].split(". ", 1)[0]  # the first sentence
    named = {}
    for name, text in re.findall(r"`([\w-]+)` \(([^)]*)\)", listing):
        named[name] = {w for w in re.findall(r"[a-z0-9]+", text.split(";")[0]) if w in FAMILIES}
    shipped = builtin_spaces()
    assert set(named) == set(shipped), (named, shipped)
    for name, path in shipped.items():
        assert named[name] == set(load_space(str(path)).family_names), name


def test_every_measurement_file_the_readme_cites_exists_and_names_its_command():
    """A number in the README comes from a file in benchmarks/results/ that says which command
    produced it (a file a script only `writes` may not exist yet)."""
    readme = (ROOT / "README.md").read_text()
    results = ROOT / "benchmarks" / "results"
    cited = {}
    for match in re.finditer(r"(?:benchmarks/results/)?\b([a-z_-]+)\.md\b", readme):
        if match.group(1) in ("README", "NAME"):
            continue
        cited[match.group(1)] = readme[max(0, match.start() - 8):match.start()].rstrip().endswith("writes")
    assert {"memory", "probe", "probe_rows", "device_probe", "article", "compare", "scaling"} <= set(cited), cited
    for name, only_written in cited.items():
        path = results / f"{name}.md"
        if only_written and not path.exists():
            continue
        assert path.is_file(), f"README cites {name}.md, which benchmarks/results/ lacks"
        assert re.search(r"`[^`\n]*benchmarks/\w+\.py[^`\n]*`", path.read_text()), f"{path} names no command"
