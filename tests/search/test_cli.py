"""The command line as a user meets it: fresh interpreters, real files, exit codes."""

import json
import os
import sqlite3
import subprocess
import sys

import pytest

from tests.conftest import ROOT, TINY_SPACE, run_cli, run_cli_with_worker_barrier


def test_help_imports_no_tensorflow_optuna_or_sklearn():
    code = (
        "import sys\nfrom search.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in ('tensorflow', 'keras', 'optuna', 'ray', 'sklearn') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "run" in result.stdout and "export" in result.stdout
    assert result.stdout.strip().splitlines()[-1] == "[]"


def _write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


# The tests on the module's study run on one xdist worker, so the study is made once.
CLI_TINY_STUDY = pytest.mark.xdist_group("cli-tiny-study")


# Session scope: a module fixture is made again whenever xdist runs another module's test
# between two of this group's (seen in CI: twice per run).
@pytest.fixture(scope="session")
def tiny_study(tmp_path_factory):
    study = tmp_path_factory.mktemp("cli") / "study"
    result = run_cli("run", "--space", TINY_SPACE, "--trials", "3", "--study-dir", study, "--no-progress")
    assert result.returncode == 0, result.stderr[-3000:]
    return study, result.stdout


def trial_rows(study):
    """Each trial's number -> (state, value, parameters, seed) as stored."""
    with sqlite3.connect(study / "study.db") as db:
        rows = db.execute(
            "select t.number, t.state, v.value, "
            "(select group_concat(p.param_name || '=' || p.param_value, ',') from trial_params p where p.trial_id = t.trial_id), "
            "(select a.value_json from trial_user_attributes a where a.trial_id = t.trial_id and a.key = 'seed') "
            "from trials t left join trial_values v using (trial_id)").fetchall()
    return {number: tuple(rest) for number, *rest in rows}


def finished_trials(study):
    with sqlite3.connect(study / "study.db") as db:
        return db.execute("select count(*) from trials where state in ('COMPLETE', 'PRUNED')").fetchone()[0]


def test_path_arguments_expand_a_tilde_that_the_shell_left(monkeypatch):
    """`--study-dir=~/x` reaches the program as typed (bash expands ~ only at a word's start)."""
    from search.cli import build_parser

    monkeypatch.setenv("HOME", "/home/someone")
    parse = build_parser().parse_args
    assert parse(["run", "--study-dir=~/runs/a", "--data=~/d.csv", "--space=~/s.yaml"]).study_dir == "/home/someone/runs/a"
    assert parse(["run", "--data=~/d.csv"]).data == "/home/someone/d.csv" and parse(["run"]).data == "digits"
    assert parse(["export", "~/runs/a", "-o=~/enc"]).out == "/home/someone/enc"


@CLI_TINY_STUDY
def test_run_prints_the_leaderboard_with_baselines_and_exports(tiny_study, monkeypatch):
    study, stdout = tiny_study
    assert "Leaderboard (accuracy, 3 trials" in stdout
    assert "baseline raw" in stdout and "baseline pca" in stdout
    assert "Held-out test (450 rows, used once): winner trial" in stdout and "; raw 0.9" in stdout
    assert sorted(p.name for p in (study / "export").iterdir()) == [
        "autoencoder.keras", "encoder.joblib", "encoder.keras", "manifest.json", "preprocessing.npz"]
    manifest = json.loads((study / "manifest.json").read_text())
    assert manifest["split_hash"] and manifest["space_digest"] and manifest["packages"]["optuna"]
    assert finished_trials(study) == 3
    from encoderkit import read_manifest  # what a recipient of the export can read of it

    exported = read_manifest(study / "export")
    assert exported["split"] == {"seed": 0, "test_size": 0.25} and exported["n_test_rows"] == 450
    assert exported["split_hash"] == manifest["split_hash"] and exported["data"]["name"] == "digits"
    monkeypatch.setenv("HOME", str(study))  # `~` as load_encoder takes it (it was "no such folder")
    assert read_manifest("~/export") == exported


@CLI_TINY_STUDY
def test_report_reprints_the_leaderboard(tiny_study):
    study, stdout = tiny_study
    result = run_cli("report", study)
    assert result.returncode == 0, result.stderr
    # all the run printed (leaderboard rows, cost line, held-out line) but where it exported to
    assert result.stdout.splitlines() == [line for line in stdout.splitlines() if not line.startswith("export: ")]
    assert any(line.lstrip().startswith("1  ") for line in result.stdout.splitlines())


@CLI_TINY_STUDY
def test_export_a_chosen_trial_elsewhere(tiny_study, tmp_path):
    study, _ = tiny_study
    with sqlite3.connect(study / "study.db") as db:
        number = db.execute("select number from trials where state = 'COMPLETE' order by number").fetchone()[0]
    result = run_cli("export", study, "--trial", number, "-o", tmp_path / "chosen")
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "chosen" / "manifest.json").read_text())["trial"] == number
    missing = run_cli("export", study, "--trial", 999)
    assert missing.returncode == 2 and "--trial 999: not a completed trial" in missing.stderr


