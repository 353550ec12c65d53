"""The crash hook (search/faults.py) stays out of a user's way: read once, validated, taken
out of the environment, handed only to the processes that need it, and loud when it kills."""

import os
import subprocess
import sys

import pytest

from search import faults
from search.errors import SearchError
from tests.conftest import ROOT


@pytest.fixture
def disarmed():
    yield
    faults.arm(None)


def test_the_hook_is_taken_out_of_the_environment_and_handed_on_explicitly(monkeypatch, disarmed):
    monkeypatch.setenv(faults.VARIABLE, "epoch:3")
    faults.check_environment()
    assert faults.VARIABLE not in os.environ  # nothing started from here inherits it
    assert faults.armed() == "epoch:3"
    assert faults.hook_env() == {faults.VARIABLE: "epoch:3"}  # extra workers are handed it
    faults.check_environment()  # a second check (CLI, then `search.run`) keeps it armed
    assert faults.armed() == "epoch:3"
    faults.arm(None)
    assert faults.hook_env() == {}


@pytest.mark.parametrize("value", ["epoch:x", "midnight", "epoch:0", "epoch:1:2", "epoch:1:other"])
def test_a_malformed_hook_is_refused_in_one_line(monkeypatch, disarmed, value):
    monkeypatch.setenv(faults.VARIABLE, value)
    with pytest.raises(SearchError, match=f"{faults.VARIABLE}={value!r}: expected POINT"):
        faults.check_environment()


def test_the_hook_says_what_it_kills_and_counts_passes():
    code = (
        "from search import faults\n"
        "faults.arm('trial_written:2')\n"
        "faults.crash_point('epoch'); faults.crash_point('trial_written')\n"
        "print('passed once', flush=True)\n"
        "faults.crash_point('trial_written')\n"
        "print('not reached')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60,
                            env={**os.environ, "PYTHONPATH": f"{ROOT / 'src'}:{ROOT}"})
    assert result.returncode == -9
    assert result.stdout == "passed once\n"
    assert f"{faults.VARIABLE}=trial_written:2: test hook kills process" in result.stderr
