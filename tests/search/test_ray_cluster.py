"""The cluster-job path a user takes: start a Ray head, `ray job submit` a search with
`--backend ray --address auto`, wait for it, find the export, stop the cluster.

Ray 2.60 uses token authentication for clusters: the head, the job client and the job all
see the same RAY_AUTH_MODE=token and RAY_AUTH_TOKEN (a fresh random token per test)."""

import json
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, TINY_SPACE, run_cli
from tests.ray_processes import RAY, forget_cluster, free_port, kill, process_tree, processes

@pytest.mark.xdist_group("ray")
def test_ray_job_submit_runs_a_search_on_a_cluster(tmp_path):
    env = {
        **os.environ,
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": secrets.token_hex(32),
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)]),
    }
    dashboard, gcs = free_port(), free_port()
    temp = Path("/tmp") / f"ray-{secrets.token_hex(4)}"  # short: Ray's socket paths have a length limit
    # Its own ports for the dashboard agent (Ray's default, 52365, is taken by any other Ray on
    # this machine, e.g. another test's) and the client server.
    start = [str(RAY), "start", "--head", "--port", str(gcs), "--dashboard-port", str(dashboard),
             "--dashboard-host", "127.0.0.1", "--num-cpus", "2", "--num-gpus", "2", "--temp-dir", str(temp),
             "--dashboard-agent-listen-port", str(free_port()), "--ray-client-server-port", str(free_port()),
             "--disable-usage-stats"]
    started = subprocess.run(start, env=env, capture_output=True, text=True, timeout=180)
    assert started.returncode == 0, started.stdout[-2000:] + started.stderr[-2000:]
    study = tmp_path / "study"
    submit = [str(RAY), "job", "submit", "--address", f"http://127.0.0.1:{dashboard}", "--",
              sys.executable, "-m", "search", "run", "--backend", "ray", "--address", "auto",
              "--space", str(TINY_SPACE), "--trials", "2", "--gpus-per-trial", "0.5",
              "--study-dir", str(study), "--no-progress", "--keras-backend", "jax"]
    try:
        # Without the cluster's token: one line that says so (Ray's client repeated its refusal
        # on stderr once a second, some 20 lines, and the error named no cause).
        # With RAY_AUTH_MODE=token but no token, ray.init's AuthenticationError was a traceback.
        tokenless = {k: v for k, v in env.items() if k not in ("RAY_AUTH_TOKEN", "RAY_AUTH_MODE")}
        for without_token in (tokenless, {**tokenless, "RAY_AUTH_MODE": "token"}):
            refused = subprocess.run([sys.executable, "-m", "search", "run", "--backend", "ray", "--address",
                                      f"127.0.0.1:{gcs}", "--space", str(TINY_SPACE), "--trials", "1", "--study-dir",
                                      str(tmp_path / "refused"), "--no-progress"],
                                     env=without_token, capture_output=True, text=True, timeout=300, cwd=tmp_path)
            assert refused.returncode == 2, refused.stdout[-2000:] + refused.stderr[-2000:]
            assert refused.stderr.splitlines() == [
                f"error: --address 127.0.0.1:{gcs}: the cluster refused this process's token (RAY_AUTH_TOKEN is "
                "missing or not the cluster's: export RAY_AUTH_MODE=token RAY_AUTH_TOKEN=<the head's token>)"], \
                refused.stderr
            assert not (tmp_path / "refused").exists()
        for _ in range(30):  # the head's job agent comes up a few seconds after `ray start`
            job = subprocess.run(submit, env=env, capture_output=True, text=True, timeout=600, cwd=ROOT)
            if "No available agent" not in job.stderr:
                break
            time.sleep(2)
        assert job.returncode == 0, job.stdout[-4000:] + job.stderr[-2000:]
        assert "succeeded" in job.stdout, job.stdout[-4000:]
        assert "Leaderboard" in job.stdout
        assert (study / "export" / "encoder.joblib").is_file()
        assert (study / "export" / "manifest.json").is_file()
        # The trials ran the study's Keras backend, which the cluster's workers were not started
        # with: under JAX each trial records where its compile seconds fell.
        import optuna

        trials = optuna.load_study(study_name="search", storage=f"sqlite:///{study / 'study.db'}").trials
        assert trials and all("compile_by_stage" in t.user_attrs for t in trials if t.state.name == "COMPLETE")
        assert json.loads((study / "export" / "manifest.json").read_text())["keras_backend"] == "jax"
    finally:
        # Only this cluster's processes: `ray stop --force` would kill every Ray on the machine,
        # those of tests running beside this one too.
        import shutil


        for pid in process_tree(processes(), [str(temp)], port=gcs):
            kill(pid)
        forget_cluster(gcs)
        shutil.rmtree(temp, ignore_errors=True)
    # The study is finished: it resumes (to its export) with its cluster gone, where `auto` was
    # refused as "no Ray cluster runs on this machine".
    again = run_cli("resume", study, "--no-progress")
    assert again.returncode == 0, again.stderr[-2000:]
    assert "is still the best and already exported" in again.stdout