@CLI_TINY_STUDY
def test_rerun_with_more_trials_continues_and_resume_stops_at_the_count(tiny_study):
    study, _ = tiny_study
    before = trial_rows(study)
    result = run_cli("run", "--space", TINY_SPACE, "--trials", "4", "--study-dir", study, "--no-progress")
    assert result.returncode == 0, result.stderr[-2000:]
    assert finished_trials(study) == 4
    after = trial_rows(study)
    assert len(before) == 3 and {n: after[n] for n in before} == before  # the first three kept as they were
    assert sorted(after) == [0, 1, 2, 3]
    result = run_cli("resume", study, "--no-progress")
    assert result.returncode == 0, result.stderr[-2000:]
    assert finished_trials(study) == 4


@CLI_TINY_STUDY
def test_a_study_of_another_space_is_refused_and_left_unchanged(tiny_study):
    study, _ = tiny_study
    before = {p.name: p.stat().st_mtime_ns for p in study.iterdir()}
    result = run_cli("run", "--study-dir", study, "--trials", "1", "--no-progress")  # default space
    assert result.returncode == 2
    assert "study was made with space 'tiny', not 'default'; use another study directory" in result.stderr
    assert {p.name: p.stat().st_mtime_ns for p in study.iterdir()} == before


def test_two_workers_share_one_study(tmp_path):
    study = tmp_path / "study"
    result = run_cli_with_worker_barrier(study, "--space", TINY_SPACE, "--trials", "8", "--workers", "2",
                                         "--no-progress")
    assert result.returncode == 0, result.stderr[-3000:]
    assert finished_trials(study) == 8
    with sqlite3.connect(study / "study.db") as db:
        pids = {row[0] for row in db.execute("select value_json from trial_user_attributes where key = 'worker_pid'")}
    assert len(pids) == 2


def test_spaces_lists_and_validates(tmp_path):
    listed = run_cli("spaces")
    assert listed.returncode == 0, listed.stderr
    names = [line.split()[0] for line in listed.stdout.splitlines()]
    assert {"default", "image", "sequence", "article"} <= set(names), listed.stdout
    assert any(line.startswith("image") and line.endswith("; 1 start point") for line in listed.stdout.splitlines())
    valid = run_cli("spaces", TINY_SPACE)
    assert valid.returncode == 0 and "ok (2 families: dense, denoising)" in valid.stdout
    broken = run_cli("spaces", _write(tmp_path, "b.yaml", "families: {dense: {dropout: 2.0}}\n"))
    assert broken.returncode == 2 and "families.dense.dropout: 2.0 out of range" in broken.stderr


