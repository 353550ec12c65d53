"""Search spaces: loading, validation errors, sampling and replay (no model is trained here)."""

import copy
import re
import warnings

import numpy as np
import optuna

import pytest
import yaml

from search.domains import Choice, Fixed, FloatRange, IntRange
from search.errors import SpaceError
from search.space import builtin_spaces, load_space, parse_space
from search.suggest import FixedSuggest, OptunaSuggest, sample

optuna.logging.set_verbosity(optuna.logging.WARNING)


class RandomSuggest:
    """A minimal Suggest: draws with a numpy rng and records name -> value."""

    def __init__(self, seed=0):
        self.rng = np.random.default_rng(seed)
        self.params = {}

    def int(self, name, low, high, *, log=False, step=1):
        value = int(low + step * self.rng.integers(0, (high - low) // step + 1))
        self.params[name] = value
        return value

    def float(self, name, low, high, *, log=False, step=None):
        if log:
            value = float(np.exp(self.rng.uniform(np.log(low), np.log(high))))
        else:
            value = float(self.rng.uniform(low, high))
        self.params[name] = value
        return value

    def choice(self, name, options):
        value = options[int(self.rng.integers(0, len(options)))]
        self.params[name] = value
        return value


def minimal(**extra):
    return {"families": {"dense": {"stack": {"depth": 1, "units": 8}}}, **extra}


# --- loading the shipped space ---------------------------------------------------------------


def test_default_space_loads_with_its_four_families():
    assert "default" in builtin_spaces()
    assert builtin_spaces()["default"].is_file()
    space = load_space("default")
    assert space.name == "default"
    assert set(space.family_names) == {"dense", "denoising", "sparse", "vae"}
    assert dict(space.probe) == {"model": "auto", "metric": "auto", "cv": 5}
    assert space.code_size == IntRange(16, 1024, log=True, step=1)
    assert dict(space.training)["patience"] == Fixed(5)


def test_extends_copies_the_base_block_and_adds_its_own_params():
    space = load_space("default")
    families = {f.name: f for f in space.families}
    dense, denoising = families["dense"], families["denoising"]
    assert denoising.depth is not None
    assert denoising.depth == dense.depth == IntRange(0, 2)
    assert denoising.layer_params == dense.layer_params
    params = dict(denoising.params)
    assert params["noise"] == FloatRange(0.05, 0.5)
    assert params["noise_type"] == Choice(("gaussian", "masking"))
    # the base's own (non-stack) params were copied too
    for key, domain in dense.params:
        assert params[key] == domain
    assert "noise" not in dict(dense.params)
    # vae overrides the base's code_activation with a fixed value
    assert dict(families["vae"].params)["code_activation"] == Fixed("linear")


def test_extends_merges_a_stack_override_with_the_base_stack():
    space = parse_space(
        {
            "families": {
                "dense": {"stack": {"depth": {"int": [0, 2]}, "units": {"int": [4, 8]}}},
                "sparse": {"extends": "dense", "stack": {"depth": 3}},
            }
        },
        "x.yaml",
    )
    sparse = {f.name: f for f in space.families}["sparse"]
    assert sparse.depth == Fixed(3)
    assert dict(sparse.layer_params)["units"] == IntRange(4, 8)


# --- sampling and replay ---------------------------------------------------------------------


def _sample_with_stack(space, min_depth=1):
    for seed in range(200):
        suggest = RandomSuggest(seed)
        candidate = sample(space, suggest)
        if len(candidate["family_params"].get("layers", [])) >= min_depth:
            return candidate, suggest.params
    raise AssertionError("no candidate with a hidden layer in 200 draws")


def test_fixed_suggest_replays_a_sampled_candidate():
    space = load_space("default")
    candidate, recorded = _sample_with_stack(space, min_depth=2)
    family = candidate["family"]
    depth = recorded[f"{family}.depth"]
    assert depth >= 2
    assert len(candidate["family_params"]["layers"]) == depth
    for i in range(depth):
        assert f"{family}.layer_{i}.units" in recorded
        assert f"{family}.layer_{i}.activation" in recorded
        assert candidate["family_params"]["layers"][i]["units"] == recorded[f"{family}.layer_{i}.units"]
    assert f"{family}.layer_{depth}.units" not in recorded
    assert recorded["family"] == family
    assert "code_size" in recorded and "training.learning_rate" in recorded
    # fixed values are not suggested
    assert "training.patience" not in recorded
    assert candidate["training"]["patience"] == 5

    replayed = sample(space, FixedSuggest(recorded))
    assert replayed == candidate


def test_dense_stack_names_use_the_family_prefix():
    space = load_space("default")
    for seed in range(300):
        suggest = RandomSuggest(seed)
        candidate = sample(space, suggest)
        if candidate["family"] == "dense" and candidate["family_params"]["layers"]:
            break
    else:
        raise AssertionError("no dense candidate with layers")
    assert "dense.depth" in suggest.params
    assert "dense.layer_0.units" in suggest.params
    assert 32 <= suggest.params["dense.layer_0.units"] <= 512
    assert len(candidate["family_params"]["layers"]) == suggest.params["dense.depth"]


def test_depth_zero_gives_no_layers_and_replays():
    space = parse_space(minimal(families={"dense": {"stack": {"depth": 0}}}), "x.yaml")
    suggest = RandomSuggest(0)
    candidate = sample(space, suggest)
    assert candidate["family_params"]["layers"] == []
    assert not any(k.startswith("dense.layer_") for k in suggest.params)
    # single family: no "family" choice is made
    assert "family" not in suggest.params
    assert sample(space, FixedSuggest(suggest.params)) == candidate


def test_fixed_suggest_missing_value_raises():
    from search.errors import StudyError

    space = load_space("default")
    with pytest.raises(StudyError, match="family"):
        sample(space, FixedSuggest({}))


def test_a_replayed_value_outside_the_space_warns_and_is_used_as_given():
    space = parse_space(minimal(families={"dense": {"stack": {"depth": 1, "units": {"int": [4, 16]},
                                                                "activation": {"choice": ["relu", "tanh"]}}}}),
                        "x.yaml")
    params = {"code_size": 4, "dense.layer_0.units": 64, "dense.layer_0.activation": "elu"}
    with pytest.warns(UserWarning) as caught:
        candidate = sample(space, FixedSuggest({**params, **_stored_rest(space, params)}))
    messages = [str(w.message) for w in caught]
    assert "parameter dense.layer_0.units=64 is outside the space's int[4, 16]; used as given" in messages
    assert "parameter dense.layer_0.activation='elu' is outside the space's choice['relu', 'tanh']; used as given" in messages
    assert candidate["family_params"]["layers"] == [{"units": 64, "activation": "elu"}]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # inside the space: no warning
        sample(space, FixedSuggest({**params, "dense.layer_0.units": 8, "dense.layer_0.activation": "relu",
                                    **_stored_rest(space, params)}))


def _stored_rest(space, given):
    """Values for every other parameter the space asks for, from a random sample."""
    suggest = RandomSuggest(0)
    sample(space, suggest)
    return {k: v for k, v in suggest.params.items() if k not in given}


def _optuna_candidates(space, seed, n=5):
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=seed))
    candidates = []

    def objective(trial):
        candidates.append(sample(space, OptunaSuggest(trial)))
        return 0.0

    study.optimize(objective, n_trials=n)
    return candidates, study


