"""The small suggest interface a space samples through, and its adapters.

`sample(space, suggest)` walks the space define-by-run; each adapter maps the three calls to a
tuner: an Optuna trial, a keras-tuner `HyperParameters`, or a fixed dict of stored values
(replay and export, like Optuna's `FixedTrial`), so a replayed trial builds exactly the model
that was scored."""

from __future__ import annotations

import contextlib
import re
import warnings
from typing import Any, Protocol

from search.errors import StudyError


class Suggest(Protocol):
    def int(self, name: str, low: int, high: int, *, log: bool = False, step: int = 1) -> int: ...

    def float(self, name: str, low: float, high: float, *, log: bool = False, step: float | None = None) -> float: ...

    def choice(self, name: str, options: tuple) -> Any: ...


class OptunaSuggest:
    def __init__(self, trial):
        self.trial = trial

    def int(self, name, low, high, *, log=False, step=1):
        return self.trial.suggest_int(name, low, high, log=log, step=step)

    def float(self, name, low, high, *, log=False, step=None):
        return self.trial.suggest_float(name, low, high, log=log, step=step)

    def choice(self, name, options):
        return self.trial.suggest_categorical(name, list(options))


class FixedSuggest:
    """Answers every call from a dict of stored parameter values. A value outside the space's
    domain (a study replayed on an edited space) is used as given, with a warning, as Optuna's
    `FixedTrial` does."""

    def __init__(self, params: dict):
        self.params = dict(params)

    def _get(self, name, inside: bool | None = None, domain: str = ""):
        if name not in self.params:
            raise StudyError(f"stored trial has no value for parameter {name!r}")
        value = self.params[name]
        if inside is not None and not inside(value):
            warnings.warn(f"parameter {name}={value!r} is outside the space's {domain}; used as given", stacklevel=3)
        return value

    def int(self, name, low, high, *, log=False, step=1):
        return int(self._get(name, lambda v: low <= v <= high, f"int[{low}, {high}]"))

    def float(self, name, low, high, *, log=False, step=None):
        return float(self._get(name, lambda v: low <= v <= high, f"float[{low:g}, {high:g}]"))

    def choice(self, name, options):
        return self._get(name, lambda v: v in options, f"choice{list(options)}")


class RecordingSuggest:
    """Wraps another adapter and records each parameter asked for: its value and its Optuna
    distribution, so a trial run by Ray or keras-tuner is stored in the study's Optuna
    storage exactly like a native one."""

    def __init__(self, inner):
        self.inner = inner
        self.distributions = {}
        self.values = {}

    def _keep(self, name, distribution, value):
        self.distributions[name], self.values[name] = distribution, value
        return value

    def int(self, name, low, high, *, log=False, step=1):
        from optuna.distributions import IntDistribution

        return self._keep(name, IntDistribution(low, high, log=log, step=step),
                          self.inner.int(name, low, high, log=log, step=step))

    def float(self, name, low, high, *, log=False, step=None):
        from optuna.distributions import FloatDistribution

        return self._keep(name, FloatDistribution(low, high, log=log, step=step),
                          self.inner.float(name, low, high, log=log, step=step))

    def choice(self, name, options):
        from optuna.distributions import CategoricalDistribution

        return self._keep(name, CategoricalDistribution(list(options)), self.inner.choice(name, options))


