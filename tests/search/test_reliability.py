"""Crashes, interrupts, failing trials and replays, through the command line in fresh
interpreters. Crashes are real SIGKILLs at exact points (see search/faults.py)."""

import contextlib
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time

import pytest

from tests.conftest import ROOT, TINY_SPACE, run_cli

TRIALS = 4


def _env(extra=None):
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": f"{ROOT / 'src'}:{ROOT}", **(extra or {})}


def run_until_killed(tmp_path, *args, env=None):
    """Runs the CLI in its own session with output to files (not pipes): a process killed
    with SIGKILL leaves joblib's pool workers behind, which would hold pipes open for
    minutes. They are killed with the session afterwards, as a terminal would."""
    with open(tmp_path / "stdout", "w") as out, open(tmp_path / "stderr", "w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "search", *map(str, args)], cwd=ROOT, env=_env(env),
                                stdout=out, stderr=err, start_new_session=True)
        proc.wait(timeout=600)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    return proc


def trials_by_state(study):
    with sqlite3.connect(study / "study.db") as db:
        return {
            number: (state, value)
            for number, state, value in db.execute(
                "select t.number, t.state, v.value from trials t left join trial_values v using (trial_id)"
            )
        }


def user_attr(study, key):
    with sqlite3.connect(study / "study.db") as db:
        return {
            number: json.loads(value)
            for number, value in db.execute(
                "select t.number, a.value_json from trials t join trial_user_attributes a using (trial_id) "
                "where a.key = ?", (key,)
            )
        }


def finished(states):
    return {n: v for n, v in states.items() if v[0] in ("COMPLETE", "PRUNED")}


@pytest.mark.parametrize("point", ["epoch:5", "trial_written:2", "export_staged"])
def test_sigkill_at_any_point_then_resume_reaches_the_count_with_nothing_lost(tmp_path, point):
    study = tmp_path / "study"
    args = ("run", "--space", TINY_SPACE, "--trials", TRIALS, "--study-dir", study, "--no-progress")
    crashed = run_until_killed(tmp_path, *args, env={"SEARCH_CRASH_AT": point})
    assert crashed.returncode == -signal.SIGKILL, (tmp_path / "stderr").read_text()[-2000:]
    assert f"SEARCH_CRASH_AT={point}: test hook kills process" in (tmp_path / "stderr").read_text()
    before = trials_by_state(study)
    assert not (study / "export").exists() or (study / "export" / "manifest.json").exists()

    resumed = run_cli("resume", study, "--no-progress")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    after = trials_by_state(study)
    assert len(finished(after)) == TRIALS
    for number, state in finished(before).items():  # nothing finished before the crash changed
        assert after[number] == state
    assert "RUNNING" not in {s for s, _ in after.values()}
    with sqlite3.connect(study / "study.db") as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert sorted(p.name for p in (study / "export").iterdir()) == [
        "autoencoder.keras", "encoder.joblib", "encoder.keras", "manifest.json", "preprocessing.npz"]
    assert not list(study.glob(".export.*"))  # no half-written export left behind
    if point != "export_staged":  # the killed trial is failed with a reason and its config re-run
        (killed,) = [n for n, (s, _) in before.items() if s == "RUNNING"]
        assert after[killed][0] == "FAIL"
        assert "died during the trial" in user_attr(study, "fail_reason")[killed]
        assert killed in user_attr(study, "retry_of").values()
        assert "note: trial" in resumed.stdout