def test_same_optuna_seed_gives_the_same_candidates():
    space = load_space("default")
    first, study = _optuna_candidates(space, 3)
    second, _ = _optuna_candidates(space, 3)
    assert len(first) == 5
    assert first == second
    # the candidates are not all the same (the seed really drives sampling)
    assert len({repr(c) for c in first}) > 1
    # and each trial's stored params replay to its candidate
    for trial, candidate in zip(study.trials, first):
        assert sample(space, FixedSuggest(trial.params)) == candidate


def test_different_optuna_seed_gives_different_candidates():
    space = load_space("default")
    first, _ = _optuna_candidates(space, 3)
    other, _ = _optuna_candidates(space, 4)
    assert first != other


# --- errors ----------------------------------------------------------------------------------


def fam(block, name="dense"):
    return {"families": {name: block}}


TWO = {  # two families, so `family` is a searched parameter
    "code_size": {"int": [4, 64], "log": True},
    "families": {"dense": {"stack": {"depth": {"int": [0, 2]}, "units": {"int": [8, 64]}}},
                 "sparse": {"extends": "dense", "l1": {"float": [1e-6, 1e-4], "log": True}}},
}


BAD_DOCUMENTS = [
    # (document, key path, bad value as it must appear)
    ({"code_sise": 8, **fam({})}, "code_sise", "did you mean 'code_size'"),
    ({"families": {"densee": {}}}, "families.densee", "did you mean 'dense'"),
    ({"code_size": {"int": [64, 8]}, **fam({})}, "code_size.int", "low 64 > high 8"),
    ({"code_size": {"int": [0, 8], "log": True}, **fam({})}, "code_size.int", "got 0"),
    (fam({"dropout": {"float": [0.0, 0.3], "log": True}}), "families.dense.dropout.float", "got 0.0"),
    (fam({"code_activation": {"choice": []}}), "families.dense.code_activation.choice", "[]"),
    (fam({"code_activation": ["relu", "tanh"]}), "families.dense.code_activation", "['relu', 'tanh']"),
    (fam({"code_activation": "sigmoidal"}), "families.dense.code_activation", "'sigmoidal'"),
    (fam({"stack": {"depth": 1, "activation": "rellu"}}), "families.dense.stack.activation", "'rellu'"),
    (fam({"dropout": 1.5}), "families.dense.dropout", "1.5"),
    (fam({"dropout": {"float": [0.1, 2.0]}}), "families.dense.dropout", "2.0"),
    (fam({"batch_norm": "yes"}), "families.dense.batch_norm", "'yes'"),
    (
        {"families": {"dense": {}, "denoising": {"extends": "vae"}}},
        "families.denoising.extends",
        "'vae'",
    ),
    (
        {"families": {"dense": {"extends": "sparse"}, "sparse": {"extends": "dense"}}},
        "extends",
        "circular",
    ),
    (fam({"extends": "dense"}), "families.dense.extends", "circular extends through 'dense'"),
    (fam({"stack": {"units": 8}}), "families.dense.stack.depth", "missing"),
    (fam({"stack": {"depth": 17}}), "families.dense.stack.depth", "17"),
    (fam({"stack": {"depth": 1, "widht": 3}}), "families.dense.stack.widht", "unknown key"),
    (fam({"noise": 0.1}), "families.dense.noise", "unknown key"),
    (fam({"stack": {"depth": 1, "units": {"float": [1, 2]}}}), "families.dense.stack.units", "float[1, 2]"),
    (fam({"stack": {"depth": 1, "activation": {"int": [1, 2]}}}), "families.dense.stack.activation", "int[1, 2]"),
    (fam({"stack": {"depth": 1, "units": {"int": [1.5, 4]}}}), "families.dense.stack.units.int", "1.5"),
    (fam({"stack": {"depth": 1, "units": {"int": ["many", 4]}}}), "families.dense.stack.units.int", "'many'"),
    (fam({"dropout": {"float": [0.1, 0.2], "stp": 0.05}}), "families.dense.dropout.stp", "unknown key"),
    (fam({"dropout": {"float": [0.1, 0.2], "step": -0.05}}), "families.dense.dropout.step", "-0.05"),
    (fam({"dropout": {"float": [0.1]}}), "families.dense.dropout.float", "[0.1]"),
    (fam({"dropout": {"float": [0.1, 0.2], "choice": [0.1]}}), "families.dense.dropout", "exactly one"),
    (fam({"dropout": {"float": [0.1, 0.2], "log": "yes"}}), "families.dense.dropout.log", "'yes'"),
    (fam({"beta": 0}, name="vae"), "families.vae.beta", "0"),
    ({**fam({}), "probe": {"cv": 1}}, "probe.cv", "got 1"),
    ({**fam({}), "probe": {"cv": True}}, "probe.cv", "got True"),
    ({**fam({}), "probe": {"metric": "precision"}}, "probe.metric", "'precision'"),
    ({**fam({}), "probe": {"model": "svm"}}, "probe.model", "'svm'"),
    ({**fam({}), "probe": {"folds": 3}}, "probe.folds", "unknown key"),
    ({**fam({}), "training": {"epochs": 0}}, "training.epochs", "0 out of range"),
    ({**fam({}), "training": {"optimizer": "adamw"}}, "training.optimizer", "'adamw'"),
    ({**fam({}), "scaling": "robust"}, "scaling", "'robust'"),
    ({"name": "no families"}, "families", "missing"),
    ({"families": {}}, "families", "{}"),
    ({"families": {"dense": 3}}, "families.dense", "3"),
    # start points: walked through the space, so names and values are checked like the rest
    ({**TWO, "start": {"family": "dense"}}, "start", "expected a list"),
    ({**TWO, "start": ["dense"]}, "start[0]", "'dense'"),
    ({**TWO, "start": [{"code_size": 100}]}, "start[0].code_size", "100 is outside the space's int[4, 64]"),
    ({**TWO, "start": [{"family": "vae"}]}, "start[0].family", "'vae' is outside the space's choice['dense', 'sparse']"),
    ({**TWO, "start": [{"family": "dense", "sparse.l1": 1e-5}]}, "start[0].sparse.l1", "not a searched parameter"),
    ({**TWO, "start": [{"code_sise": 8}]}, "start[0].code_sise", "did you mean 'code_size'"),
    ({**fam({}), "start": [{"family": "vae"}]}, "start[0].family", "'vae': this space has one family, 'dense'"),
    ({**TWO, "start": [{"family": "dense", "dense.depth": 1, "dense.layer_1.units": 8}]},
     "start[0].dense.layer_1.units", "did you mean 'dense.layer_0.units'"),
    ({**TWO, "start": [{"family": "dense", "dense.depth": 1, "dense.layer_0.units": 8.5}]},
     "start[0].dense.layer_0.units", "8.5"),
    # a family's parameters without the family: it would be sampled, and the point run as another
    ({**TWO, "start": [{"code_size": 8, "sparse.l1": 1e-5}]}, "start[0].sparse.l1", "add family: sparse"),
    # off the range's grid (Optuna stored the off-grid value with a warning), the step named
    ({**fam({"dropout": {"float": [0.0, 0.3], "step": 0.1}}), "start": [{"dense.dropout": 0.15}]},
     "start[0].dense.dropout", "0.15 is outside the space's float[0, 0.3] step 0.1"),
    ({**fam({"stack": {"depth": 1, "units": {"int": [10, 50], "step": 20}}}), "start": [{"dense.layer_0.units": 20}]},
     "start[0].dense.layer_0.units", "20 is outside the space's int[10, 50] step 20"),
    # a range that is no whole number of steps (Optuna moved `high` with a warning per trial)
    ({"code_size": {"int": [2, 9], "step": 3}, **fam({})}, "code_size.step",
     "2..9 is not a whole number of steps of 3"),
    (fam({"dropout": {"float": [0.0, 0.25], "step": 0.1}}), "families.dense.dropout.step", "0.0..0.25"),
    # blocks of another type were taken as empty
    ({**fam({}), "training": 0}, "training", "expected a mapping, got int 0"),
    ({**fam({}), "probe": False}, "probe", "expected a mapping, got bool False"),
    ({**fam({}), "start": {}}, "start", "expected a list"),
    # a data kind none of the families takes passed `spaces` and failed every `run`
    ({"data_kinds": ["tabular"], "families": {"conv2d": {}}}, "data_kinds", "no family of this space takes tabular"),
    # a key the user wrote in the base family is named as inherited, not as the child's
    ({"families": {"sparse": {"l1": 1e-5}, "vae": {"extends": "sparse"}}}, "families.vae.l1",
     "(inherited from 'sparse' through extends)"),
    ({"families": {"dense": {"stack": {"depth": 1, "units": 8}}, "conv2d": {"extends": "dense"}}},
     "families.conv2d.stack.units", "(inherited from 'dense' through extends)"),
]


