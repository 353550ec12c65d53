"""Optuna across machines: `run --storage URL` and `join URL --study NAME` against a real,
throwaway PostgreSQL server and against a journal file, each worker a separate process."""

import json
import os
import subprocess
import time

import pytest

from tests.conftest import TINY_SPACE, run_cli
from tests.postgres_server import PASSWORD, Unavailable, free_port, throwaway_postgres

pytestmark = pytest.mark.xdist_group("postgres")  # one throwaway server, on one test worker


@pytest.fixture(scope="module")
def postgres():
    """(URL with password, URL without) of a database on a throwaway PostgreSQL server."""
    try:
        with throwaway_postgres() as urls:
            yield urls
    except Unavailable as exc:
        pytest.skip(str(exc))


def _wait_for_study(public_url, name, env, process, timeout=120):
    """Until `run` has published the study in the storage (join needs its manifest) and its
    baselines: it is past its setup (whose `recover` would fail a killed joiner's trial
    before the heartbeat or the run's wait could) and in its search."""
    import optuna

    from search.storage import BASELINES, open_storage

    os.environ.update({k: v for k, v in env.items() if k == "SEARCH_STORAGE_PASSWORD"})
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert process.poll() is None, process.communicate()
        try:
            study = optuna.load_study(study_name=name, storage=open_storage(public_url))
            if study.user_attrs.get("search_metadata") and study.user_attrs.get(BASELINES):
                return
        except KeyError:
            pass
        time.sleep(0.5)
    raise AssertionError("the run never published its study")