def test_an_export_killed_while_staged_leaves_nothing_after_the_next_export(tmp_path):
    """Also where the run's refit dies in its trial child (the OOM killer): the run says so in
    one line, exit status 1, and `resume` makes the export."""
    study = tmp_path / "study"
    made = run_cli("run", "--space", TINY_SPACE, "--trials", 1, "--study-dir", study, "--no-progress",
                   env={"SEARCH_CRASH_AT": "export_staged:self"})
    assert made.returncode == 1 and "Traceback" not in made.stderr, made.stderr[-2000:]
    assert (f"error: {study}: trial process died (exit code -9) while refitting the best trial; what is stored is "
            f"kept, and python -m search resume {study} goes on") in made.stderr.splitlines(), made.stderr[-2000:]
    assert list(study.glob(".export.tmp-*")) and not (study / "export").exists()
    assert "Leaderboard (" in made.stdout and "1 complete" in made.stdout, made.stdout  # what it stored
    resumed = run_cli("resume", study, "--no-progress")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert not list(study.glob(".export.*")) and (study / "export" / "manifest.json").is_file()
    crashed = run_until_killed(tmp_path, "export", study, "--trial", 0, env={"SEARCH_CRASH_AT": "export_staged"})
    assert crashed.returncode == -signal.SIGKILL, (tmp_path / "stderr").read_text()[-2000:]
    assert list(study.glob(".export-trial-0.tmp-*"))  # the killed export's staging copy
    again = run_cli("export", study, "--trial", 0)
    assert again.returncode == 0, again.stderr[-2000:]
    assert not list(study.glob(".export-trial-0.*")) and (study / "export-trial-0" / "manifest.json").is_file()


# Trials that last many seconds by design (no early stop), so a trial seen running is still
# running when the signal arrives, however loaded the machine.
LONG_TRIALS = """
name: long-trials
code_size: 4
training: {epochs: 400, batch_size: 16, patience: 1000, learning_rate: {float: [1.0e-3, 1.0e-2]}}
families: {dense: {stack: {depth: 1, units: 8, activation: relu}}}
probe: {model: logistic_regression, cv: 3}
"""


def _run_until_a_trial_is(tmp_path, space_text, trials, state, timeout):
    """(the `run` process, its study directory), once a trial of the study is in `state`."""
    study = tmp_path / "study"
    space = tmp_path / "long.yaml"
    space.write_text(space_text)
    proc = subprocess.Popen(
        [sys.executable, "-m", "search", "run", "--space", str(space), "--trials", str(trials),
         "--study-dir", str(study), "--no-progress"],
        cwd=ROOT, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    deadline = time.time() + timeout
    while state not in {s for s, _ in _safe_states(study).values()}:
        assert proc.poll() is None and time.time() < deadline, proc.communicate()
        time.sleep(0.2)
    return proc, study


@pytest.mark.parametrize("signum, cause", [(signal.SIGINT, "Ctrl-C"), (signal.SIGTERM, "SIGTERM")])
def test_ctrl_c_or_sigterm_marks_the_trial_prints_the_leaderboard_and_exits_128_plus_the_signal(tmp_path, signum, cause):
    """SIGTERM is how `ray job stop`, `docker stop` and Slurm end a job: the same as Ctrl-C."""
    proc, study = _run_until_a_trial_is(tmp_path, LONG_TRIALS, 3, "RUNNING", timeout=240)
    time.sleep(2)  # into its training (a trial lasts far longer)
    proc.send_signal(signum)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signum, stderr[-2000:]
    assert "Leaderboard" in stdout and "Traceback" not in stderr
    assert f"python -m search resume {study}" in stderr
    states = trials_by_state(study)
    assert list(states.values()) == [("FAIL", None), ("WAITING", None)], "the one trial, cut short, and its config queued"
    assert user_attr(study, "fail_reason") == {0: f"interrupted ({cause})"}
    assert user_attr(study, "retry_of") == {1: 0}  # `resume` runs the config that was cut short first
    assert "0 complete, 0 pruned, 1 failed, 1 queued)" in stdout


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="finds the run's processes through /proc")
def test_ctrl_c_while_the_trial_child_refits_the_winner_ends_it_and_resume_exports(tmp_path):
    """The run refits its winner in its trial child: a Ctrl-C there stops the child at once (no
    process left behind), exits 130 with the leaderboard, and `resume` makes the export."""
    # (a refit of 10 s or more)
    proc, study = _run_until_a_trial_is(tmp_path, LONG_TRIALS.replace("epochs: 400", "epochs: 40"), 1, "COMPLETE",
                                        timeout=400)
    time.sleep(2)  # into the refit, in the child that ran the trial
    family = _descendants(proc.pid)
    assert family, "the trial child"
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr[-2000:]
    assert "Leaderboard" in stdout and "Traceback" not in stderr, stderr[-2000:]
    assert f"python -m search resume {study}" in stderr
    assert not (study / "export").exists()
    deadline = time.time() + 20
    while any(_alive(pid) for pid in family) and time.time() < deadline:
        time.sleep(0.2)
    assert not any(_alive(pid) for pid in family), "a process of the run outlived it"
    resumed = run_cli("resume", study, "--no-progress")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert (study / "export" / "manifest.json").is_file() and not list(study.glob(".export.*"))
    assert list(trials_by_state(study)) == [0]  # the refit was not a trial, and no trial ran again


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie waits only to be reaped
    except OSError:
        return False