@pytest.mark.parametrize("document, key_path, value", BAD_DOCUMENTS)
def test_bad_documents_name_file_key_and_value(document, key_path, value):
    with pytest.raises(SpaceError) as info:
        parse_space(copy.deepcopy(document), "x.yaml")
    message = str(info.value)
    assert message.startswith("x.yaml: "), message
    assert key_path in message, message
    assert value in message, message


@pytest.mark.parametrize(
    "text, expected",
    [
        ("families: [dense", ["invalid YAML", "line 1"]),
        ("", ["the file is empty"]),
        ("# only a comment\n", ["the file is empty"]),
        ("families:\n  dense:\n    dropout: {float: [0.3, 0.1]}\n", ["families.dense.dropout.float", "low 0.3 > high 0.1"]),
        ("code_sise: 8\nfamilies: {dense: {}}\n", ["code_sise", "did you mean 'code_size'"]),
        ("families: {densee: {}}\n", ["families.densee", "did you mean 'dense'"]),
    ],
    ids=["malformed", "empty", "comment-only", "low-gt-high", "typo-top-key", "typo-family"],
)
def test_bad_files_are_named_in_the_error(tmp_path, text, expected):
    path = tmp_path / "my_space.yaml"
    path.write_text(text)
    with pytest.raises(SpaceError) as info:
        load_space(str(path))
    message = str(info.value)
    assert str(path) in message, message
    for part in expected:
        assert part in message, message


