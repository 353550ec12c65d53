"""Registry of autoencoder families.

Each family is described here by plain metadata (no TensorFlow import), so the search space
validator and the CLI can check names and parameters cheaply. The builder module is imported
only when a model is actually built.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from numbers import Integral, Real

# scikit-learn's constraint types, the grammar of its `_parameter_constraints` (no public module
# offers them; they are what scikit-learn's own estimators declare).
from sklearn.utils._param_validation import Interval, StrOptions, make_constraint

ACTIVATIONS = ("relu", "elu", "selu", "softplus", "sigmoid", "tanh", "linear")
OPTIMIZERS = ("adam", "rmsprop", "sgd")
NOISE_TYPES = ("gaussian", "masking")
CELLS = ("lstm", "gru", "simple_rnn")
# How a convolutional encoder turns its last feature map into the code's input: all of it
# (position by position), or its maximum or mean over positions (a shift-invariant summary, as
# MiniRocket's pooled convolutions; what tells series classes apart often moves in time).
CODE_POOLINGS = ("flatten", "global_max", "global_average")

# Parameters every layer of a dense stack takes, and their defaults.
DENSE_LAYER_PARAMS = {"units": 64, "activation": "relu"}
DENSE_PARAMS = {
    "layers": [dict(DENSE_LAYER_PARAMS)],
    "batch_norm": False,
    "dropout": 0.0,
    "l2": 0.0,
    "code_activation": "linear",
}


def _at_least(low, kind=Integral):
    return Interval(kind, low, None, closed="left")


# What each family and layer parameter may take, declared once for every family that has it
# (`FamilySpec.constraints`); `resolve` checks a model's values, the space parser a space's.
PARAMETER_CONSTRAINTS = {
    "batch_norm": ["boolean"],
    "dropout": [Interval(Real, 0, 0.99, closed="both")],
    "l1": [_at_least(0, Real)],
    "l2": [_at_least(0, Real)],
    "noise": [_at_least(0, Real)],
    "beta": [Interval(Real, 0, None, closed="neither")],
    "code_activation": [StrOptions(set(ACTIVATIONS))],
    "noise_type": [StrOptions(set(NOISE_TYPES))],
    "cell": [StrOptions(set(CELLS))],
    "units": [_at_least(1)],
    "filters": [_at_least(1)],
    "kernel_size": [_at_least(1)],
    "activation": [StrOptions(set(ACTIVATIONS))],
    "pool": ["boolean"],
    "dilation": [_at_least(1)],
    "code_pooling": [StrOptions(set(CODE_POOLINGS))],
}


def violation(value, constraints) -> str | None:
    """None when `value` satisfies one of `constraints` (scikit-learn's grammar), else what it
    must be. Booleans are not numbers here, though Python counts them as ints."""
    made = [make_constraint(c) for c in constraints]
    numeric = isinstance(value, bool) and "boolean" not in constraints
    if not numeric and any(c.is_satisfied_by(value) for c in made):
        return None
    return " or ".join(str(c) for c in made)


@dataclass(frozen=True)
class FamilySpec:
    """What the search and the transformer need to know about one family."""

    name: str
    module: str  # module under encoderkit.families holding `build`
    data_kinds: tuple[str, ...]
    params: dict  # parameter name -> default (the "layers" entry is the stack)
    layer_params: dict  # per-layer parameter name -> default

    def builder(self):
        """`build(family, params, input_shape, code_size, seed, output_activation)` ->
        (autoencoder, encoder), the encoder sharing the autoencoder's layers."""
        build = importlib.import_module(f"encoderkit.families.{self.module}").build

        def build_with_keras_initializers(*args, **kwargs):
            from encoderkit.families.initializers import name_keras_initializers

            autoencoder, encoder = build(*args, **kwargs)
            name_keras_initializers(autoencoder)
            return autoencoder, encoder

        return build_with_keras_initializers

    def resolve(self, params: dict | None) -> dict:
        """Defaults filled in; unknown names rejected with the family named."""
        params = dict(params or {})
        unknown = sorted(set(params) - set(self.params))
        if unknown:
            raise ValueError(
                f"family {self.name!r} has no parameter {unknown[0]!r} "
                f"(known: {', '.join(sorted(self.params))})"
            )
        resolved = {**self.params, **params}
        resolved["layers"] = [{**self.layer_params, **layer} for layer in resolved["layers"]]
        for where, values, constraints in (("", resolved, self.constraints), *(
                (f"layers[{i}].", layer, self.layer_constraints) for i, layer in enumerate(resolved["layers"]))):
            for name, value in values.items():
                wrong = name in constraints and violation(value, constraints[name])
                if wrong:
                    raise ValueError(f"family {self.name!r}: {where}{name}={value!r} must be {wrong}")
        return resolved

    @property
    def constraints(self) -> dict:
        """Parameter -> what it may take (scikit-learn's constraint grammar)."""
        return {k: PARAMETER_CONSTRAINTS[k] for k in self.params if k in PARAMETER_CONSTRAINTS}

    @property
    def layer_constraints(self) -> dict:
        return {k: PARAMETER_CONSTRAINTS[k] for k in self.layer_params}


CONV_LAYER_PARAMS = {"filters": 16, "kernel_size": 3, "activation": "relu", "pool": True, "dilation": 1}
RECURRENT_LAYER_PARAMS = {"units": 32, "activation": "tanh"}
STRUCTURED_PARAMS = {k: v for k, v in DENSE_PARAMS.items() if k != "layers"}
CONV_PARAMS = {**STRUCTURED_PARAMS, "code_pooling": "flatten", "layers": [dict(CONV_LAYER_PARAMS)]}

_ALL_KINDS = ("tabular", "image", "sequence")  # dense families flatten whatever they get
_ORDERED = ("image", "sequence")  # images are read row by row as sequences

FAMILIES: dict[str, FamilySpec] = {
    spec.name: spec
    for spec in (
        FamilySpec("dense", "dense", _ALL_KINDS, DENSE_PARAMS, DENSE_LAYER_PARAMS),
        FamilySpec(
            "denoising",
            "dense",
            _ALL_KINDS,
            {**DENSE_PARAMS, "noise": 0.2, "noise_type": "gaussian"},
            DENSE_LAYER_PARAMS,
        ),
        FamilySpec("sparse", "dense", _ALL_KINDS, {**DENSE_PARAMS, "l1": 1e-4}, DENSE_LAYER_PARAMS),
        FamilySpec(
            "vae", "variational", _ALL_KINDS, {**DENSE_PARAMS, "beta": 1.0}, DENSE_LAYER_PARAMS
        ),
        FamilySpec("conv1d", "conv", _ORDERED, CONV_PARAMS, CONV_LAYER_PARAMS),
        FamilySpec("conv2d", "conv", ("image", "sequence"), CONV_PARAMS, CONV_LAYER_PARAMS),
        FamilySpec(
            "seq2seq",
            "recurrent",
            _ORDERED,
            {**STRUCTURED_PARAMS, "layers": [dict(RECURRENT_LAYER_PARAMS)], "cell": "lstm"},
            RECURRENT_LAYER_PARAMS,
        ),
    )
}



def get_family(name: str) -> FamilySpec:
    try:
        return FAMILIES[name]
    except KeyError:
        raise ValueError(
            f"unknown family {name!r} (known: {', '.join(sorted(FAMILIES))})"
        ) from None