def _descendants(pid: int) -> list[int]:
    parents = {}
    for entry in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError), open(f"/proc/{entry}/stat") as stat:
            parents[int(entry)] = int(stat.read().rsplit(")", 1)[1].split()[1])
    found, frontier = [], [pid]
    while frontier:
        children = [child for child, parent in parents.items() if parent in frontier]
        found += children
        frontier = children
    return found


def _workers_of(study) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                args = cmdline.read().split(b"\0")
        except OSError:
            continue
        if b"_worker" in args and str(study).encode() in args:
            found.append(int(entry))
    return found


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="finds the worker processes through /proc")
def test_the_extra_worker_processes_die_with_a_killed_driver(tmp_path):
    """They arm the kernel's parent-death signal themselves (a preexec_fn did it, which runs
    Python between fork and exec: JAX warned of a deadlock once its threads ran)."""
    study = tmp_path / "study"
    space = tmp_path / "long.yaml"
    space.write_text(LONG_TRIALS)
    proc = subprocess.Popen(
        [sys.executable, "-m", "search", "run", "--space", str(space), "--trials", "4", "--workers", "2",
         "--study-dir", str(study), "--no-progress"],
        cwd=ROOT, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 240
    while not _workers_of(study):
        assert proc.poll() is None and time.time() < deadline
        time.sleep(0.2)
    workers = _workers_of(study)
    time.sleep(1)  # past its start-up, where the signal is armed
    proc.kill()
    proc.wait()
    deadline = time.time() + 30
    while any(_alive(pid) for pid in workers) and time.time() < deadline:
        time.sleep(0.2)
    assert not any(_alive(pid) for pid in workers), "a worker outlived its killed driver"


@pytest.mark.xdist_group("ray")
@pytest.mark.parametrize("to_the_whole_job", [False, True], ids=["driver", "every-process"])
def test_sigterm_to_a_ray_search_stores_the_running_trial_as_interrupted(tmp_path, to_the_whole_job):
    """Tune stops a running trial without completing it: the backend stores it, as the others do.
    Slurm, systemd and `timeout` send the SIGTERM to every process of the job, the local Ray's
    GCS and raylet included: the driver then waited a minute on its GCS and exited 1 with no
    leaderboard (Ray's processes now start with SIGTERM blocked, as Ray blocks SIGINT there)."""
    study = tmp_path / "study"
    space = tmp_path / "long.yaml"
    space.write_text(LONG_TRIALS)
    proc = subprocess.Popen(
        [sys.executable, "-m", "search", "run", "--backend", "ray", "--space", str(space), "--trials", "3",
         "--study-dir", str(study), "--no-progress"],
        cwd=ROOT, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=to_the_whole_job,  # its own process group: the job's, as a scheduler sees it
    )
    from tests.ray_processes import process_tree, processes

    deadline = time.time() + 300
    # An actor of this run executes the trial (Ray names the process after the task it runs).
    # Tune's trial directory alone came too early on a loaded machine: the trial was still
    # pending, Tune stopped it before it began, and rightly nothing was stored.
    while not any("ImplicitFunc.train" in command for command in process_tree(processes(), [str(study)]).values()):
        assert proc.poll() is None and time.time() < deadline, proc.communicate()
        time.sleep(0.5)
    time.sleep(5)  # it imports Keras and trains (a trial lasts far longer)
    if to_the_whole_job:
        os.killpg(proc.pid, signal.SIGTERM)
    else:
        proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=180)
    assert proc.returncode == 143, stderr[-2000:]
    assert "Leaderboard" in stdout and f"python -m search resume {study}" in stderr
    assert list(trials_by_state(study).values()) == [("FAIL", None)], "the running trial, stored"
    assert user_attr(study, "fail_reason") == {0: "interrupted (SIGTERM)"}