def test_missing_space_file_lists_the_shipped_spaces(tmp_path):
    with pytest.raises(SpaceError, match="default") as info:
        load_space(str(tmp_path / "nope.yaml"))
    assert "nope.yaml" in str(info.value)


def test_scientific_notation_is_a_number_also_as_a_fixed_value_and_in_a_choice(tmp_path):
    """`learning_rate: 1e-3`, as ML code writes it, was refused: "expected a number, got '1e-3'"."""
    path = tmp_path / "sci.yaml"
    path.write_text("training: {learning_rate: 1e-3, epochs: {choice: [2, 3]}}\n"
                    "families:\n  sparse:\n    l1: {choice: [1e-7, 1E-5, +2.5e-4]}\n")
    space = load_space(str(path))
    assert dict(space.training)["learning_rate"] == Fixed(0.001)
    assert dict(space.families[0].params)["l1"] == Choice((1e-7, 1e-5, 2.5e-4))
    path.write_text("training: {batch_size: 6.4e1, epochs: {choice: [2e0, 3, 3.0]}}\nfamilies: {dense: {}}\n")
    training = dict(load_space(str(path)).training)  # whole numbers for whole-number settings (64.0 failed every trial)
    assert training["batch_size"] == Fixed(64) and type(training["batch_size"].value) is int
    assert training["epochs"] == Choice((2, 3)) and all(type(v) is int for v in training["epochs"].options)