def test_searched_encoder_beats_raw_pixels_on_the_held_out_digits(tmp_path):
    """The claim of the default run, on a narrow space so CI can afford it."""
    study = tmp_path / "study"
    space = ROOT / "tests" / "data" / "digits_small.yaml"
    result = run_cli("run", "--space", space, "--trials", "2", "--study-dir", study, "--no-progress")
    assert result.returncode == 0, result.stderr[-3000:]
    export = json.loads((study / "export.json").read_text())
    assert export["test"]["score"] >= export["baselines_test"]["raw"]["score"], export


def test_timeout_stops_early_and_the_progress_bar_shows_the_best_score(tmp_path):
    study = tmp_path / "study"
    result = run_cli("run", "--space", TINY_SPACE, "--trials", "500", "--timeout", "1", "--study-dir", study)
    assert result.returncode == 0, result.stderr[-3000:]
    assert 1 <= finished_trials(study) < 500
    assert "trials:" in result.stderr and "best=0." in result.stderr
    assert (study / "export" / "encoder.joblib").is_file()


@CLI_TINY_STUDY
def test_exporting_another_trial_leaves_the_study_export_alone_and_is_listed_as_a_test_use(tiny_study, tmp_path):
    """`export --trial N` writes STUDY/export-trial-N, never over the study's best; every
    scoring of the test part is recorded, and the leaderboard stops saying "used once"."""
    import shutil

    study = shutil.copytree(tiny_study[0], tmp_path / "study")
    best = json.loads((study / "export.json").read_text())["trial"]
    other = next(n for n in range(3) if n != best)
    before = {p.name: p.read_bytes() for p in (study / "export").iterdir()}
    result = run_cli("export", study, "--trial", other)
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"exported trial {other} to {study / f'export-trial-{other}'}" in result.stdout
    assert {p.name: p.read_bytes() for p in (study / "export").iterdir()} == before
    assert json.loads((study / "export.json").read_text())["trial"] == best
    # The run's (and a re-run's, when another test added trials to the shared study), then this one.
    uses = json.loads((study / "test_uses.json").read_text())
    assert uses[0]["best"] and [u for u in uses if u["best"]][-1]["trial"] == best
    assert (uses[-1]["trial"], uses[-1]["best"]) == (other, False)
    assert uses[-1]["export"] == f"export-trial-{other}"  # in the study: relative to it, so it moves with it
    elsewhere = run_cli("export", "study", "--trial", other, "-o", "mine", cwd=tmp_path)
    assert elsewhere.returncode == 0, elsewhere.stderr[-2000:]
    uses = json.loads((study / "test_uses.json").read_text())  # outside it: absolute, not the caller's relative path
    assert uses[-1]["export"] == str(tmp_path / "mine")
    report = run_cli("report", study)
    assert f"used {len(uses)} times, listed below): winner trial {best} " in report.stdout
    assert f"trial {other}  accuracy" in report.stdout and "only the first was blind" in report.stdout
    assert f"-> export-trial-{other}\n" in report.stdout + "\n"
    # -o over an export of another trial (a deployment's "current" folder) replaces it, and says so
    replaced = run_cli("export", "study", "-o", "mine", cwd=tmp_path)
    assert replaced.returncode == 0, replaced.stderr[-2000:]
    assert f"(it replaced trial {other} of study {study}, test accuracy 0." in replaced.stdout, replaced.stdout
    again = run_cli("export", "study", "-o", "mine", cwd=tmp_path)  # the same trial again: nothing to say
    assert again.returncode == 0 and "replaced" not in again.stdout
    # an export that is gone (a Ctrl-C before it was written, or moved since) is not listed as if it were there
    shutil.rmtree(tmp_path / "mine")
    report = run_cli("report", study)
    assert f"-> {tmp_path / 'mine'} (not there now)" in report.stdout, report.stdout


