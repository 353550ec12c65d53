"""keras-tuner samples up front, so its adapter declares the space's structure as conditional
scopes, read from the parameter names: each family's parameters under `family`, each layer's
under its family's stack depth (only the depths that have that layer)."""

import pytest

kt = pytest.importorskip("keras_tuner")

from search.space import load_space  # noqa: E402
from search.suggest import KerasTunerSuggest, sample  # noqa: E402

SPACE = """
name: two-families
code_size: {int: [2, 8]}
training: {epochs: 2, learning_rate: {float: [1.0e-3, 1.0e-2], log: true}}
families:
  dense: {stack: {depth: {int: [0, 2]}, units: {int: [4, 16]}, activation: {choice: [relu, tanh]}}}
  sparse: {l1: {float: [1.0e-6, 1.0e-3], log: true}, stack: {depth: 1, units: 8, activation: relu}}
"""


def conditions(hp) -> dict:
    return {p.name: [(c.name, list(c.values)) for c in p.conditions] for p in hp.space}


def test_conditional_scopes_come_from_the_parameter_names(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text(SPACE)
    space = load_space(str(path))
    declared = conditions(KerasTunerSuggest.declare(kt.HyperParameters(), space))
    assert declared["family"] == [] and declared["code_size"] == [] and declared["training.learning_rate"] == []
    assert declared["dense.depth"] == [("family", ["dense"])]
    assert declared["dense.layer_0.units"] == [("family", ["dense"]), ("dense.depth", [1, 2])]
    assert declared["dense.layer_1.activation"] == [("family", ["dense"]), ("dense.depth", [2])]
    assert declared["sparse.l1"] == [("family", ["sparse"])]
    assert "sparse.layer_0.units" not in declared  # fixed: nothing to declare

    # A trial samples only the active branch, and the values it gets are the declared ones.
    hp = kt.HyperParameters()
    hp.values.update({"family": "dense", "dense.depth": 1})
    candidate = sample(space, KerasTunerSuggest(hp))
    assert candidate["family"] == "dense" and len(candidate["family_params"]["layers"]) == 1
    assert hp.is_active("dense.layer_0.units") and not hp.is_active("dense.layer_1.units")


def test_the_default_seed_0_seeds_keras_tuners_oracle(tmp_path):
    """keras-tuner takes seed 0 as "none" and draws one at random: two searches with --seed 0
    (the default) sampled different trials."""
    from search.backends.kerastuner_backend import make_oracle

    path = tmp_path / "space.yaml"
    path.write_text(SPACE)
    space = load_space(str(path))
    objective = kt.Objective("score", direction="max")
    seeds = {make_oracle(kt, algorithm, objective, 3, seed, space).seed
             for algorithm in ("random", "bayesian") for seed in (0, 0)}
    assert seeds == {1}
    assert make_oracle(kt, "random", objective, 3, 7, space).seed == 8


def test_a_saved_keras_tuner_search_continues_only_with_its_own_algorithm(tmp_path):
    """keras-tuner reloads its oracle from DIR/kerastuner/: another algorithm's oracle failed
    to load it (a traceback in every later run). The algorithm is read from the saved state."""
    import json

    from search.backends.kerastuner_backend import check_continues, make_oracle, stored_algorithm
    from search.errors import StudyError
    from search.settings import KerasTunerOptions

    path = tmp_path / "space.yaml"
    path.write_text(SPACE.replace("epochs: 2", "epochs: {int: [1, 4]}"))
    space = load_space(str(path))
    objective = kt.Objective("score", direction="max")
    assert stored_algorithm(tmp_path) is None  # no keras-tuner search yet: any algorithm
    (tmp_path / "kerastuner").mkdir()
    for algorithm in ("random", "bayesian", "hyperband"):
        state = make_oracle(kt, algorithm, objective, 3, 0, space).get_state()
        (tmp_path / "kerastuner" / "oracle.json").write_text(json.dumps(state))
        assert stored_algorithm(tmp_path) == algorithm
        check_continues(tmp_path, KerasTunerOptions(algorithm=algorithm))
        other = "random" if algorithm != "random" else "bayesian"
        with pytest.raises(StudyError, match=f"holds a keras-tuner {algorithm} search, which algorithm {other} "
                                             f"cannot continue; use algorithm='{algorithm}'"):
            check_continues(tmp_path, KerasTunerOptions(algorithm=other))


def test_a_trial_stored_as_interrupted_is_stored_again_when_its_tuner_runs_it_again():
    """keras-tuner runs a trial cut short by Ctrl-C again on resume, under the same id: its
    result was dropped as "already recorded" (the stores disagreed, the retrained trial lost)."""
    import optuna

    from search.backends.records import interrupted_ids, recorded_ids

    study = optuna.create_study(direction="maximize")
    for trial_id, state, reason in (("0", "COMPLETE", None), ("1", "FAIL", "NaN loss at epoch 1"),
                                    ("2", "FAIL", "interrupted (Ctrl-C)"), ("3", "FAIL", "interrupted (SIGTERM)")):
        attrs = {"kerastuner_trial_id": trial_id, **({"fail_reason": reason} if reason else {})}
        study.add_trial(optuna.trial.create_trial(state=getattr(optuna.trial.TrialState, state), user_attrs=attrs,
                                                  value=0.5 if state == "COMPLETE" else None))
    assert recorded_ids(study, "kerastuner_trial_id") == {"0", "1"}
    assert interrupted_ids(study, "kerastuner_trial_id") == {"2": 2, "3": 3}


@pytest.mark.parametrize("name", ["default", "image", "sequence"])
def test_what_keras_tuner_samples_passes_the_transformers_parameter_check(name):
    """keras-tuner's Choice turns [false, true] into [0, 1]: every trial of the default space
    (include_input: {choice: [false, true]}) failed scikit-learn's parameter check."""
    from encoderkit import AutoencoderTransformer
    from search.suggest import transformer_params

    space = load_space(name)
    declared = KerasTunerSuggest.declare(kt.HyperParameters(), space)
    seen = set()
    for seed in range(8):
        hp = kt.HyperParameters()
        hp.values.update({p.name: p.random_sample(seed) for p in declared.space})
        candidate = sample(space, KerasTunerSuggest(hp))
        AutoencoderTransformer(**transformer_params(candidate, 0, (8, 8, 1)))._validate_params()
        seen.add(candidate["include_input"])
    assert seen <= {False, True} and all(type(v) is bool for v in seen)


FEW_CONFIGS = """code_size: {choice: [2, 4]}
training: {epochs: 1, batch_size: 64, learning_rate: 1.0e-2}
families: {dense: {stack: {depth: 0}}}
probe: {model: logistic_regression, cv: 3}
"""


def test_keras_tuner_stops_at_the_trial_count_or_says_why_it_stopped_short(tmp_path):
    """Hyperband has no trial limit of its own: one round over 1..81 epochs is over a hundred
    trials, which `--trials 2` ran in full. A random oracle that finds no untried configuration
    stopped short of the count with exit status 0 and no word."""
    from tests.conftest import run_cli

    few = tmp_path / "few.yaml"
    few.write_text(FEW_CONFIGS)
    result = run_cli("run", "--space", few, "--trials", "3", "--backend", "kerastuner", "--study-dir",
                     tmp_path / "few", "--no-progress")
    assert result.returncode == 0, result.stderr[-2000:]
    assert ("note: keras-tuner's random oracle stopped at 2 of 3 finished trials: it tries no configuration twice "
            "and found no new one") in result.stdout
    wide = tmp_path / "wide.yaml"
    wide.write_text(FEW_CONFIGS.replace("code_size: {choice: [2, 4]}", "code_size: {int: [2, 8]}")
                    .replace("epochs: 1,", "epochs: {int: [1, 81]},"))
    result = run_cli("run", "--space", wide, "--trials", "2", "--backend", "kerastuner", "--algorithm", "hyperband",
                     "--study-dir", tmp_path / "wide", "--no-progress", timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Leaderboard (accuracy, 2 trials: 2 complete" in result.stdout
    assert "note: keras-tuner" not in result.stdout


def test_keras_tuner_runs_past_failed_trials_to_the_count(tmp_path):
    """keras-tuner's oracles count failed trials toward their trial limit, the search does not:
    with --trials 3 and failures it stopped at 3 trials, fewer of them finished."""
    from tests.conftest import run_cli

    space = tmp_path / "half-diverging.yaml"  # the large learning rate's trials fail with NaN
    space.write_text("code_size: {int: [2, 8]}\nscaling: standard\n"
                     "training: {epochs: 2, batch_size: 64, learning_rate: {choice: [1.0e-2, 1.0e+12]}, "
                     "optimizer: sgd}\nfamilies: {dense: {stack: {depth: 1, units: 8, activation: relu}}}\n"
                     "probe: {model: logistic_regression, cv: 3}\n")
    result = run_cli("run", "--space", space, "--trials", "3", "--backend", "kerastuner", "--study-dir",
                     tmp_path / "study", "--no-progress")
    assert result.returncode == 0, result.stderr[-2000:]
    header = next(line for line in result.stdout.splitlines() if line.startswith("Leaderboard"))
    assert ": 3 complete, 0 pruned," in header and " 0 failed)" not in header, header


def test_resume_after_max_failures_runs_new_trials_not_the_last_failed_one_again(tmp_path):
    """The FatalError that ends a keras-tuner search on --max-failures left its last trial
    running in keras-tuner's oracle, which ran it again on resume: trained twice, not stored,
    and counted toward --max-failures, so resume stopped after one new trial (optuna: two)."""
    from tests.conftest import run_cli

    space = tmp_path / "diverging.yaml"  # every trial fails with NaN; code sizes give new configs
    space.write_text("code_size: {int: [2, 30]}\nscaling: standard\n"
                     "training: {epochs: 2, batch_size: 64, learning_rate: 1.0e+12, optimizer: sgd}\n"
                     "families: {dense: {stack: {depth: 1, units: 8, activation: relu}}}\n"
                     "probe: {model: logistic_regression, cv: 3}\n")
    study = tmp_path / "study"
    first = run_cli("run", "--space", space, "--trials", "6", "--max-failures", "2", "--backend", "kerastuner",
                    "--study-dir", study, "--no-progress")
    assert first.returncode == 2 and "2 trials failed in a row" in first.stderr, first.stderr[-2000:]
    again = run_cli("resume", study, "--no-progress")
    assert again.returncode == 2 and "2 trials failed in a row" in again.stderr, again.stderr[-2000:]
    assert "4 trials: 0 complete, 0 pruned, 4 failed)" in again.stdout, again.stdout
