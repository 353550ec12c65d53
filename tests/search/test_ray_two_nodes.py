"""A Ray cluster of two nodes on this machine, as a user runs one on two machines: a head and
a second node (two `ray start`s, one CPU each, each with its own temp dir, so its own raylet
and object store), the search submitted with `ray job submit ... --address auto`, one CPU per
trial and two at once, so each node runs one trial at a time.

The test follows the job while it runs:
- once the driver has read the data (the study's manifest is written after the split), the
  data file is deleted: every trial starts later, so trials get the data from the object store
  (`tune.with_parameters`), never from the path;
- once the second node has finished a trial and begun another, the second node is killed (its
  raylet, log monitor and everything the raylet started, trial worker included): that trial is
  recorded failed and the head alone finishes the requested count.

Only this test's own Ray processes are stopped (found by its temp dirs and GCS port), never
with `ray stop`, which would stop every Ray on the machine. Ray 2.60 token authentication as in
test_ray_cluster.py; the GCS health checks are quickened so that the dead node is noticed in
seconds."""

import contextlib
import datetime
import os
import re
import secrets
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import ROOT, TINY_SPACE
from tests.ray_processes import RAY, forget_cluster, free_port, kill, process_tree, processes

TRIALS = 8  # the head cannot run them all while the second node runs its first


@pytest.mark.xdist_group("ray")
def test_two_node_cluster_places_trials_on_both_and_survives_losing_one(tmp_path):
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    data = tmp_path / "data" / "digits.csv"
    data.parent.mkdir()
    header = ",".join([f"p{i}" for i in range(X.shape[1])] + ["label"])
    np.savetxt(data, np.column_stack([X[:500], y[:500]]), delimiter=",", header=header, comments="", fmt="%g")

    env = {
        **os.environ,
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": secrets.token_hex(32),
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)]),
        "RAY_health_check_initial_delay_ms": "1000",
        "RAY_health_check_period_ms": "500",
        "RAY_health_check_failure_threshold": "4",
    }
    tag = secrets.token_hex(4)
    head_dir, node_dir = Path(f"/tmp/ray-{tag}-h"), Path(f"/tmp/ray-{tag}-n")  # short: socket path limit
    gcs, dashboard = free_port(), free_port()
    common = ["--num-cpus", "1", "--num-gpus", "0", "--disable-usage-stats"]
    study = tmp_path / "study"
    # The job's driver (and Ray's supervisor of it) on the head: the node that dies is the other.
    submit = [str(RAY), "job", "submit", "--address", f"http://127.0.0.1:{dashboard}",
              "--entrypoint-resources", '{"driver": 1}', "--",
              sys.executable, "-m", "search", "run", "--backend", "ray", "--address", "auto",
              "--data", str(data), "--target", "label", "--space", str(TINY_SPACE), "--trials", str(TRIALS),
              "--workers", "2", "--cpus-per-trial", "1", "--study-dir", str(study), "--no-progress"]
    job = None
    try:
        # Each node's dashboard agent gets its own port (Ray's default, 52365, takes one node per
        # machine); so does the head's client server (default 10001), as other Rays may run here.
        _ray_start(["--head", "--resources", '{"driver": 1}', "--port", str(gcs), "--dashboard-port", str(dashboard),
                    "--dashboard-host",
                    "127.0.0.1", "--ray-client-server-port", str(free_port()), "--temp-dir", str(head_dir),
                    "--dashboard-agent-listen-port", str(free_port()), *common], env)
        _ray_start(["--address", f"127.0.0.1:{gcs}", "--temp-dir", str(node_dir),
                    "--dashboard-agent-listen-port", str(free_port()), *common], env)
        job, output = _submit(submit, env, tmp_path)

        removed, killed, node_pids = _follow(job, study, data, node_dir)
        out = output.read_text()
        assert job.returncode == 0 and "succeeded" in out, out[-4000:]
        assert killed is not None, "the second node never began a second trial: nothing was killed"

        trials = _trials(study)
        finished = [t for t in trials if t.state.name in ("COMPLETE", "PRUNED")]
        failed = [t for t in trials if t.state.name == "FAIL"]
        # Every trial recorded once, the requested count reached in spite of the lost node.
        ids = [t.user_attrs["ray_trial_id"] for t in trials]
        assert len(ids) == len(set(ids)), ids
        assert len(finished) == TRIALS, [(t.number, t.state.name) for t in trials]
        assert len(trials) == len(finished) + len(failed)
        names = [path.name for path in (study / "ray").glob("exp-*/_trial_*")]
        ran = {re.match(r"_trial_([0-9a-f]+)_", name).group(1) for name in names}
        assert ran == set(ids), (ran, ids)  # Tune's trials (a directory each), all in the study
        # Trials on both nodes: the second node's are those its worker processes ran.
        second = {t.user_attrs["ray_node"] for t in finished if t.user_attrs["worker_pid"] in node_pids}
        nodes = {t.user_attrs["ray_node"] for t in finished}
        assert len(second) == 1 and len(nodes) == 2, (second, nodes)
        (head,) = nodes - second
        # The trial running on the second node when it died is recorded failed; the trials
        # begun after it ran on the head.
        assert failed, [(t.number, t.state.name, t.user_attrs.get("ray_node")) for t in trials]
        for trial in failed:
            reason = trial.user_attrs["fail_reason"]
            assert reason.startswith("ray: ") and "actor" in reason.lower(), reason  # its worker is gone
            assert trial.user_attrs.get("ray_node", "(none reported)") not in nodes - second
        late = [t for t in finished if t.datetime_start > _local(killed)]
        assert late and {t.user_attrs["ray_node"] for t in late} == {head}, [t.number for t in late]
        # The data reached the trials through the object store: none began before the file went.
        assert removed is not None and not data.exists()
        assert all(t.datetime_start > _local(removed) for t in finished), (removed, [t.datetime_start for t in trials])
        assert "Leaderboard" in out and (study / "export" / "encoder.joblib").is_file()
    finally:
        if job is not None and job.poll() is None:
            job.kill()
            job.wait()
        for pid in process_tree(processes(), [str(head_dir), str(node_dir)], port=gcs):
            kill(pid)
        forget_cluster(gcs)
        for directory in (head_dir, node_dir):
            shutil.rmtree(directory, ignore_errors=True)