def _run_and_join(tmp_path, storage_for_run, storage_for_join, env, trials=6, while_running=None,
                  password_in_url_only=False):
    """`password_in_url_only`: the run has the storage's password in its URL only, not in its
    environment (its trial child, which refits the winner, must be handed it)."""
    from tests.conftest import ROOT

    study = tmp_path / "first" / "shared"
    full_env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **env,
                "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    if password_in_url_only:
        full_env.pop("SEARCH_STORAGE_PASSWORD", None)
    import sys

    first = subprocess.Popen([sys.executable, "-m", "search", "run", "--space", str(TINY_SPACE), "--trials", str(trials),
                              "--storage", storage_for_run, "--study-dir", str(study), "--no-progress"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=full_env, cwd=tmp_path)
    _wait_for_study(storage_for_join, "shared", env, first)
    if while_running:
        while_running()
    second = run_cli("join", storage_for_join, "--study", "shared", "--study-dir", tmp_path / "second",
                     "--no-progress", env=env, cwd=tmp_path)
    out, err = first.communicate(timeout=600)
    assert first.returncode == 0, err[-3000:]
    assert second.returncode == 0, second.stderr[-3000:]
    return study, out + err, second.stdout + second.stderr


def _trials(storage, env):
    import optuna

    from search.storage import open_storage

    os.environ.update({k: v for k, v in env.items() if k == "SEARCH_STORAGE_PASSWORD"})
    return optuna.load_study(study_name="shared", storage=open_storage(storage)).get_trials()


def _check_shared_study(study, trials, trials_requested, printed):
    shown = [t for t in trials if not t.user_attrs.get("surplus")]
    finished = [t for t in shown if t.state.name in ("COMPLETE", "PRUNED")]
    assert len(finished) == trials_requested  # exact, across both processes
    assert all(t.state.name != "RUNNING" for t in trials)
    numbers = [t.number for t in trials]
    assert len(set(numbers)) == len(numbers)
    seeds = [t.user_attrs["seed"] for t in shown]
    assert len(set(seeds)) == len(seeds)  # no trial run twice, each its own seed
    # (the join may stop while the run still finishes the last trial: it says how many it saw then)
    assert "joined study shared:" in printed["join"] and f" of {trials_requested}" in printed["join"]
    assert f" of {trials_requested}0" not in printed["join"]
    manifest = (study / "manifest.json").read_text()
    for text in (manifest, printed["run"], printed["join"], *(p.read_text() for p in study.rglob("*.log"))):
        assert PASSWORD not in text
    assert json.loads(manifest)["study_name"] == "shared"
    assert (study / "export" / "manifest.json").is_file()  # the run exported the winner


def test_two_processes_share_a_postgresql_study_with_the_exact_count(postgres, tmp_path):
    url, public = postgres
    env = {"SEARCH_STORAGE_PASSWORD": PASSWORD}
    import numpy as np

    def join_with_other_data():
        """A joining machine with other data is refused in one line (the split hash differs)."""
        np.savez(tmp_path / "other.npz", X=np.random.default_rng(0).random((200, 64)), y=np.arange(200) % 10)
        other = run_cli("join", public, "--study", "shared", "--data", tmp_path / "other.npz", "--study-dir",
                        tmp_path / "third", env=env)
        assert other.returncode == 2 and other.stderr.startswith(
            f"error: {tmp_path / 'other.npz'}: not the data of study 'shared' (split hash "), other.stdout + other.stderr
        assert len(other.stderr.strip().splitlines()) == 1 and "Traceback" not in other.stderr, other.stderr
        assert not (tmp_path / "third").exists()

    # The joining machine reaches the server by another name than the run did; the run has the
    # password in its URL only.
    study, run_out, join_out = _run_and_join(tmp_path, url, public.replace("127.0.0.1", "localhost"), env,
                                             while_running=join_with_other_data, password_in_url_only=True)
    _check_shared_study(study, _trials(public, env), 6, {"run": run_out, "join": join_out})
    assert json.loads((study / "manifest.json").read_text())["storage"] == public.replace("postgresql:", "postgresql+psycopg:")

    # report and export from a third process, which has the password from its environment only
    report = run_cli("report", study, env=env)
    assert report.returncode == 0 and "Leaderboard (" in report.stdout and PASSWORD not in report.stdout
    exported = run_cli("export", tmp_path / "second", "-o", tmp_path / "from-join", env=env)
    assert exported.returncode == 0, exported.stderr[-2000:]
    best = json.loads((study / "export.json").read_text())["trial"]
    replayed = run_cli("replay", study, "--trial", best, env=env)
    assert replayed.returncode == 0 and "matches" in replayed.stdout, replayed.stdout + replayed.stderr
    resumed = run_cli("resume", study, "--no-progress", env=env)  # at the count: nothing to run, re-exports
    assert resumed.returncode == 0 and PASSWORD not in resumed.stdout + resumed.stderr, resumed.stderr[-2000:]
    assert sum(t.state.name in ("COMPLETE", "PRUNED") for t in _trials(public, env)) == 6  # still exact

    # a join once the study has its trials does nothing
    late = run_cli("join", public, "--study", "shared", "--study-dir", tmp_path / "late", env=env)
    assert late.returncode == 0 and "has its 6 trials already; nothing to join" in late.stdout
    assert not (tmp_path / "late").exists()

    # the same name again in the same storage is refused, and the message carries no password
    again = run_cli("run", "--space", TINY_SPACE, "--storage", url, "--study-dir", tmp_path / "other" / "shared")
    assert again.returncode == 2 and "already holds a study named 'shared'" in again.stderr
    assert PASSWORD not in again.stderr and "Traceback" not in again.stderr


def test_two_processes_share_a_journal_file_study(tmp_path):
    storage = f"journal:{tmp_path / 'shared.journal'}"
    study, run_out, join_out = _run_and_join(tmp_path, storage, storage, {})
    _check_shared_study(study, _trials(storage, {}), 6, {"run": run_out, "join": join_out})
    # the join directory's leaderboard ranks the trials against the run's baselines (it showed none)
    report = run_cli("report", tmp_path / "second")
    assert report.returncode == 0 and "baseline raw" in report.stdout and "baseline pca" in report.stdout, report.stdout


@pytest.mark.parametrize("case", ["bad-url", "no-server", "wrong-password", "no-database"])
def test_a_storage_that_cannot_be_used_is_one_line_without_the_password(postgres, tmp_path, case):
    url, public = postgres
    port = public.rsplit(":", 1)[1].split("/")[0]
    storage, expected = {
        "bad-url": ("postgresql+nodriver://search:pw@host/db", "cannot open it (Can't load plugin"),
        "no-server": (f"postgresql://search:{PASSWORD}@127.0.0.1:{free_port()}/studies", "Connection refused"),
        "wrong-password": (f"postgresql://search:wrong-{PASSWORD}@127.0.0.1:{port}/studies", "password authentication failed"),
        "no-database": (f"postgresql://search:{PASSWORD}@127.0.0.1:{port}/nowhere", 'database "nowhere" does not exist'),
    }[case]
    done = run_cli("run", "--space", TINY_SPACE, "--storage", storage, "--study-dir", tmp_path / "s", "--no-progress")
    assert done.returncode == 2, done.stderr[-2000:]
    assert done.stderr.startswith("error: --storage") or done.stderr.startswith("error: storage"), done.stderr
    assert expected in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert PASSWORD not in done.stderr and "wrong-" not in done.stderr
    assert not (tmp_path / "s").exists()


def test_join_refuses_an_unknown_study_in_one_line(postgres, tmp_path):
    """(Other data is refused while a study runs: test_two_processes_share_a_postgresql_study...)"""
    url, public = postgres
    env = {"SEARCH_STORAGE_PASSWORD": PASSWORD}
    missing = run_cli("join", public, "--study", "nope", "--study-dir", tmp_path / "j", env=env)
    assert missing.returncode == 2 and "no study named 'nope'" in missing.stderr, missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1 and "Traceback" not in missing.stderr, missing.stderr
    assert PASSWORD not in missing.stderr
    assert not (tmp_path / "j").exists()


def test_a_joined_worker_killed_mid_trial_is_failed_by_its_heartbeat_and_its_trial_runs_again(postgres, tmp_path):
    """SIGKILL leaves no chance to record anything: the run's process sees the trial's
    heartbeat stop, fails it, runs its config again and still ends with the exact count.
    Both machines beat every 3 s (`SEARCH_HEARTBEAT_SECONDS`), so the silence is found after
    12 s rather than the default 60."""
    import signal
    import sys

    import optuna

    from search.storage import open_storage
    from tests.conftest import ROOT

    url, public = postgres
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "SEARCH_STORAGE_PASSWORD": PASSWORD,
           "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)]), "SEARCH_HEARTBEAT_SECONDS": "3"}
    command = [sys.executable, "-m", "search"]
    first = subprocess.Popen([*command, "run", "--space", str(TINY_SPACE), "--trials", "12", "--storage", url,
                              "--study-dir", str(tmp_path / "killed"), "--no-progress"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    _wait_for_study(public, "killed", env, first)
    second = subprocess.Popen([*command, "join", public, "--study", "killed", "--study-dir", str(tmp_path / "j"),
                               "--no-progress"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
                              cwd=tmp_path)
    storage = open_storage(public)
    deadline, victim = time.time() + 300, None
    while victim is None and time.time() < deadline:
        running = optuna.load_study(study_name="killed", storage=storage).get_trials(
            deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
        victim = next((t.number for t in running if t.user_attrs.get("worker_pid") == second.pid), None)
        time.sleep(0.05)
    assert victim is not None, "the joined worker never ran a trial"
    second.send_signal(signal.SIGKILL)
    second.wait()
    out, err = first.communicate(timeout=600)
    assert first.returncode == 0, err[-3000:]
    trials = optuna.load_study(study_name="killed", storage=storage).get_trials()
    killed = trials[victim]
    assert killed.state.name == "FAIL"
    retried = [t for t in trials if t.system_attrs.get("failed_trial") == victim]
    assert len(retried) == 1 and retried[0].params == killed.params and retried[0].state.name in ("COMPLETE", "PRUNED")
    assert sum(t.state.name in ("COMPLETE", "PRUNED") for t in trials) == 12
    assert "stopped answering" in out  # the leaderboard gives the failed trial its reason
    # the setting took: failed after seconds of silence, not the default minute
    assert (killed.datetime_complete - killed.datetime_start).total_seconds() < 50


@pytest.fixture
def spawn(tmp_path):
    """Popen for `python -m search ARGS` in tmp_path; whatever still runs at the end is killed
    (a failed assertion must not leave a search running)."""
    import sys

    started = []

    def start(*args, env, output=True):
        pipe = subprocess.PIPE if output else subprocess.DEVNULL
        process = subprocess.Popen([sys.executable, "-m", "search", *map(str, args), "--no-progress"], stdout=pipe,
                                   stderr=pipe, text=True, env=env, cwd=tmp_path, start_new_session=True)
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            os.killpg(process.pid, 9)
            process.communicate()


def _signal_during_a_trial(public, name, pid, signal_number, also_running=None, alive=()):
    """Sends `signal_number` to process `pid` while it runs a trial of study `name` (once the
    process `also_running` runs one too, where given); the trial's number. Fails at once where
    a process of `alive` ends first (the study done without it, a crash)."""
    import optuna

    from search.storage import open_storage

    storage = open_storage(public)
    deadline, victim, others = time.time() + 300, None, also_running is None
    while victim is None and time.time() < deadline:
        for process in alive:
            assert process.poll() is None, f"{process.args[3]} ended first: {process.communicate()}"
        running = optuna.load_study(study_name=name, storage=storage).get_trials(
            deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
        others = others or any(t.user_attrs.get("worker_pid") == also_running.pid for t in running)
        victim = next((t.number for t in running if others and t.user_attrs.get("worker_pid") == pid), None)
        time.sleep(0.05)
    assert victim is not None, "the process never ran a trial"
    os.kill(pid, signal_number)
    return victim


def _worker_env(**extra):
    from tests.conftest import ROOT

    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)]),
            **extra}


def _retried_once(trials, victim, key):
    killed = trials[victim]
    retried = [t for t in trials if (t.user_attrs if key == "retry_of" else t.system_attrs).get(key) == victim]
    assert killed.state.name == "FAIL" and len(retried) == 1 and retried[0].params == killed.params
    assert retried[0].state.name in ("COMPLETE", "PRUNED")
    return killed


def test_a_joiner_killed_on_the_runs_machine_is_not_waited_for_for_ever_on_a_journal(tmp_path, spawn):
    """A journal has no heartbeat: the run waited in silence, for ever, for the trial of a
    joiner killed on its own machine, whose PID it can see is gone. Ctrl-C of a joiner printed
    "interrupted" alone."""
    import signal

    storage, env = f"journal:{tmp_path / 'shared.journal'}", _worker_env()
    first = spawn("run", "--space", TINY_SPACE, "--trials", 30, "--storage", storage, "--study-dir",
                  tmp_path / "shared", env=env)
    _wait_for_study(storage, "shared", {}, first)
    stopped = spawn("join", storage, "--study", "shared", "--study-dir", tmp_path / "i", env=env)
    _signal_during_a_trial(storage, "shared", stopped.pid, signal.SIGINT, alive=(first, stopped))
    said, err = stopped.communicate(timeout=300)
    assert stopped.returncode == 130 and "Leaderboard (" in said and "baseline raw" in said, said + err
    assert err.strip().endswith(f"interrupted; continue with: python -m search resume {tmp_path / 'i'}"), err
    second = spawn("join", storage, "--study", "shared", "--study-dir", tmp_path / "j", env=env, output=False)
    victim = _signal_during_a_trial(storage, "shared", second.pid, signal.SIGKILL, alive=(first, second))
    out, err = first.communicate(timeout=600)
    assert first.returncode == 0, err[-3000:]
    trials = _trials(storage, {})
    killed = _retried_once(trials, victim, "retry_of")
    assert killed.user_attrs["fail_reason"] == f"worker {second.pid} died during the trial"
    assert sum(t.state.name in ("COMPLETE", "PRUNED") for t in trials) == 30


def test_a_runs_own_worker_killed_on_a_journal_is_not_waited_for_for_ever(tmp_path, spawn):
    """Until the run reaps it, its killed worker is a zombie, which `kill(pid, 0)` still finds."""
    import signal

    import optuna

    from search.storage import open_storage

    storage, env = f"journal:{tmp_path / 'shared.journal'}", _worker_env()
    first = spawn("run", "--space", TINY_SPACE, "--trials", 12, "--workers", 2, "--storage", storage,
                  "--study-dir", tmp_path / "shared", env=env)
    _wait_for_study(storage, "shared", {}, first)
    deadline, worker = time.time() + 300, None
    while worker is None and time.time() < deadline:
        assert first.poll() is None, first.communicate()
        pids = {t.user_attrs.get("worker_pid") for t in optuna.load_study(
            study_name="shared", storage=open_storage(storage)).get_trials(deepcopy=False)}
        worker = next((pid for pid in pids if pid not in (None, first.pid)), None)
        time.sleep(0.05)
    assert worker, "the second worker never ran a trial"
    victim = _signal_during_a_trial(storage, "shared", worker, signal.SIGKILL, alive=(first,))
    out, err = first.communicate(timeout=600)
    assert first.returncode == 0, err[-3000:]
    trials = _trials(storage, {})
    assert _retried_once(trials, victim, "retry_of").user_attrs["fail_reason"] == f"worker {worker} died during the trial"
    # a note, not "1 worker process(es) failed" with exit status 2 and no export
    assert f"note: worker process {worker} was killed (signal 9) during the search" in err, err
    assert (tmp_path / "shared" / "export" / "manifest.json").is_file()
    assert sum(t.state.name in ("COMPLETE", "PRUNED") for t in trials) == 12


def test_a_joiner_takes_over_the_trial_of_a_run_whose_machine_died(postgres, tmp_path, spawn):
    """The joiner counted the dead run's trial as running, so its next one was one too many: it
    ended at 'the study has 15 of 16', and nothing ran that trial again. On a database it now
    waits for the others' last trials as the run does, and the heartbeat hands it the trial."""
    import signal

    import optuna

    from search.storage import open_storage

    url, public = postgres
    env = _worker_env(SEARCH_STORAGE_PASSWORD=PASSWORD, SEARCH_HEARTBEAT_SECONDS="3")
    first = spawn("run", "--space", TINY_SPACE, "--trials", 16, "--storage", url, "--study-dir", tmp_path / "gone",
                  env=env, output=False)
    _wait_for_study(public, "gone", env, first)
    second = spawn("join", public, "--study", "gone", "--study-dir", tmp_path / "j", env=env)
    victim = _signal_during_a_trial(public, "gone", first.pid, signal.SIGKILL, also_running=second,
                                    alive=(first, second))
    out, err = second.communicate(timeout=600)
    assert second.returncode == 0, err[-3000:]
    trials = optuna.load_study(study_name="gone", storage=open_storage(public)).get_trials()
    _retried_once(trials, victim, "failed_trial")
    assert sum(t.state.name in ("COMPLETE", "PRUNED") for t in trials) == 16
    assert "the study has 16 of 16." in out, out


def test_a_joiner_keeps_the_runs_timeout_and_its_looks_at_the_test_part_count_everywhere(tmp_path, monkeypatch):
    """The run's --timeout is one deadline for the study: a joiner counted it from its own
    start and went on starting trials after the run had exported. A joiner's export is a
    look at the test part that the run's leaderboard must count; `resume` of a join
    directory joins again and leaves the export to the run; the run's own directory is no
    join directory."""
    import sys

    import optuna

    from search.storage import open_storage
    from tests.conftest import ROOT

    storage = f"journal:{tmp_path / 'shared.journal'}"
    study, joined = tmp_path / "first" / "shared", tmp_path / "second"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    first = subprocess.Popen([sys.executable, "-m", "search", "run", "--space", str(TINY_SPACE), "--trials", "50",
                              "--timeout", "2", "--storage", storage, "--study-dir", str(study), "--no-progress"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    deadline = None
    for _ in range(600):  # until the run has published its deadline
        assert first.poll() is None, first.communicate()
        try:
            deadline = optuna.load_study(study_name="shared", storage=open_storage(storage)).user_attrs.get("deadline")
        except KeyError:
            pass
        if deadline:
            break
        time.sleep(0.2)
    assert deadline, "the run never published its deadline"
    time.sleep(max(0.0, deadline - time.time()) + 0.5)
    late = run_cli("join", storage, "--study", "shared", "--study-dir", joined, "--no-progress", cwd=tmp_path)
    assert late.returncode == 0, late.stderr[-2000:]
    assert "0 trial(s) finished here" in late.stdout and "its run's timeout has passed" in late.stdout, late.stdout
    out, err = first.communicate(timeout=600)
    assert first.returncode == 0, err[-3000:]
    finished = [t for t in _trials(storage, {}) if t.state.name in ("COMPLETE", "PRUNED")]
    assert finished and all(t.user_attrs["worker_pid"] == first.pid for t in finished)

    other = tmp_path / "other.csv"  # this machine's "copy" is other data: named as given, nothing left behind
    other.write_text("a,b,target\n" + "".join(f"{i},{i % 7},{i % 2}\n" for i in range(60)))
    for given, expected in ((other, f"error: {other}: not the data of study 'shared' (split hash "),
                            (tmp_path, f"error: --data {tmp_path}: a folder, not a file")):
        refused = run_cli("join", storage, "--study", "shared", "--data", given, "--study-dir", tmp_path / "third",
                          cwd=tmp_path)
        assert refused.returncode == 2 and refused.stderr.startswith(expected), refused.stderr
        assert len(refused.stderr.strip().splitlines()) == 1 and not (tmp_path / "third").exists()
    own = run_cli("join", storage, "--study", "shared", "--study-dir", study, "--no-progress", cwd=tmp_path)
    assert own.returncode == 2 and "the study's own run directory, not a join directory" in own.stderr, own.stderr
    def files(folder):  # but the lock, which says who last held the directory
        return {p.name: p.read_bytes() for p in folder.rglob("*") if p.is_file() and p.name != ".lock"}

    kept = files(joined)  # a refused join into a join directory leaves it whole
    refused = run_cli("join", storage, "--study", "shared", "--data", other, "--study-dir", joined, cwd=tmp_path)
    assert refused.returncode == 2 and files(joined) == kept and "manifest.json" in kept, refused.stderr
    empty = tmp_path / "empty"  # a folder made for the join: a refused one leaves it usable
    empty.mkdir()
    refused = run_cli("join", storage, "--study", "shared", "--data", other, "--study-dir", empty, cwd=tmp_path)
    assert refused.returncode == 2 and {p.name for p in empty.iterdir()} <= {".lock"}, refused.stderr
    again = run_cli("join", storage, "--study", "shared", "--study-dir", empty, "--no-progress", cwd=tmp_path)
    assert again.returncode == 0 and "0 trial(s) finished here" in again.stdout, again.stderr[-2000:]
    mine = tmp_path / "mine"  # a folder of the user's files is no join directory
    mine.mkdir()
    (mine / "notes.txt").write_text("x")
    refused = run_cli("join", storage, "--study", "shared", "--study-dir", mine, cwd=tmp_path)
    assert refused.returncode == 2 and "mine: exists and is not a study directory; give another --study-dir" \
        in refused.stderr and [path.name for path in mine.iterdir()] == ["notes.txt"], refused.stderr
    _join_checks_in_process(storage, joined, tmp_path, monkeypatch)
    exported = run_cli("export", joined, "-o", tmp_path / "from-join", cwd=tmp_path)  # a second look, elsewhere
    assert exported.returncode == 0, exported.stderr[-2000:]
    report = run_cli("report", study, cwd=tmp_path)
    assert report.returncode == 0 and "used 2 times, listed below" in report.stdout, report.stdout
    assert f"{tmp_path / 'from-join'}" in report.stdout  # where the other machine's look went
    resumed = run_cli("resume", joined, "--no-progress", cwd=tmp_path)
    assert resumed.returncode == 0 and "joined study shared: 0 trial(s) finished here" in resumed.stdout, \
        resumed.stdout + resumed.stderr
    assert not (joined / "export").exists() and len(json.loads((joined / "test_uses.json").read_text())) == 1
    as_run = run_cli("run", "--space", TINY_SPACE, "--trials", "50", "--timeout", "2", "--storage", storage,
                     "--study-dir", joined, "--no-progress", cwd=tmp_path)  # a run there would export from a worker
    assert as_run.returncode == 2 and "a worker's directory of study 'shared'; add trials with: python -m search " \
        f"resume {joined}" in as_run.stderr, as_run.stderr


def _join_checks_in_process(storage, joined, tmp_path, monkeypatch):
    """Another study's name on this join directory, and a study of another backend, are refused."""
    from search import join as join_module
    from search.errors import StudyError
    from search.storage import public_url

    with pytest.raises(StudyError, match="holds another study \\(shared\\); give another --study-dir"):
        join_module.check_join_directory(joined, public_url(storage), "other")
    real = join_module.fetch_metadata

    def as_ray(public, name):
        metadata = real(public, name)
        return {**metadata, "manifest": {**metadata["manifest"], "backend": "ray"}}

    monkeypatch.setattr(join_module, "fetch_metadata", as_ray)
    with pytest.raises(StudyError, match="'shared' runs on backend ray; only optuna studies take joining workers"):
        join_module.join(storage, "shared", study_dir=tmp_path / "fourth", progress=False)
    assert not (tmp_path / "fourth").exists()


def test_join_directories_are_told_from_run_directories_also_before_they_were_marked(tmp_path):
    from search.study import Study, is_join_directory

    shared = {"storage": "journal:/j"}
    assert is_join_directory(Study(tmp_path, {**shared, "joined": True}))
    assert not is_join_directory(Study(tmp_path, {**shared, "joined": False}))
    assert is_join_directory(Study(tmp_path, shared))  # an old join directory: no baselines, no export
    assert not is_join_directory(Study(tmp_path, {}))  # a local study
    (tmp_path / "baselines.json").write_text("{}")
    assert not is_join_directory(Study(tmp_path, shared))  # an old run directory


def test_a_joiner_without_the_studys_data_file_is_told_how_to_give_its_copy(tmp_path):
    from search.errors import StudyError
    from search.join import with_local_data

    missing = tmp_path / "gone.csv"
    with pytest.raises(StudyError, match=(rf"^{missing}: no such file on this machine \(the study's data\); give this "
                                          r"machine's copy: python -m search join journal:/j --study s --data PATH$")):
        with_local_data({"data": str(missing)}, tmp_path, None, "s", "journal:/j")


def test_a_joiner_with_other_arrays_keeps_this_directorys_copy_of_the_studys(tmp_path):
    """The other arrays' data.npz replaced the join directory's own copy before its content
    hash was checked: refused, but the study's copy was gone."""
    import numpy as np

    from encoderkit.data import IN_MEMORY, content_hash, load_dataset
    from search.errors import StudyError
    from search.join import with_local_data

    rng = np.random.default_rng(0)
    ours, theirs = tmp_path / "data.npz", tmp_path / "theirs.npz"
    np.savez(ours, X=rng.random((40, 3)), y=np.arange(40) % 2)
    np.savez(theirs, X=rng.random((40, 3)), y=np.arange(40) % 2)
    local = tmp_path / "join"
    local.mkdir()
    (local / "data.npz").write_bytes(ours.read_bytes())
    manifest = {"data": IN_MEMORY + content_hash(load_dataset(ours))}
    with pytest.raises(StudyError, match=rf"^{theirs}: not the data of study 's' \(content hash "):
        with_local_data(manifest, local, theirs, "s", "journal:/j")
    assert (local / "data.npz").read_bytes() == ours.read_bytes() and [p.name for p in local.iterdir()] == ["data.npz"]
    (local / "data.npz").unlink()
    renamed = ours.rename(tmp_path / "shared-data")  # this machine's copy, under a name of its own
    assert with_local_data(manifest, local, renamed, "s", "journal:/j") == manifest
    assert (local / "data.npz").read_bytes() == renamed.read_bytes()
    assert [p.name for p in local.iterdir()] == ["data.npz"]  # the staged copy is gone


def test_a_study_its_shared_storage_lost_is_refused_and_not_started_again(tmp_path):
    """A journal on a share that is not mounted (missing) or came back empty made `resume`
    start the study over in a new journal, and export another winner; `report` created the file."""
    journal, study = tmp_path / "shared.journal", tmp_path / "s"
    done = run_cli("run", "--space", TINY_SPACE, "--trials", "1", "--storage", f"journal:{journal}",
                   "--study-dir", study, "--no-progress")
    assert done.returncode == 0, done.stderr[-2000:]
    kept, exported = journal.read_bytes(), (study / "export.json").read_bytes()
    journal.unlink()
    for command in (["resume", study, "--no-progress"], ["report", study], ["export", study]):
        refused = run_cli(*command)
        assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1, refused.stderr[-2000:]
        assert "holds no study named 's'" in refused.stderr
        assert "shared.journal is missing: is its shared folder mounted?" in refused.stderr
        assert not journal.exists()
    journal.write_bytes(b"")
    refused = run_cli("resume", study, "--no-progress")
    assert refused.returncode == 2 and "(the right journal file?); nothing was changed" in refused.stderr, refused.stderr
    assert journal.read_bytes() == b"" and (study / "export.json").read_bytes() == exported
    journal.write_bytes(kept)  # the share is back: the study is as it was
    shown = run_cli("report", study)
    assert shown.returncode == 0 and "1 complete" in shown.stdout, shown.stderr[-2000:]


@pytest.mark.parametrize("what", ["a user's file", "a folder"])
def test_a_journal_path_that_is_not_a_journal_is_refused_and_left_as_it_was(tmp_path, what):
    """Optuna appended its first record to any file, then failed to read it back (a traceback)."""
    from search.errors import SettingsError
    from search.storage import public_url

    path = tmp_path / "notes.txt"
    if what == "a folder":
        path.mkdir()
    else:
        path.write_text("my notes\n")
    expected = "a folder, not a journal file" if what == "a folder" else "not an Optuna journal file"
    with pytest.raises(SettingsError, match=expected):
        public_url(f"journal:{path}")
    assert path.is_dir() or path.read_text() == "my notes\n"
    (tmp_path / "empty.journal").write_bytes(b"")  # a new (or emptied) journal is Optuna's to start
    assert public_url(f"journal:{tmp_path / 'empty.journal'}") == f"journal:{tmp_path / 'empty.journal'}"


def test_a_missing_sqlite_storage_is_refused_and_not_created(tmp_path):
    from search.errors import StudyError
    from search.storage import load
    from search.study import Study

    gone = tmp_path / "gone.db"
    study = Study(tmp_path, {"storage": f"sqlite:///{gone}", "study_name": "s"})
    with pytest.raises(StudyError, match=rf"holds no study named 's', where .* \({gone} is missing: is its shared"):
        load(study)
    assert not gone.exists()


def test_a_run_stopped_before_the_shared_storage_held_the_study_is_begun_by_resume(tmp_path, monkeypatch):
    """The manifest is written before the study is created in the storage: a run killed in
    between must not leave a study that every command refuses as lost."""
    from search import engine

    journal, study = tmp_path / "shared.journal", tmp_path / "s"

    def killed(*args, **kwargs):
        raise SystemExit(9)  # as a kill between the two

    monkeypatch.setattr(engine, "publish", killed)
    with pytest.raises(SystemExit):
        engine.run(data="digits", space=str(TINY_SPACE), trials=1, storage=f"journal:{journal}", study_dir=study,
                   progress=False)
    monkeypatch.undo()
    assert json.loads((study / "manifest.json").read_text())["published"] is False
    refused = run_cli("report", study)
    assert refused.returncode == 2 and "the study's first run stopped before creating it there; python -m search " \
        f"resume {study} begins it" in refused.stderr, refused.stderr[-2000:]
    done = run_cli("resume", study, "--no-progress")
    assert done.returncode == 0 and (study / "export").is_dir(), done.stderr[-2000:]
    assert "published" not in json.loads((study / "manifest.json").read_text())
    assert run_cli("report", study).returncode == 0


@pytest.mark.parametrize("code", ["EROFS", "EACCES"])
def test_a_journal_in_a_folder_this_user_cannot_write_is_one_line(tmp_path, monkeypatch, code):
    """A read-only mount or another user's folder: `run` printed Optuna's traceback (Errno 30
    or 13 from the journal's open), exit status 1. (Simulated: root writes anywhere, and a
    test cannot mount.)"""
    import errno

    import optuna.storages.journal as journal

    path = tmp_path / "new.journal"

    def unwritable(file_path, *args, **kwargs):
        raise OSError(getattr(errno, code), os.strerror(getattr(errno, code)), str(file_path))

    monkeypatch.setattr(journal, "JournalFileBackend", unwritable)
    from search.errors import StudyError
    from search.storage import open_storage

    with pytest.raises(StudyError) as caught:
        open_storage(f"journal:{path}")
    assert str(caught.value) == (f"storage journal:{path}: cannot write {path} ({os.strerror(getattr(errno, code))}); "
                                 "a worker needs write access to the journal's folder")
    monkeypatch.setattr(journal, "JournalFileBackend", lambda *a, **k: (_ for _ in ()).throw(
        OSError(errno.ENOSPC, "No space left on device", str(path))))
    with pytest.raises(OSError, match="No space left") as caught:  # a full disk: the command names it itself
        open_storage(f"journal:{path}")
    assert not isinstance(caught.value, StudyError)