@CLI_TINY_STUDY
def test_a_repeat_run_that_finds_nothing_better_keeps_the_export_and_does_not_score_the_test_part_again(tiny_study, tmp_path):
    import shutil

    study = shutil.copytree(tiny_study[0], tmp_path / "study")
    uses = json.loads((study / "test_uses.json").read_text())
    before = {p.name: p.read_bytes() for p in (study / "export").iterdir()}
    done = sum(state == "COMPLETE" for state, *_ in trial_rows(study).values())
    kept = json.loads((study / "manifest.json").read_text())["keras_backend"]
    other = "jax" if kept == "tensorflow" else "tensorflow"
    result = run_cli("run", "--space", TINY_SPACE, "--trials", done, "--study-dir", study, "--no-progress",
                     "--keras-backend", other)
    assert result.returncode == 0, result.stderr[-2000:]
    assert (f"note: the study runs Keras backend {kept}, as it began; {other} (--keras-backend or KERAS_BACKEND) "
            "is not used for it") in result.stdout
    best = json.loads((study / "export.json").read_text())["trial"]
    assert f"note: trial {best} is still the best and already exported: its export is kept" in result.stdout
    assert json.loads((study / "test_uses.json").read_text()) == uses  # no second look at the test part
    assert {p.name: p.read_bytes() for p in (study / "export").iterdir()} == before
    assert "used once" in result.stdout or len(uses) > 1  # the leaderboard still reads the kept export
    assert f"export: {study / 'export'}" in result.stdout


@CLI_TINY_STUDY
def test_an_export_made_under_another_keras_backend_is_not_kept_as_the_current_one(tiny_study, tmp_path):
    import shutil

    from search.refit import current_export
    from search.study import open_study

    study = shutil.copytree(tiny_study[0], tmp_path / "study")
    assert current_export(open_study(study))["trial"] == json.loads((study / "export.json").read_text())["trial"]
    manifest = json.loads((study / "export" / "manifest.json").read_text())
    kept = json.loads((study / "manifest.json").read_text())["keras_backend"]
    manifest["keras_backend"] = "jax" if kept == "tensorflow" else "tensorflow"
    (study / "export" / "manifest.json").write_text(json.dumps(manifest))
    assert current_export(open_study(study)) is None  # its models differ from the search's: made again


@CLI_TINY_STUDY
def test_an_export_that_is_not_the_studys_own_winner_is_made_again(tiny_study, tmp_path):
    """export.json names the winner, but export/ holds another study's encoder (copied in by
    hand): a repeat run kept it as the study's winner."""
    import shutil

    study = shutil.copytree(tiny_study[0], tmp_path / "study")
    uses = json.loads((study / "test_uses.json").read_text())
    manifest = json.loads((study / "export" / "manifest.json").read_text())
    (study / "export" / "manifest.json").write_text(json.dumps({**manifest, "cv_score": 0.123, "study": "/elsewhere"}))
    done = sum(state == "COMPLETE" for state, *_ in trial_rows(study).values())
    result = run_cli("run", "--space", TINY_SPACE, "--trials", done, "--study-dir", study, "--no-progress")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "already exported" not in result.stdout
    assert len(json.loads((study / "test_uses.json").read_text())) == len(uses) + 1
    assert json.loads((study / "export" / "manifest.json").read_text())["cv_score"] == manifest["cv_score"]


# A trial that trains for seconds (no early stop): under the default rule (2 s of training
# left, what users get; no test switch), it takes intermediate scores. (Whether a tiny trial
# takes some depends on how loaded the machine is, as the README says.)
SECONDS_LONG_TRIAL = """
name: seconds-long
code_size: 4
training: {epochs: 60, batch_size: 32, patience: 1000, learning_rate: 0.003}
families: {dense: {stack: {depth: 1, units: 8, activation: relu}}}
probe: {model: logistic_regression, cv: 3}
"""


def _intermediate_steps(study) -> dict:
    with sqlite3.connect(study / "study.db") as db:
        rows = db.execute("select t.number, v.step from trials t join trial_intermediate_values v using (trial_id)")
        steps = {}
        for number, step in rows:
            steps.setdefault(number, []).append(step)
    return {number: sorted(found) for number, found in steps.items()}