def test_scientific_notation_read_as_a_string_is_accepted(tmp_path):
    text = "families:\n  sparse:\n    l1: {float: [1e-7, 1e-4], log: true}\n"
    assert yaml.safe_load(text)["families"]["sparse"]["l1"]["float"] == ["1e-7", "1e-4"]  # PyYAML 1.1
    path = tmp_path / "sci.yaml"
    path.write_text(text)
    space = load_space(str(path))
    domain = dict(space.families[0].params)["l1"]
    assert domain == FloatRange(1e-7, 1e-4, log=True)
    assert isinstance(domain.low, float) and isinstance(domain.high, float)


# --- for_kind and digest ---------------------------------------------------------------------


def test_for_kind_keeps_every_family_that_takes_the_kind():
    space = load_space("default")
    kept, notes = space.for_kind("tabular")
    assert kept.family_names == space.family_names
    assert notes == []
    for kind in ("image", "sequence"):
        assert space.for_kind(kind)[0].family_names == space.family_names


def test_series_given_as_rows_lose_the_sequence_families_with_a_hint_to_reshape():
    kept, notes = load_space("series").for_kind("tabular")
    assert "conv1d" not in kept.family_names
    assert notes == ["family 'conv1d' dropped, with its start points 0, 1: it does not take tabular data "
                     "(time series: give X as an (n, T, F) "
                     "array, from Python or a .npz file; X[:, :, None] for one channel)"]


def test_for_kind_with_no_fitting_family_raises():
    space = load_space("default")
    with pytest.raises(SpaceError) as info:
        space.for_kind("graph")
    message = str(info.value)
    assert "no family fits" in message and "graph" in message
    assert space.source in message


def test_digest_tracks_the_document():
    doc = {"code_size": {"int": [2, 8]}, **fam({"dropout": 0.1})}
    a = parse_space(copy.deepcopy(doc), "a.yaml")
    b = parse_space(copy.deepcopy(doc), "b.yaml")
    assert a.digest == b.digest
    assert len(a.digest) == 64
    changed = copy.deepcopy(doc)
    changed["families"]["dense"]["dropout"] = 0.2
    assert parse_space(changed, "a.yaml").digest != a.digest
    changed = copy.deepcopy(doc)
    changed["code_size"]["int"] = [2, 9]
    assert parse_space(changed, "a.yaml").digest != a.digest
    assert load_space("default").digest == load_space("default").digest


def test_every_shipped_space_loads():
    from search.space import builtin_spaces

    names = set(builtin_spaces())
    assert {"default", "image", "image-gpu", "sequence", "article"} <= names
    assert load_space("image-gpu").data_kinds == ("image",)
    for name in names:
        assert load_space(name).families
        quick = load_space(name, 0.25)  # start points shrink with the space (they would fall outside it)
        assert len(quick.start) == len(load_space(name).start)


def test_scale_shrinks_start_points_with_their_domains():
    full, quick = load_space("series").start_points()[0], load_space("series", 0.25).start_points()[0]
    assert (full["conv1d.layer_0.filters"], quick["conv1d.layer_0.filters"]) == (32, 8)
    assert (full["training.epochs"], quick["training.epochs"]) == (40, 10)
    assert quick["code_size"] == full["code_size"] and quick["conv1d.layer_0.kernel_size"] == 3


def test_article_space_has_the_six_families_at_one_code_size():
    space = load_space("article")
    assert set(space.family_names) == {"dense", "denoising", "vae", "conv1d", "conv2d", "seq2seq"}
    assert space.code_size.value == 64


def test_scale_shrinks_epochs_units_and_filters_and_changes_the_digest():
    full, quick = load_space("article"), load_space("article", scale=0.25)
    assert dict(quick.training)["epochs"].value == 10
    conv = next(f for f in quick.families if f.name == "conv2d")
    assert dict(conv.layer_params)["filters"].value == 8
    dense = next(f for f in load_space("default", scale=0.1).families if f.name == "dense")
    units = dict(dense.layer_params)["units"]
    assert (units.low, units.high) == (3, 51)
    assert quick.digest != full.digest
    with pytest.raises(SpaceError, match=r"scale: must be in \(0, 1\]"):
        load_space("article", scale=2)


