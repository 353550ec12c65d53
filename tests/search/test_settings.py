"""Typed settings: each validates itself, round-trips through the manifest, and holds the
defaults that the CLI, `search.run` and `EncoderSearch` share."""

import ast
import inspect

import numpy as np
import pytest

import search
from search.backends import get_backend
from search.cli import build_parser
from search.errors import SearchError
from search.settings import (
    OPTION_DEFAULTS, Budget, KerasTunerOptions, OptunaOptions, RayOptions, StudySpec, option_keys,
)
from tests.conftest import ROOT


@pytest.mark.parametrize("make, message", [
    (lambda: Budget(trials=0), "trials: must be at least 1, got 0"),
    (lambda: Budget(max_failures=-1), "max_failures: must be at least 1, got -1"),
    (lambda: Budget(timeout=0), "timeout: must be positive seconds, got 0"),
    (lambda: Budget(trials="many"), "trials: must be a whole number, got 'many'"),
    (lambda: Budget(trials=float("inf")), "trials: must be a whole number, got inf"),
    (lambda: Budget(timeout="1h"), "timeout: must be a number, got '1h'"),
    (lambda: RayOptions(cpus_per_trial=None), "cpus_per_trial: must be a number, got None"),
    (lambda: StudySpec(test_size=1.0), "test_size: must be a fraction strictly between 0 and 1, got 1.0"),
    (lambda: StudySpec(subsample=0), "subsample: must be a positive number of rows, got 0"),
    (lambda: StudySpec(metric="r2"), "metric: unknown metric 'r2'"),
    (lambda: OptunaOptions(workers=0), "workers: must be at least 1, got 0"),
    (lambda: OptunaOptions(fresh_process=-1), "fresh_process: must be a number of trials per process, got -1"),
    (lambda: RayOptions(cpus_per_trial=0), "cpus_per_trial: must be positive, got 0"),
    (lambda: RayOptions(address=5), "address: expected HOST:PORT or auto, got 5"),  # a hand-edited manifest's
    (lambda: RayOptions(gpus_per_trial=1.5), "gpus_per_trial: a fraction of one GPU or a whole number, got 1.5"),
    (lambda: KerasTunerOptions(algorithm="grid"), "algorithm: unknown algorithm 'grid'"),
    (lambda: OptunaOptions(storage="studies-db"), "storage: not a database URL (postgresql://USER@HOST/DB, sqlite:///PATH) nor journal:PATH, got 'studies-db'"),
    (lambda: OptunaOptions(storage="journal:/no/such/folder/x.log"), "storage: journal:/no/such/folder/x.log: folder /no/such/folder does not exist"),
    (lambda: RayOptions.for_backend("ray", storage="journal:x"), "storage: not an option of backend ray"),
    (lambda: KerasTunerOptions(workers=2), "workers: the kerastuner backend runs one trial at a time, got 2"),
    (lambda: OptunaOptions.for_backend("optuna", address="auto"), "address: not an option of backend optuna"),
    (lambda: RayOptions.for_backend("ray", fresh_process=3), "fresh_process: not an option of backend ray"),
    (lambda: KerasTunerOptions.for_backend("kerastuner", gpus_per_trial=1), "gpus_per_trial: not an option of backend kerastuner"),
    # set from Python, another backend's option is refused also at its default value, as typed on the CLI
    (lambda: RayOptions.for_backend("ray", gpus="auto"), "gpus: not an option of backend ray"),
    (lambda: search.run("digits", backend="optuna", algorithm="random"), "algorithm: not an option of backend optuna"),
    (lambda: search.EncoderSearch(backend="kerastuner", cpus_per_trial=1).fit(np.eye(4), [0, 1] * 2),
     "cpus_per_trial: not an option of backend kerastuner"),
])
def test_each_settings_type_refuses_a_bad_value_naming_the_parameter(make, message):
    with pytest.raises(SearchError) as caught:
        make()
    assert str(caught.value).startswith(message)


