"""A full disk under a study: the write that failed (SQLite's, through SQLAlchemy and Optuna,
or an export's file) ends the command with one line that names the study, its free space and
the command that goes on, exit status 1 (the machine's fault, not the input's); what was
stored stays whole, and that command then finishes the study. (It printed a traceback: of
Optuna's StorageInternalError, which blames "invalid data in the commit", or of the pickle
write.) Measured for real on a 160 KiB and a 1 MiB tmpfs; here the writes fail on purpose."""

import errno
import hashlib
import sqlite3

import optuna
import pytest

from search import cli
from search.errors import DiskFull, is_disk_full
from tests.conftest import TINY_SPACE


def cli_main(capsys, *args):
    capsys.readouterr()
    status = cli.main([str(a) for a in args])
    out, err = capsys.readouterr()
    return status, out, err


def storage_full_error():
    """The chain a full disk raises through Optuna's RDB storage (as measured)."""
    import sqlalchemy.exc

    try:
        try:
            raise sqlite3.OperationalError("database or disk is full")
        except sqlite3.OperationalError as exc:
            raise sqlalchemy.exc.OperationalError("UPDATE trial_user_attributes", {}, exc) from exc
    except sqlalchemy.exc.OperationalError as exc:
        try:
            raise optuna.exceptions.StorageInternalError("An exception is raised during the commit.") from exc
        except optuna.exceptions.StorageInternalError as error:
            return error


def test_a_full_disk_is_known_through_the_libraries_wrappers():
    assert is_disk_full(storage_full_error())
    assert is_disk_full(OSError(errno.ENOSPC, "No space left on device"))
    assert is_disk_full(OSError(errno.EDQUOT, "Disk quota exceeded"))
    assert not is_disk_full(OSError(errno.EACCES, "Permission denied"))
    assert not is_disk_full(optuna.exceptions.StorageInternalError("exceeding max length"))
    try:  # translated on purpose (`from None`): not a full disk any more
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError:
            raise ValueError("unrelated") from None
    except ValueError as translated:
        assert not is_disk_full(translated)


def test_a_full_disk_elsewhere_is_named_by_its_file(tmp_path):
    from search.errors import disk_full_named

    elsewhere = tmp_path / "mounted" / "export" / "encoder.keras"
    elsewhere.parent.mkdir(parents=True)
    with pytest.raises(DiskFull, match=rf"^{tmp_path / 'study'}: no space left on the disk of {elsewhere} \("):
        with disk_full_named(tmp_path / "study", "python -m search export STUDY -o OUT"):
            raise OSError(errno.ENOSPC, "No space left on device", str(elsewhere))


@pytest.fixture
def study(tmp_path, capsys):
    folder = tmp_path / "study"
    status, _, err = cli_main(capsys, "run", "--space", TINY_SPACE, "--trials", 2, "--study-dir", folder,
                              "--no-progress", "--fresh-process", 0)
    assert status == 0, err[-2000:]
    return folder


def _one_line(err, study, then):
    lines = err.strip().splitlines()
    assert len(lines) == 1, err[-3000:]
    assert lines[0].startswith(f"error: {study}: no space left on its disk (") and " MiB free now); " in lines[0]
    assert lines[0].endswith(f"what the study stored is kept: free some space, then run `{then}`"), lines[0]


def test_a_storage_write_on_a_full_disk_stops_the_search_in_one_line_and_resume_finishes_it(
        study, capsys, monkeypatch):
    original = optuna.trial.Trial.set_user_attr

    def set_user_attr(trial, key, value):
        if trial.number == 2:
            raise storage_full_error()
        return original(trial, key, value)

    monkeypatch.setattr(optuna.trial.Trial, "set_user_attr", set_user_attr)
    status, _, err = cli_main(capsys, "run", "--space", TINY_SPACE, "--trials", 3, "--study-dir", study,
                              "--no-progress", "--fresh-process", 0)
    assert status == 1
    _one_line(err, study, f"python -m search resume {study}")

    monkeypatch.setattr(optuna.trial.Trial, "set_user_attr", original)  # space again
    status, out, err = cli_main(capsys, "report", study)
    assert status == 0 and "trial 2        failed: no reason stored (its process stopped before storing one" in out, out
    status, out, err = cli_main(capsys, "resume", study, "--no-progress")
    assert status == 0, err[-2000:]
    assert "Leaderboard (accuracy, 4 trials: " in out and (study / "export" / "manifest.json").is_file()


def test_an_export_on_a_full_disk_leaves_the_old_export_whole_and_says_to_export_again(study, capsys, monkeypatch):
    manifest = study / "export" / "manifest.json"
    before = hashlib.sha256(manifest.read_bytes()).hexdigest()

    def save_export(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("encoderkit.export.save_export", save_export)
    status, _, err = cli_main(capsys, "export", study, "--trial", 0, "-o", study.parent / "elsewhere")
    assert status == 1
    _one_line(err, study, f"python -m search export {study} --trial 0 -o {study.parent / 'elsewhere'}")
    assert hashlib.sha256(manifest.read_bytes()).hexdigest() == before
    assert not (study.parent / "elsewhere").exists()
    from search.refit import export_best

    with pytest.raises(DiskFull) as caught:  # from Python: an OSError too, as the write was
        export_best(study, trial=0, out=study.parent / "from-python")
    assert caught.value.errno == errno.ENOSPC and isinstance(caught.value, OSError)