def test_start_points_are_kept_in_order_and_follow_the_families_of_a_data_kind():
    document = {**copy.deepcopy(TWO), "families": {**TWO["families"], "conv2d": {"stack": {"depth": 1}}},
                "start": [{"family": "conv2d", "code_size": 16}, {"family": "sparse", "sparse.l1": 1e-5},
                          {"code_size": 8}]}
    space = parse_space(document, "x.yaml")
    assert space.start_points() == [{"family": "conv2d", "code_size": 16}, {"family": "sparse", "sparse.l1": 1e-5},
                                    {"code_size": 8}]
    tabular, notes = space.for_kind("tabular")  # conv2d dropped, and its start point with it
    assert tabular.start_points() == [{"family": "sparse", "sparse.l1": 1e-5}, {"code_size": 8}]
    assert notes[0].startswith("family 'conv2d' dropped, with its start point 0: it does not take tabular data")
    only_conv, _ = parse_space({**document, "families": {"conv2d": {"stack": {"depth": 1}}},
                                "start": []}, "x.yaml").for_kind("image")
    assert only_conv.start == ()
    one_left, _ = replace_families(space, ("conv2d",)).for_kind("image")
    assert one_left.start_points() == [{"code_size": 16}, {"code_size": 8}]  # `family` is no parameter now


def test_an_inherited_key_names_the_family_that_wrote_it():
    document = {"families": {"dense": {}, "sparse": {"extends": "dense", "l1": 1e-5},
                             "vae": {"extends": "sparse", "dropout": 0.1}}}
    with pytest.raises(SpaceError, match=r"^x.yaml: families.vae.l1: unknown key .*\(inherited from 'sparse' through "
                                         r"extends\)$"):
        parse_space(document, "x.yaml")
    document["families"]["vae"]["l1"] = None  # a key of the child's own is not called inherited
    with pytest.raises(SpaceError, match=r"families.vae.l1: unknown key \(allowed: [^)]*\)$"):
        parse_space(document, "x.yaml")


def test_start_point_values_are_read_as_the_space_reads_its_own():
    """`1e-3` (a string to YAML 1.1), `4.0` for a whole number and `0.0` for the option 0 were
    refused in a start point, though the same values are taken anywhere else in the file; they
    are stored as the domain holds them."""
    document = {**copy.deepcopy(TWO), "training": {"learning_rate": {"float": [1.0e-3, 1.0e-2], "log": True}},
                "families": {**TWO["families"], "dense": {**TWO["families"]["dense"], "dropout": {"choice": [0, 0.1]}}},
                "start": [{"family": "dense", "code_size": 4.0, "training.learning_rate": "1e-3",
                           "dense.dropout": 0.0}]}
    point = parse_space(document, "x.yaml").start_points()[0]
    assert point == {"family": "dense", "code_size": 4, "training.learning_rate": 0.001, "dense.dropout": 0}
    assert type(point["code_size"]) is int and type(point["dense.dropout"]) is int
    document["start"] = [{"family": "dense", "dense.dropout": True}]  # True == 1, but no option of a number choice
    with pytest.raises(SpaceError, match="True is outside the space's choice"):
        parse_space(document, "x.yaml")


def test_scale_shrinks_a_steps_range_onto_its_own_grid():
    """The step shrinks with its bounds (10..50 by 20 at 0.5: 5..25 by 10); a start point lands on
    the new grid (it was 15 against 5..25 by 20: refused as 'outside' a range that holds it)."""
    document = {"families": {"dense": {"stack": {"depth": 1, "units": {"int": [10, 50], "step": 20}}}},
                "start": [{"dense.layer_0.units": 30}]}
    for scale, grid, start in ((0.5, (5, 25, 10), 15), (0.3, (3, 15, 6), 9), (0.1, (1, 5, 2), 3)):
        space = parse_space(copy.deepcopy(document), "x.yaml", scale)
        units = dict(space.families[0].layer_params)["units"]
        assert (units.low, units.high, units.step) == grid
        assert space.start_points() == [{"dense.layer_0.units": start}]


def test_yaml_merge_keys_are_read_and_may_be_overridden(tmp_path):
    path = tmp_path / "merge.yaml"
    path.write_text("families:\n  dense: &base\n    dropout: 0.1\n    stack: {depth: 1, units: 8}\n"
                    "  denoising:\n    <<: *base\n    dropout: 0.2\n    noise: 0.3\n")
    denoising = load_space(str(path)).families[1]
    assert dict(denoising.params)["dropout"] == Fixed(0.2) and dict(denoising.layer_params)["units"] == Fixed(8)
    path.write_text("families:\n  dense: {dropout: 0.1}\n  denoising: {dropout: 0.1, noise: 0.3, dropout: 0.2}\n")
    with pytest.raises(SpaceError, match="key 'dropout' given twice"):  # a repeated own key is still refused
        load_space(str(path))


