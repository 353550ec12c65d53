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