def test_settings_round_trip_through_the_manifest_with_their_defaults():
    budget = Budget(trials="5", timeout=60, max_failures=3)
    assert (budget.trials, budget.timeout) == (5, 60.0)  # normalised as made
    assert Budget.from_manifest({**budget.to_manifest(), "seed": 4, "backend": "ray"}) == budget
    assert Budget.from_manifest({}) == Budget()  # an older study lacking a key gets the default
    options = OptunaOptions(workers=2, gpus="none", fresh_process=None)
    assert options.fresh_process == 25 and options.gpus == []
    # a switch from Python, as the bare --fresh-process flag: on is a process per trial
    assert (OptunaOptions(fresh_process=True).fresh_process, OptunaOptions(fresh_process=False).fresh_process) == (1, 0)
    assert (Budget(trials=2.0).trials, Budget(trials=np.int64(3)).trials, Budget(trials=2**60).trials) == (2, 3, 2**60)
    assert OptunaOptions.from_manifest(options.to_manifest()) == options
    ray = RayOptions.for_backend("ray", workers=3, cpus_per_trial=2, gpus_per_trial=0.5)
    assert ray.to_manifest() == {"workers": 3, "address": None, "cpus_per_trial": 2.0, "gpus_per_trial": 0.5}
    assert StudySpec.from_manifest(StudySpec(data="memory:ab", seed=3).to_manifest()).data == "memory:ab"
    # A study from before `fresh_process` and `gpus` ran trials in the worker, on no pinned GPU.
    assert OptunaOptions.from_manifest({"workers": 2}) == OptunaOptions(workers=2, gpus=[], fresh_process=0)
    # Every backend runs trials in its worker when told so (the CLI accepted it before).
    assert RayOptions.for_backend("ray", fresh_process=0) == RayOptions()
    assert set(OPTION_DEFAULTS) == option_keys() == {"workers", "gpus", "fresh_process", "storage", "address",
                                                      "cpus_per_trial", "gpus_per_trial", "algorithm"}
    # A storage URL is kept without its password (this process remembers it)
    assert OptunaOptions(storage="postgresql://u:pw@db.example:5432/studies").storage == \
        "postgresql+psycopg://u@db.example:5432/studies"


def test_each_backend_names_its_options_type():
    for name, options in (("optuna", OptunaOptions), ("kerastuner", KerasTunerOptions), ("ray", RayOptions)):
        assert get_backend(name).Options is options
    assert not KerasTunerOptions.takes_start_points and OptunaOptions.takes_start_points and RayOptions.takes_start_points


def test_the_cli_search_run_and_encoder_search_share_one_set_of_defaults():
    run_flags = build_parser()._subparsers._group_actions[0].choices["run"]
    cli = {a.dest: a.default for a in run_flags._actions if a.dest != "help"}
    python = {k: p.default for k, p in inspect.signature(search.run).parameters.items()}
    estimator = {k: p.default for k, p in inspect.signature(search.EncoderSearch).parameters.items()}
    defaults = {**Budget().to_manifest(), **OPTION_DEFAULTS, **{k: v for k, v in StudySpec().to_manifest().items()}}
    helps = {a.dest: a.help or "" for a in run_flags._actions}
    for key, value in defaults.items():
        if key in OPTION_DEFAULTS and key != "workers":  # None: not set, the backend's default; the help names it
            assert python[key] is None and estimator[key] is None and cli[key] is None, key
            assert value is None or f"(default: {value})" in helps[key], key
            continue
        assert python[key] == value, key
        if key in cli:
            assert cli[key] == value, key
        if key not in ("data", "target"):
            assert estimator[key] == value, key


def test_nothing_imports_a_private_name_of_another_module():
    """Modules, benchmarks and tests use each other's public names only."""
    offenders = []
    for folder in ("search", "src", "benchmarks", "tests"):
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in ("search", "encoderkit"):
                    offenders += [f"{path.relative_to(ROOT)}: {node.module}.{a.name}" for a in node.names
                                  if a.name.startswith("_") and not a.name.startswith("__")]
    assert not offenders, offenders


def test_a_message_names_a_setting_as_the_user_gives_it_and_each_such_setting_is_a_flag_of_run():
    """`max_failures=3` to search.run, `--max-failures 3` on the command line (a notebook's
    error named the command line's flags). Every setting a message names this way is a flag of
    `run` under that name (found in the source, so a renamed flag fails here)."""
    from search.errors import setting, settings_as_flags

    assert setting("max_failures", 3) == "max_failures=3" and setting("backend", "ray") == "backend='ray'"
    with settings_as_flags():
        assert setting("max_failures", 3) == "--max-failures 3" and setting("study_dir") == "--study-dir"
    assert setting("study_dir") == "study_dir"  # as it was after the command line's block

    named = set()
    for path in (ROOT / "search").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "setting" and node.args:
                named.add(ast.literal_eval(node.args[0]))
    assert {"max_failures", "backend", "address", "subsample", "algorithm"} <= named
    run_flags = {flag for action in build_parser()._subparsers._group_actions[0].choices["run"]._actions
                 for flag in action.option_strings}
    assert {f"--{name.replace('_', '-')}" for name in named} <= run_flags, named