def test_the_default_checkpoint_rule_scores_a_trial_with_seconds_of_training_left(tmp_path):
    from search.faults import MIN_SAVING_ENV

    assert MIN_SAVING_ENV not in os.environ  # the user's default, not a test switch
    study = tmp_path / "study"
    space = _write(tmp_path, "long.yaml", SECONDS_LONG_TRIAL)
    result = run_cli("run", "--space", space, "--trials", "1", "--study-dir", study, "--no-progress")
    assert result.returncode == 0, result.stderr[-3000:]
    (steps,) = _intermediate_steps(study).values()
    assert steps[0] == 20 and set(steps) <= {20, 40}  # every ceil(60 / 3) epochs, while 2 s are left


def test_a_study_of_a_file_named_relatively_works_from_any_folder(tmp_path):
    """The study keeps its data file's absolute path: resume, replay and export from another
    folder read the same file (a relative name read nothing there: 'no such file')."""
    import numpy as np
    import pandas as pd
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    pd.DataFrame(X[:400]).assign(label=y[:400]).to_csv(tmp_path / "digits.csv", index=False)
    made = run_cli("run", "--data", "digits.csv", "--target", "label", "--space", TINY_SPACE, "--trials", 1,
                   "--study-dir", "study", "--no-progress", cwd=tmp_path)
    assert made.returncode == 0, made.stderr[-2000:]
    study = tmp_path / "study"
    manifest = json.loads((study / "manifest.json").read_text())
    assert manifest["data"] == os.path.realpath(tmp_path / "digits.csv")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    replayed = run_cli("replay", study, "--trial", 0, cwd=elsewhere)
    assert replayed.returncode == 0 and "matches" in replayed.stdout, replayed.stderr[-2000:]
    again = run_cli("run", "--data", "digits.csv", "--target", "label", "--space", TINY_SPACE, "--trials", 2,
                    "--study-dir", "study", "--no-progress", cwd=tmp_path)  # the same file, named as before
    assert again.returncode == 0, again.stderr[-2000:]
    assert finished_trials(study) == 2
    assert np.isfinite(json.loads((study / "export.json").read_text())["test"]["score"])
    # a study made before paths were stored absolute (relative name) continues from its folder
    (study / "manifest.json").write_text(json.dumps({**manifest, "data": "digits.csv", "trials": 2}))
    older = run_cli("run", "--data", "digits.csv", "--target", "label", "--space", TINY_SPACE, "--trials", 3,
                    "--study-dir", "study", "--no-progress", cwd=tmp_path)
    assert older.returncode == 0, older.stderr[-2000:]
    assert finished_trials(study) == 3


@pytest.mark.parametrize("case", ["after-ctrl-c", "no-ctrl-c", "translated-on-purpose"])
def test_an_error_raised_while_a_ctrl_c_was_handled_ends_as_interrupted_and_others_stay_errors(
        monkeypatch, capsys, case):
    """A second Ctrl-C inside a library's cleanup (Optuna's) surfaces as that library's own
    error, chained to the KeyboardInterrupt: one line and 130, not a traceback. An error with
    no Ctrl-C behind it, or one raised `from None` in its place, keeps its traceback."""
    from search import cli

    def command(args):
        try:
            if case == "no-ctrl-c":
                raise ValueError("no interrupt here")
            raise KeyboardInterrupt
        except KeyboardInterrupt:
            if case == "translated-on-purpose":
                raise UnboundLocalError("chosen") from None
            raise
        finally:
            if case != "translated-on-purpose":
                raise UnboundLocalError("cannot access local variable 'updated_state'")

    monkeypatch.setitem(cli.COMMANDS, "spaces", command)
    if case == "after-ctrl-c":
        assert cli.main(["spaces"]) == 130
        assert capsys.readouterr().err == "interrupted\n"
    else:
        with pytest.raises(UnboundLocalError):
            cli.main(["spaces"])