class KerasTunerSuggest:
    """The suggest interface over a keras-tuner `HyperParameters`. keras-tuner samples up
    front, so it must be told which parameters exist only under others; that structure is read
    from the parameter names, which carry their parents (`F.*` exists only when `family` is F,
    `F.layer_i.*` only when `F.depth` > i)."""

    LAYER = re.compile(r"^(?P<family>[^.]+)\.layer_(?P<index>\d+)\.")

    def __init__(self, hp):
        self.hp = hp
        self.families: tuple = ()
        self.depths: dict[str, list] = {}  # "F.depth" -> the depths it may take

    @classmethod
    def declare(cls, hp, space):
        """Every hyperparameter of the space in `hp`, each family's branch at its deepest
        stack, so that oracles that sample up front (Hyperband, Bayesian) know the whole space
        from trial one."""
        for family in space.families:
            if len(space.families) > 1:
                hp.values["family"] = family.name
            if family.depth is not None:
                hp.values[f"{family.name}.depth"] = max(depth_values(family.depth))
            sample(space, cls(hp))
        return hp

    def int(self, name, low, high, *, log=False, step=1):
        if name.endswith(".depth"):
            self.depths[name] = list(range(low, high + 1, step))
        with self._scopes(name):
            if log:  # keras-tuner's step is a factor under log sampling; ours is additive
                return int(self.hp.Int(name, low, high, sampling="log"))
            return int(self.hp.Int(name, low, high, step=step))

    def float(self, name, low, high, *, log=False, step=None):
        with self._scopes(name):
            return float(self.hp.Float(name, low, high, step=step, sampling="log" if log else "linear"))

    def choice(self, name, options):
        options = list(options)
        if name == "family":
            self.families = tuple(options)
        elif name.endswith(".depth"):
            self.depths[name] = options
        with self._scopes(name):
            if len({type(o) for o in options}) == 1 and isinstance(options[0], (bool, int, float, str)):
                value = self.hp.Choice(name, options)  # keeps booleans as ints (bool is an int to its check)
                return bool(value) if isinstance(options[0], bool) else value
            labels = [repr(o) for o in options]  # keras-tuner wants one scalar type per choice
            return options[labels.index(self.hp.Choice(name, labels))]

    @contextlib.contextmanager
    def _scopes(self, name):
        """keras-tuner's conditional scopes for `name`, from its parents in the name. A parent
        that is fixed (never declared) is nothing to be conditional on."""
        family = name.split(".", 1)[0]
        with contextlib.ExitStack() as scopes:
            if family in self.families and "family" in self.hp.values:
                scopes.enter_context(self.hp.conditional_scope("family", [family]))
            layer = self.LAYER.match(name)
            depth = layer and f"{family}.depth"
            if depth in self.depths and depth in self.hp.values:
                deeper = [d for d in self.depths[depth] if d > int(layer["index"])]
                scopes.enter_context(self.hp.conditional_scope(depth, deeper))
            yield


def sample(space, suggest: Suggest) -> dict:
    """One candidate: the family, its parameters and the training settings, as plain values."""
    if len(space.families) == 1:
        family = space.families[0]
    else:
        name = suggest.choice("family", space.family_names)
        family = next(f for f in space.families if f.name == name)
    # Parameter names carry their parents (`F.*`, `F.layer_i.*`): an adapter that must declare
    # the structure (keras-tuner's conditional scopes) reads it from them.
    params = {key: domain.sample(suggest, f"{family.name}.{key}") for key, domain in family.params}
    if family.depth is not None:
        depth = family.depth.sample(suggest, f"{family.name}.depth")
        params["layers"] = [_layer(suggest, family, i) for i in range(depth)]
    return {
        "family": family.name,
        "code_size": space.code_size.sample(suggest, "code_size"),
        "include_input": space.include_input.sample(suggest, "include_input"),
        "scaling": space.scaling.sample(suggest, "scaling"),
        "training": {key: domain.sample(suggest, f"training.{key}") for key, domain in space.training},
        "family_params": params,
    }


def _layer(suggest, family, index) -> dict:
    return {key: domain.sample(suggest, f"{family.name}.layer_{index}.{key}") for key, domain in family.layer_params}


def depth_values(domain) -> tuple:
    values = domain.values()
    if values is None:  # an int range
        values = range(domain.low, domain.high + 1, domain.step)
    return tuple(values)


def candidate_as_run(candidate: dict, trial_attrs: dict) -> dict:
    """The config a trial's score belongs to. A trial out of memory ran again at half its
    batch size (`retried_batch_size`): its export, its replay and the leaderboard use that
    one, or they would show and refit a model other than the one scored."""
    retried = trial_attrs.get("retried_batch_size")
    if not retried or not candidate:
        return candidate
    return {**candidate, "training": {**candidate["training"], "batch_size": int(retried)}}


def params_as_run(params: dict, trial_attrs: dict) -> dict:
    """A trial's sampled values with the batch size it ran at (`candidate_as_run`), so that
    `best_params_` and `cv_results_` name the model that was scored."""
    retried = trial_attrs.get("retried_batch_size")
    if not retried or BATCH_SIZE_PARAM not in params:
        return dict(params)
    return {**params, BATCH_SIZE_PARAM: int(retried)}


BATCH_SIZE_PARAM = "training.batch_size"  # the batch size's name among a trial's sampled values (`sample`)


def transformer_params(candidate: dict, seed: int, input_shape=None) -> dict:
    """Keyword arguments of `AutoencoderTransformer` for a sampled candidate on data whose
    samples have `input_shape`."""
    return {
        # Rows (tabular) as None, which fits rows of any width: a clone of the export refits on
        # another table (its (F,) refused one without set_params(input_shape=None)).
        "input_shape": None if input_shape is None or len(input_shape) < 2 else tuple(input_shape),
        "family": candidate["family"],
        "code_size": candidate["code_size"],
        "family_params": candidate["family_params"],
        "include_input": candidate["include_input"],
        "scaling": candidate["scaling"],
        **candidate["training"],
        "random_state": seed,
    }
