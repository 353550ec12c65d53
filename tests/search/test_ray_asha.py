"""Ray's ASHA scheduler really stops a trial that is behind at a rung, and the study stores it
as PRUNED, with fewer epochs than the full budget (the conformance tests accept PRUNED but
never require it).

The space is built so that ASHA must stop one: one trial at a time (`workers=1`), and two
start points run first, in order. The first probes the raw pixels beside its code
(`include_input: true`), so its intermediate score at the first rung is about 0.9; the
second probes a one-number code alone, at most about 0.35. ASHA (grace period 1, reduction
factor 2) keeps a trial at a rung only if its score is not below the median of the scores
recorded there: the second trial is below it at the first rung, epoch 1 of 3, and is stopped.
Under a FIFO scheduler both would run their three epochs and complete."""

import subprocess
import sys

import pytest
import yaml

from search.testing.backend_conformance import stored_trials
from tests.conftest import ROOT

# Intermediate scores at every checkpoint (by default tiny trials take none: under 2 s left).
pytestmark = [pytest.mark.usefixtures("always_checkpoint"), pytest.mark.xdist_group("ray")]

EPOCHS = 3  # checkpoints after epochs 1 and 2, then the final score: ASHA's max_t
GOOD = {"include_input": True, "code_size": 8}
BAD = {"include_input": False, "code_size": 1}


def asha_space(tmp_path):
    document = {
        "name": "asha",
        "code_size": {"int": [1, 8]},
        "include_input": {"choice": [True, False]},
        "training": {"epochs": EPOCHS, "batch_size": 64, "learning_rate": 3.0e-3, "optimizer": "adam"},
        "families": {"dense": {"stack": {"depth": 0}}},
        "probe": {"model": "logistic_regression", "metric": "accuracy", "cv": 2},
        "start": [GOOD, BAD],
    }
    path = tmp_path / "asha.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def test_asha_stops_the_trial_behind_at_the_first_rung_and_it_is_stored_pruned(tmp_path):
    study = tmp_path / "study"
    code = f"""
from search import engine
engine.run("digits", space={str(asha_space(tmp_path))!r}, trials=2, backend="ray", workers=1,
           study_dir={str(study)!r}, progress=False, export=False)
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    stored = stored_trials(study)
    assert [t.params["include_input"] for t in stored] == [True, False], [(t.params, t.state.name) for t in stored]
    good, bad = stored

    assert good.state.name == "COMPLETE", good.user_attrs.get("fail_reason")
    assert good.user_attrs["epochs_run"] == EPOCHS and sorted(good.intermediate_values) == [1, 2]

    assert bad.state.name == "PRUNED", (bad.state.name, bad.user_attrs.get("fail_reason"))
    assert bad.user_attrs["candidate"]["training"]["epochs"] == EPOCHS
    # Stopped at the first rung: one intermediate score, after epoch 1 of 3, and behind the
    # good trial's score there.
    assert list(bad.intermediate_values) == [1]
    assert max(bad.intermediate_values) < EPOCHS
    assert "epochs_run" not in bad.user_attrs and bad.value is None
    assert bad.intermediate_values[1] < good.intermediate_values[1]