def test_a_trial_whose_worker_died_before_signing_it_is_failed_and_the_count_is_reached(tmp_path):
    """kill -9 between Optuna's `ask` and the worker storing its pid leaves a RUNNING trial with
    no owner. A local study's workers all hold its lock, so the next command on the study (which
    holds it now) fails that trial instead of waiting for it for ever (found in CI: a takeover
    run hung until its 600 s timeout)."""
    import optuna

    study = tmp_path / "study"
    first = run_cli("run", "--space", TINY_SPACE, "--trials", 1, "--study-dir", study, "--no-progress")
    assert first.returncode == 0, first.stderr[-2000:]
    stored = optuna.load_study(study_name="search", storage=f"sqlite:///{study / 'study.db'}")
    stored.ask()  # then "killed"
    # A trial that failed on its own and whose worker was killed before Optuna stored its state
    # keeps its reason and is not run again (an interrupted one queued its config itself).
    ended = stored.ask({"lr": optuna.distributions.FloatDistribution(1e-3, 1e-2)})
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    for key, value in {"worker_pid": int(dead.stdout), "worker_host": socket.gethostname(),
                       "fail_reason": "NaN loss at epoch 2"}.items():
        ended.set_user_attr(key, value)
    # One cut short whose worker was stopped again before it queued its config: queued now.
    cut = stored.ask(stored.trials[0].distributions)
    for key, value in {"worker_pid": int(dead.stdout), "worker_host": socket.gethostname(),
                       "fail_reason": "interrupted (Ctrl-C)"}.items():
        cut.set_user_attr(key, value)
    again = run_cli("run", "--space", TINY_SPACE, "--trials", 2, "--study-dir", study, "--no-progress", timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "trial 1 was left running by worker unknown before it had a config: marked failed" in again.stdout + again.stderr
    assert "trial 2 ended (NaN loss at epoch 2) before its state was stored: marked failed\n" in again.stdout
    assert ("trial 3 ended (interrupted (Ctrl-C)) before its state was stored: marked failed, its config queued "
            "again") in again.stdout
    states = trials_by_state(study)
    assert states[1] == states[2] == states[3] == ("FAIL", None) and [s for s, _ in states.values()].count("COMPLETE") == 2
    assert user_attr(study, "fail_reason")[1] == "its worker died before it was recorded"
    assert user_attr(study, "fail_reason")[2] == "NaN loss at epoch 2" and 2 not in user_attr(study, "retry_of").values()
    assert user_attr(study, "retry_of") == {4: 3} and states[4][0] == "COMPLETE"  # the cut-short config ran first


def _safe_states(study):
    try:
        return trials_by_state(study)
    except sqlite3.Error:  # the schema is still being created
        return {}


NAN_SPACE = """
name: diverging
code_size: 4
scaling: standard
training: {epochs: 2, batch_size: 64, learning_rate: %s, optimizer: sgd}
families: {dense: {stack: {depth: 1, units: 8, activation: relu}}}
probe: {cv: 3}
"""


def test_failed_trials_are_recorded_and_the_search_goes_on(tmp_path):
    space = tmp_path / "mixed.yaml"
    space.write_text(NAN_SPACE % "{choice: [1.0e-2, 1.0e+12]}")
    study = tmp_path / "study"
    result = run_cli("run", "--space", space, "--trials", "6", "--study-dir", study, "--no-progress")
    assert result.returncode == 0, result.stderr[-2000:]
    states = trials_by_state(study)
    reasons = user_attr(study, "fail_reason")
    assert len(finished(states)) == 6 and reasons
    assert all(states[n][0] == "FAIL" and "NaN" in r for n, r in reasons.items())
    assert "failed: TrainingError: loss became NaN" in result.stdout


def test_many_failures_in_a_row_abort_with_a_clear_message(tmp_path):
    space = tmp_path / "nan.yaml"
    space.write_text(NAN_SPACE % "1.0e+12")
    result = run_cli("run", "--space", space, "--trials", "5", "--max-failures", "3",
                     "--study-dir", tmp_path / "study", "--no-progress")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines == [lines[0]] and "3 trials failed in a row (--max-failures 3); last: TrainingError: loss became NaN" in lines[0]
    # the leaderboard of what it stored, each failure with its reason (it printed nothing)
    assert "Leaderboard (" in result.stdout and result.stdout.count("failed: TrainingError: loss became NaN") >= 3


def test_a_worker_process_that_ends_in_an_error_is_named_with_its_reason_in_the_callers_terms(tmp_path, monkeypatch):
    """From Python with workers=2: worker 1's trials fail max_failures times in a row (this
    process runs none, so only the worker ends in its error). The run's error says which worker
    and why, as search.run names the setting, not only "see the logs"."""
    import search
    from search.backends import optuna_backend
    from search.errors import FatalSearchError

    monkeypatch.setattr(optuna_backend, "optimize", lambda *args, **kwargs: None)  # worker 0 runs no trial
    space = tmp_path / "nan.yaml"
    space.write_text(NAN_SPACE % "1.0e+12")
    study = tmp_path / "study"
    with pytest.raises(FatalSearchError) as caught:
        search.run("digits", space=str(space), trials=5, workers=2, max_failures=2, fresh_process=0,
                   study_dir=study, progress=False, export=False)
    log = study / "logs" / "worker-1.log"
    message = str(caught.value)
    assert message.startswith("worker process 1 failed: 2 trials failed in a row (max_failures=2); last: "
                              "TrainingError: loss became NaN") and message.endswith(f" (its log: {log})"), message
    assert "\n" not in message
    assert "error: 2 trials failed in a row (max_failures=2)" in log.read_text()
    assert "Leaderboard (" in caught.value.result.leaderboard  # what it stored, with the failures' reasons


def test_a_search_whose_every_trial_failed_says_why_in_its_one_line_under_its_leaderboard(tmp_path):
    """keras-tuner ends at its trial count, failed trials included (optuna goes on to --max-failures)."""
    pytest.importorskip("keras_tuner")
    space = tmp_path / "nan.yaml"
    space.write_text(NAN_SPACE % "1.0e+12")
    result = run_cli("run", "--space", space, "--trials", "2", "--study-dir", tmp_path / "study", "--no-progress",
                     "--backend", "kerastuner")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    # (one trial: keras-tuner's oracle finds no second config in this space of fixed values)
    assert result.stderr.startswith(f"error: {tmp_path / 'study'}: no completed trial to export (1 failed; the last: "
                                    "TrainingError: loss became NaN"), result.stderr
    assert result.stderr.count("\n") == 1
    # with the leaderboard of what failed, as for --max-failures
    assert "Leaderboard (" in result.stdout and "failed: TrainingError: loss became NaN" in result.stdout


def test_a_timeout_that_ends_the_search_before_any_trial_says_so_with_the_baselines_leaderboard(tmp_path):
    result = run_cli("run", "--space", TINY_SPACE, "--trials", "3", "--timeout", "0.01", "--study-dir",
                     tmp_path / "study", "--no-progress")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr == (f"error: {tmp_path / 'study'}: no completed trial to export: the timeout (0.01 s) ended "
                             f"the search at 0 of 3 finished trials; resume continues it (python -m search resume "
                             f"{tmp_path / 'study'})\n")
    assert "Leaderboard (accuracy, 0 trials" in result.stdout and "baseline raw" in result.stdout


def test_same_seed_same_configs_fresh_processes_and_replay_within_half_a_point(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for study, extra in ((a, ()), (b, ("--fresh-process", "2"))):  # trials 0-1 in one child, 2 in another
        result = run_cli("run", "--space", TINY_SPACE, "--trials", "3", "--seed", "7", "--study-dir", study,
                         "--no-progress", *extra)
        assert result.returncode == 0, result.stderr[-2000:]
    assert user_attr(a, "candidate") == user_attr(b, "candidate")
    assert json.loads((b / "manifest.json").read_text())["fresh_process"] == 2
    manifest = json.loads((a / "manifest.json").read_text())
    assert manifest["seed"] == 7 and manifest["split_hash"] and manifest["space_digest"] and manifest["packages"]
    number = next(n for n, (s, _) in trials_by_state(a).items() if s == "COMPLETE")
    replayed = run_cli("replay", a, "--trial", number)
    assert replayed.returncode == 0, replayed.stderr[-2000:]
    assert f"trial {number}: stored CV accuracy" in replayed.stdout and ": matches (difference" in replayed.stdout


def test_a_second_command_on_a_study_in_use_is_refused_and_a_dead_holders_lock_is_taken_over(tmp_path):
    """One writer per study: while a run works, another `run`, `resume` or `export` there is
    refused with one line naming it (no duplicate configurations, no second export); once it
    is killed, the next command takes the study over without anyone deleting a lock file."""
    study = tmp_path / "study"
    args = ("run", "--space", TINY_SPACE, "--trials", 200, "--study-dir", study, "--no-progress")
    with open(tmp_path / "stdout", "w") as out, open(tmp_path / "stderr", "w") as err:
        first = subprocess.Popen([sys.executable, "-m", "search", *map(str, args)], cwd=ROOT, env=_env(),
                                 stdout=out, stderr=err, start_new_session=True)
    try:
        deadline = time.time() + 240
        while not (study / "manifest.json").exists():  # written under the lock, which it now holds
            assert first.poll() is None and time.time() < deadline, (tmp_path / "stderr").read_text()[-2000:]
            time.sleep(0.2)
        for command in (args, ("resume", study, "--no-progress"), ("export", study)):
            refused = run_cli(*command)
            assert refused.returncode == 2, refused.stderr[-2000:]
            lines = refused.stderr.strip().splitlines()
            assert len(lines) == 1 and f"in use by run (pid {first.pid} on " in lines[0], lines
        assert first.poll() is None  # still the only writer
        assert not (study / "export").exists()  # the refused export wrote nothing
        # Every trial is the first run's (its only worker is its own process): the refused
        # run and resume started none.
        signed = {}
        while not signed:
            assert first.poll() is None and time.time() < deadline, (tmp_path / "stderr").read_text()[-2000:]
            with contextlib.suppress(sqlite3.OperationalError):  # the tables may not exist yet
                signed = user_attr(study, "worker_pid") if (study / "study.db").exists() else {}
            time.sleep(0.2)
        assert set(signed.values()) == {first.pid}, signed
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(first.pid, signal.SIGKILL)
        first.wait(timeout=60)
    done = len(finished(_safe_states(study)))
    taken_over = run_cli("run", "--space", TINY_SPACE, "--trials", done + 1, "--study-dir", study, "--no-progress")
    assert taken_over.returncode == 0, taken_over.stderr[-2000:]
    assert len(finished(trials_by_state(study))) == done + 1
    assert (study / "export" / "manifest.json").is_file()


def test_a_failed_workers_reason_is_read_from_what_this_run_wrote_to_its_log(tmp_path):
    """Worker logs are kept across runs: an earlier run's error line is not this one's reason."""
    from search.backends.optuna_backend import worker_failure

    log = tmp_path / "worker-1.log"
    log.write_text("error: 2 trials failed in a row (max_failures=2); last: an earlier run's\n")
    start = log.stat().st_size
    with open(log, "a") as file:
        file.write("Traceback (most recent call last):\n  ...\nImportError: cannot import name 'x'\n")
    assert worker_failure(log, start, 1) == "ImportError: cannot import name 'x'"
    assert worker_failure(log, 0, 1).endswith("an earlier run's")  # (what the whole log would have said)
    assert worker_failure(log, log.stat().st_size, 1) == "exit status 1"  # it wrote nothing
    assert worker_failure(tmp_path / "gone.log", 0, 2) == "exit status 2"