def _follow(job, study, data, node_dir):
    """Watches the running job: deletes the data file once the driver has read it, and kills
    the second node once it has finished a trial and is running another. Returns when the
    job ends: (when the file went, when the node died, PIDs of the node's processes)."""
    removed = killed = None
    node, node_pids, armed, scanned = {}, set(), False, 0.0
    deadline = time.time() + 400
    while job.poll() is None:
        assert time.time() < deadline, "the job did not end in 400 s"
        if removed is None and (study / "manifest.json").is_file():
            data.unlink()  # written after the split: the driver has read the data, no trial has begun
            removed = time.time()
        if killed is None:
            if time.time() - scanned > 1:  # the node's processes; its trial actor is reused
                node, scanned = process_tree(processes(), [str(node_dir)]), time.time()
                node_pids |= set(node)
            armed = armed or bool(set(_recorded_pids(study)) & node_pids)
            if armed and any(_title(pid).startswith("ray::ImplicitFunc.train") for pid in node):
                for pid in node:  # in the middle of its next trial
                    kill(pid)
                for pid in process_tree(processes(), [str(node_dir)]):  # any started since the scan
                    node_pids.add(pid)
                    kill(pid)
                killed = time.time()
        time.sleep(0.1)
    return removed, killed, node_pids


def _title(pid) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _ray_start(args, env):
    started = subprocess.run([str(RAY), "start", *args], env=env, capture_output=True, text=True, timeout=180)
    assert started.returncode == 0, started.stdout[-2000:] + started.stderr[-2000:]


def _submit(command, env, folder):
    """Starts `ray job submit` (it follows the job to its end); again while the head's job
    agent is not up yet, which takes a few seconds after `ray start`."""
    for attempt in range(30):
        output = folder / f"job-{attempt}.log"
        with output.open("w") as sink:
            job = subprocess.Popen(command, env=env, stdout=sink, stderr=subprocess.STDOUT, text=True, cwd=ROOT)
        while job.poll() is None and "submitted successfully" not in output.read_text():
            time.sleep(0.2)
        if job.poll() is None or "No available agent" not in output.read_text():
            return job, output
        time.sleep(2)
    raise AssertionError(output.read_text()[-2000:])


def _recorded_pids(study) -> list:
    """Worker PIDs of the trials the driver has recorded so far."""
    try:
        with contextlib.closing(sqlite3.connect(f"file:{study / 'study.db'}?mode=ro", uri=True, timeout=5)) as db:
            rows = db.execute("select value_json from trial_user_attributes where key = 'worker_pid'").fetchall()
    except sqlite3.Error:
        return []  # not created yet, or being written
    return [int(value) for (value,) in rows]


def _trials(study):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    return optuna.load_study(study_name="search", storage=f"sqlite:///{study / 'study.db'}").get_trials()


def _local(seconds) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(seconds)  # as the study stores a trial's start