def test_a_space_file_that_cannot_be_read_or_is_a_pipe_is_named(tmp_path, monkeypatch):
    import os
    from pathlib import Path

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(SpaceError, match=r"fifo: not a regular file \(a pipe or a device\)"):
        load_space(str(fifo))
    path = tmp_path / "locked.yaml"
    path.write_text("families: {dense: {}}\n")

    def refuse(self, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_text", refuse)  # (root reads a mode-000 file anyway)
    with pytest.raises(SpaceError, match=r"locked.yaml: cannot be read \(Permission denied\)$"):
        load_space(str(path))


def test_a_start_point_may_name_the_one_family_of_its_space():
    """The README's example names its family; in a space of one family it is not searched, so
    the point's `family` is checked against it and dropped, not refused as an unknown key."""
    document = {"code_size": {"int": [4, 64]}, "families": {"dense": {"stack": {"depth": {"int": [0, 1]}}}},
                "start": [{"family": "dense", "code_size": 20}]}
    assert parse_space(document, "x.yaml").start_points() == [{"code_size": 20}]


def replace_families(space, names):
    from dataclasses import replace

    return replace(space, families=tuple(f for f in space.families if f.name in names))


def test_a_start_point_seeds_an_optuna_trial_through_the_same_sampling_code():
    space = parse_space({**copy.deepcopy(TWO), "start": [{"family": "sparse", "code_size": 5}]}, "x.yaml")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for point in space.start_points():
        study.enqueue_trial(point)
    trial = study.ask()
    candidate = sample(space, OptunaSuggest(trial))
    assert candidate["family"] == "sparse" and candidate["code_size"] == 5


def test_a_step_wider_than_its_range_and_a_space_not_in_utf8_are_refused_in_one_line(tmp_path):
    path = tmp_path / "wide-step.yaml"
    path.write_text("code_size: {int: [16, 20], step: 100}\nfamilies: {dense: {}}\n")
    with pytest.raises(SpaceError, match=r"code_size.step: 100 is wider than the range 16..20, so only 16 could be drawn"):
        load_space(str(path))
    path.write_text("training: {learning_rate: {float: [0.4, 0.5], step: 0.1}}\nfamilies: {dense: {}}\n")
    assert dict(load_space(str(path)).training)["learning_rate"] == FloatRange(0.4, 0.5, False, 0.1)  # 0.5 - 0.4 < 0.1
    path.write_text("code_size: {int: [16, 20], step: 4}\nfamilies: {dense: {}}\n")
    assert load_space(str(path)).code_size == IntRange(16, 20, False, 4)
    latin = tmp_path / "latin1.yaml"
    latin.write_bytes("training: {epochs: 3}\n# café\nfamilies: {dense: {}}\n".encode("latin-1"))
    with pytest.raises(SpaceError, match=r"latin1.yaml: not UTF-8 text \(byte 0xe9 in line 2\); save it as UTF-8$"):
        load_space(str(latin))


def test_a_stored_studys_space_is_read_as_it_was_when_the_study_began():
    """The checks added since (a step that divides its range, start points that name their
    family or sit on a float step's grid, blocks of the right type) would refuse a study that
    ran, and its stored copy cannot be edited (its digest): a study's space is read without them."""
    document = {"families": {"dense": {"stack": {"depth": 1, "units": {"int": [32, 500], "step": 32}},
                                       "dropout": {"float": [0.0, 0.5], "step": 0.1}},
                             "sparse": {}},
                "start": [{"dense.dropout": 0.15}], "training": 0}
    with pytest.raises(SpaceError):
        parse_space(copy.deepcopy(document), "x.yaml")
    space = parse_space(copy.deepcopy(document), "x.yaml", strict=False)
    assert dict(space.families[0].layer_params)["units"] == IntRange(32, 500, False, 32)
    # --scale kept the step where it was then (the shrunk grid would not hold the stored values)
    units = dict(parse_space(copy.deepcopy(document), "x.yaml", 0.5, strict=False).families[0].layer_params)["units"]
    assert (units.low, units.high, units.step) == (16, 250, 32)


def test_scale_checks_start_points_as_written_and_shrinks_whole_numbers_in_any_form():
    document = {"code_size": {"int": [8, 64], "step": 8}, "training": {"epochs": {"int": [10, 40]}},
                "families": {"dense": {"stack": {"depth": {"int": [1, 2]}, "units": {"int": [8, 64]}}}}}
    for point, message in (({"code_size": 100}, "start[0].code_size: 100 is outside the space's int[8, 64] step 8"),
                           ({"code_size": 17}, "start[0].code_size: 17 is outside"),
                           ({"dense.depth": 5}, "start[0].dense.depth: 5 is outside the space's int[1, 2]")):
        with pytest.raises(SpaceError, match=re.escape(message)):  # (snapped into the shrunk range before)
            parse_space({**copy.deepcopy(document), "start": [point]}, "x.yaml", 0.5)
    for written in (20, 20.0, "2e1"):
        space = parse_space({**copy.deepcopy(document), "start": [{"training.epochs": written}]}, "x.yaml", 0.5)
        assert space.start_points() == [{"training.epochs": 10}], written


def test_an_inherited_stack_key_names_the_family_that_wrote_it_through_a_chain():
    """conv2d extends sparse, whose stack (its own depth) extends dense's (units, which conv2d's
    layers do not take): the unknown key was dense's, not sparse's."""
    document = {"families": {"dense": {"stack": {"depth": 1, "units": 8}},
                             "sparse": {"extends": "dense", "stack": {"depth": 2}},
                             "conv2d": {"extends": "sparse"}}}
    with pytest.raises(SpaceError, match=r"families.conv2d.stack.units: unknown key .*\(inherited from 'dense' "):
        parse_space(document, "x.yaml")
    document["families"]["conv2d"] = {"extends": "sparse", "stack": {"depth": 1}}  # its own stack: the same
    with pytest.raises(SpaceError, match=r"families.conv2d.stack.units: unknown key .*\(inherited from 'dense' "):
        parse_space(document, "x.yaml")


def test_a_space_written_in_python_is_stored_as_yaml_that_reads_back_to_the_same_space(tmp_path):
    from search.space import read_space, space_text

    document = read_space("default")
    document["training"]["epochs"] = {"int": (np.int64(2), 5)}  # NumPy numbers and tuples, as notebooks write them
    document["probe"]["cv"] = np.int32(3)
    document["families"]["dense"]["dropout"] = {"float": [np.float32(0.0), 0.25]}
    given = copy.deepcopy(document)
    space = load_space(document)
    assert document == given  # the user's dict is left as it was
    assert space.source == "space" and space.probe_setting("cv") == 3 and type(space.probe_setting("cv")) is int
    stored = tmp_path / "space.yaml"
    stored.write_text(space_text(document))
    assert load_space(str(stored), strict=False).digest == space.digest  # resume reads the copy as the same space
    assert space.digest == load_space(yaml.safe_load(stored.read_text())).digest
    assert load_space("default").digest == load_space(read_space("default")).digest

    document["families"]["dense"]["dropout"] = {"float": [0.0, 1j]}
    with pytest.raises(SpaceError, match=r"^space: families\.dense\.dropout\.float\[1\]: 1j is not a value a space "):
        load_space(document)
    document["families"]["dense"]["dropout"] = {"float": [0.5, 0.1]}
    with pytest.raises(SpaceError, match=r"^space: families\.dense\.dropout"):  # named as a file's errors are
        load_space(document)
    with pytest.raises(SpaceError, match=r"^space: expected a shipped space's name, a YAML file path or a dict"):
        load_space(["default"])


def test_a_python_space_of_numpy_names_and_enums_is_stored_as_plain_yaml_and_other_keys_are_refused(tmp_path):
    """Names iterated from a NumPy array or pandas Index are np.str_, which YAML's safe dumper
    refused with its own error after the space had loaded; so were enum members."""
    import enum

    from search.space import read_space, space_text

    class Cv(enum.IntEnum):
        THREE = 3

    document = read_space("default")
    document["families"] = dict(zip(np.array(list(document["families"])), document["families"].values()))
    document["probe"]["cv"] = Cv.THREE
    space = load_space(document)
    assert type(space.family_names[0]) is str and space.probe_setting("cv") == 3
    stored = tmp_path / "space.yaml"
    stored.write_text(space_text(document))
    assert load_space(str(stored), strict=False).digest == space.digest
    with pytest.raises(SpaceError, match=r"^space: families\.dense: key 1 is not a string$"):
        load_space({**document, "families": {"dense": {1: 2}}})
    mixed = tmp_path / "mixed.yaml"  # a file's unchecked block with keys that do not sort: was a bare TypeError
    mixed.write_text("families: {dense: {}}\ndescription: {1: x, a: 2}\n")
    with pytest.raises(SpaceError, match=r"mixed\.yaml: keys that are not all strings"):
        load_space(str(mixed))


def test_read_space_gives_a_copy_that_edits_one_place_only(tmp_path):
    shared = tmp_path / "anchors.yaml"  # YAML anchors share one object between families
    shared.write_text("stack: &stack {depth: 1, units: 8}\nfamilies:\n  dense: {stack: *stack}\n"
                      "  sparse: {stack: *stack}\n")
    from search.space import read_space

    document = read_space(str(shared))
    document["families"]["dense"]["stack"]["units"] = 16
    assert document["families"]["sparse"]["stack"]["units"] == 8
