"""Search spaces: YAML files loaded and validated into an immutable `Space`.

Format (see spaces/default.yaml): a scalar is a fixed value; `{int: [lo, hi]}`,
`{float: [lo, hi]}` (both with optional `log: true` or `step`) and `{choice: [...]}` are
searched. `families` maps a family name to its parameters; `stack` samples a depth and then
per-layer parameters (`dense.layer_0.units`, ...); `extends` copies another family's block.
`start` lists configurations to try first (Optuna's `enqueue_trial`, Ray's
`points_to_evaluate`): each maps parameter names to values, parameters left out are sampled.
Every error names the file, the key path and the bad value.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from importlib import resources
from numbers import Integral, Real
from pathlib import Path

from sklearn.utils._param_validation import Interval, StrOptions  # scikit-learn's constraint grammar

from encoderkit.data import KINDS
from encoderkit.families import FAMILIES, violation
from encoderkit.probe import METRICS, PROBES
from encoderkit.transformer import AutoencoderTransformer

from search.domains import SCALARS, Choice, Fixed, FloatRange, IntRange
from search.errors import SpaceError

IN_PYTHON = "space"  # how errors name a space given as a dict: the parameter it came in
TOP_KEYS = (
    "name", "description", "data_kinds", "code_size", "include_input", "scaling", "training", "families", "probe", "start",
)
TRAINING_DEFAULTS = {"epochs": 30, "batch_size": 64, "learning_rate": 1e-3, "optimizer": "adam", "patience": 5}
PROBE_DEFAULTS = {"model": "auto", "metric": "auto", "cv": 5}
SCALED = ("epochs", "units", "filters")  # what `--scale` shrinks for quick runs
# What a value may take is declared by its owner, in scikit-learn's constraint grammar:
# `AutoencoderTransformer._parameter_constraints` for the model's settings, each family for
# its own and its layers' parameters; the stack's depth belongs to the space's grammar.
TRANSFORMER_CONSTRAINTS = AutoencoderTransformer._parameter_constraints
STACK_DEPTH = [Interval(Integral, 0, 16, closed="both")]


def _parameter(key) -> str:
    """A stored parameter's own name: `conv1d.layer_0.filters` -> `filters`."""
    return str(key).rsplit(".", 1)[-1]


@dataclass(frozen=True)
class FamilySpace:
    name: str
    params: tuple  # ((name, domain), ...) excluding the stack
    depth: object | None  # domain of the stack depth, None when the family has no stack
    layer_params: tuple  # ((name, domain), ...) per stacked layer


@dataclass(frozen=True)
class Space:
    name: str
    source: str
    code_size: object
    include_input: object
    scaling: object
    training: tuple
    families: tuple  # FamilySpace, in file order
    probe: tuple  # ((key, value), ...)
    digest: str  # sha256 of the canonical parsed file: a changed space is refused on resume
    start: tuple = ()  # configurations tried first: (((parameter, value), ...), ...)
    data_kinds: tuple = ()  # the data this space is made for (empty: any)
    from_python: bool = False  # given as a dict (its source reads "space", the parameter it came in)

    @property
    def family_names(self):
        return tuple(f.name for f in self.families)

    def probe_setting(self, key):
        return dict(self.probe)[key]

    def start_points(self) -> list[dict]:
        return [dict(point) for point in self.start]

    def check_kind(self, kind: str):
        """A space that names its data kinds refuses others (where a study starts: a stored
        study keeps the space it was made with)."""
        if self.data_kinds and kind not in self.data_kinds:
            raise SpaceError(f"{self.source}: data_kinds: the space is for {', '.join(self.data_kinds)} data, "
                             f"not {kind} (choose a space for {kind} data, or add {kind} to data_kinds)")

    def for_kind(self, kind: str) -> tuple["Space", list[str]]:
        """The space restricted to families that accept `kind`, and a note per dropped one
        (start points of a dropped family go with it)."""
        keep = [f for f in self.families if kind in FAMILIES[f.name].data_kinds]
        notes = [f"family {f.name!r} dropped{_start_points_of(self, f.name)}: it does not take {kind} data"
                 f"{_as_sequences(f.name, kind)}" for f in self.families if f not in keep]
        if not keep:
            raise SpaceError(f"{self.source}: families: no family fits {kind} data ({', '.join(self.family_names)})"
                             f"{next(filter(None, (_as_sequences(f.name, kind) for f in self.families)), '')}")
        names = {f.name for f in keep}
        start = []
        for point in self.start_points():
            if point.get("family", keep[0].name) not in names:
                continue
            if len(keep) == 1:  # a single family is not a searched parameter
                point.pop("family", None)
            start.append(tuple(point.items()))
        return replace(self, families=tuple(keep), start=tuple(start)), notes


def _start_points_of(space: Space, family: str) -> str:
    """', with its start point 2': what a dropped family takes with it, for its note."""
    numbers = [str(i) for i, point in enumerate(space.start_points()) if point.get("family") == family]
    return f", with its start point{'s' if len(numbers) > 1 else ''} {', '.join(numbers)}" if numbers else ""


def builtin_spaces() -> dict[str, Path]:
    """Shipped spaces by name (installed as package data `search.spaces`, or the repo folder)."""
    try:
        folder = Path(str(resources.files("search.spaces")))
    except (ModuleNotFoundError, TypeError):
        folder = Path(__file__).resolve().parent.parent / "spaces"
    if not folder.is_dir():
        folder = Path(__file__).resolve().parent.parent / "spaces"
    return {p.stem: p for p in sorted(folder.glob("*.yaml"))}


def load_space(name_or_path, scale: float = 1.0, strict: bool = True) -> Space:
    """Loads a shipped space by name, a YAML file by path or a space written in Python (a
    dict in the YAML format, its errors named `space: KEY.PATH`), validated; `scale`
    multiplies epochs, units and filters (at least 1 each) for quick runs. `strict=False`
    reads a space a stored study began with as it was read then: the checks added since (see
    `_Parser`) would refuse a study that ran, whose stored copy cannot be edited (its digest)."""
    if isinstance(name_or_path, Mapping):
        return replace(parse_space(plain_document(name_or_path), IN_PYTHON, scale, strict), from_python=True)
    if not isinstance(name_or_path, (str, os.PathLike)):
        raise SpaceError(f"space: expected a shipped space's name, a YAML file path or a dict, got {name_or_path!r}")
    return parse_space(read_space(name_or_path), str(_space_path(name_or_path)), scale, strict)


def read_space(name_or_path) -> dict | None:
    """The document of a shipped space (by name) or a YAML space file, as a dict to edit and
    pass to `search.run(space=...)` (YAML comments are not kept; None for an empty file). Not
    validated here: the search validates what it is given."""
    import yaml

    path = _space_path(name_or_path)
    try:
        return _unshared(yaml.load(path.read_text(encoding="utf-8"), Loader=_unique_keys_loader()))
    except OSError as exc:  # e.g. no read permission
        raise SpaceError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SpaceError(f"{path}: invalid YAML{where}: {problem}") from None
    except UnicodeDecodeError as exc:
        line = exc.object[:exc.start].count(b"\n") + 1
        raise SpaceError(f"{path}: not UTF-8 text (byte {exc.object[exc.start]:#04x} in line {line}); "
                         "save it as UTF-8") from None


def _unshared(value):
    """A copy in which no two places hold one object: YAML anchors and merges share one, and
    editing it in one family edited it in all (copy.deepcopy keeps the sharing)."""
    if isinstance(value, dict):
        return {key: _unshared(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_unshared(item) for item in value]
    return value


def space_text(name_or_path) -> str:
    """What a study keeps as its space.yaml: a file's own text (its comments too), or a
    Python space written as YAML that reads back to the same document (the same digest)."""
    import yaml

    if isinstance(name_or_path, Mapping):
        return ("# The space this study was given in Python (search.run(space=...)), as YAML\n"
                + yaml.safe_dump(plain_document(name_or_path), sort_keys=False, allow_unicode=True,
                                 default_flow_style=None))
    return _space_path(name_or_path).read_text(encoding="utf-8")


def plain_document(value, path: str = ""):
    """A space written in Python as YAML's plain values: NumPy scalars and enum members as
    the numbers and strings they stand for, tuples as lists, keys as strings; anything a
    space cannot hold is refused by its key path."""
    import numpy as np

    if isinstance(value, Mapping):
        plain = {}
        for key, item in value.items():
            if not isinstance(key, str):  # np.str_ and StrEnum too; YAML would store 1 and '1' apart
                raise SpaceError(f"{IN_PYTHON}: {path or 'the space'}: key {key!r} is not a string")
            plain[str(key)] = plain_document(item, f"{path}.{key}" if path else str(key))
        return plain
    if isinstance(value, (list, tuple)):
        return [plain_document(item, f"{path}[{i}]") for i, item in enumerate(value)]
    if isinstance(value, np.generic):
        value = value.item()
    for kind in (bool, int, float, str):  # bool first: it is an int too
        if isinstance(value, kind):
            return kind(value)  # an IntEnum as its number: YAML's safe dumper takes plain types only
    if value is None:
        return value
    raise SpaceError(f"{IN_PYTHON}: {path}: {value!r} is not a value a space holds "
                     "(numbers, strings, booleans, lists and dicts)")


def _space_path(name_or_path) -> Path:
    """A shipped space's file, or the given file, checked to be one that can be read."""
    if not isinstance(name_or_path, (str, os.PathLike)):
        raise SpaceError(f"space: expected a shipped space's name or a YAML file path, got {name_or_path!r}")
    shipped = builtin_spaces()
    path = shipped.get(name_or_path, Path(name_or_path))
    try:
        path.stat()
    except FileNotFoundError:
        pass
    except OSError as exc:  # a folder on the way that cannot be entered, a name too long
        raise SpaceError(f"{name_or_path}: cannot be read ({exc.strerror or exc})") from None
    if path.is_dir():
        raise SpaceError(f"{name_or_path}: a folder, not a space file")
    if not path.exists():
        raise SpaceError(
            f"{name_or_path}: no such space file (shipped spaces: {', '.join(shipped) or 'none'})"
        )
    if not path.is_file():  # a study copies the file after reading it: a pipe would be empty the second time
        raise SpaceError(f"{name_or_path}: not a regular file (a pipe or a device); save the space to a file")
    return path


def _unique_keys_loader():
    """YAML's safe loader, refusing a key given twice in one mapping (PyYAML keeps the last
    one silently: `code_size: 16` then `code_size: 32` searched 32 only)."""
    import yaml

    class UniqueKeysLoader(yaml.SafeLoader):
        def construct_mapping(self, node, deep=False):
            seen = set()
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *base`: its keys may be overridden here
                    continue
                key = self.construct_object(key_node, deep=deep)
                if not isinstance(key, (str, int, float, bool)):
                    continue  # an unhashable key is the parser's to refuse
                if key in seen:
                    raise yaml.constructor.ConstructorError(None, None, f"key {key!r} given twice", key_node.start_mark)
                seen.add(key)
            return super().construct_mapping(node, deep)

    return UniqueKeysLoader


def parse_space(document, source: str = "<space>", scale: float = 1.0, strict: bool = True) -> Space:
    if isinstance(scale, bool) or not isinstance(scale, Real) or not 0 < scale <= 1:
        raise SpaceError(f"scale: must be in (0, 1], got {scale!r}")
    parser = _Parser(source, float(scale), strict)
    return parser.space(document)


class _Parser:
    """`strict`: the checks added on 2026-12-03 (a step that divides its range, start points on
    a float step's grid and naming their family, blocks of the right type, data kinds some
    family takes) and the step shrunk with --scale; off for a stored study's space."""

    def __init__(self, source, scale=1.0, strict=True):
        self.source = source
        self.scale = scale
        self.strict = strict
        self.inherited = {}  # key path in a family -> the family whose block wrote it (through extends)

    def fail(self, path, message):
        matches = [key for key in self.inherited if path == key or path.startswith(key + ".")]
        origin = self.inherited[max(matches, key=len)] if matches else None  # the most specific
        if origin is not None:  # the user wrote the key in another family's block
            message += f" (inherited from {origin!r} through extends)"
        raise SpaceError(f"{self.source}: {path}: {message}" if path else f"{self.source}: {message}")

    def digest(self, document) -> str:
        try:
            text = json.dumps(document if self.scale == 1 else {"document": document, "scale": self.scale},
                              sort_keys=True, default=str)
        except TypeError:  # keys of one mapping that do not sort: in `start` or `description`, unchecked
            self.fail("", "keys that are not all strings (e.g. a number beside names in a start point)")
        return hashlib.sha256(text.encode()).hexdigest()

    def mapping(self, value, path, allowed):
        if not isinstance(value, dict):
            shown = repr(value) if len(repr(value)) <= 80 else repr(value)[:77] + "..."  # not a whole CSV file
            self.fail(path, f"expected a mapping{'' if path else ' of keys (families, training, ...)'}, "
                            f"got {type(value).__name__} {shown}")
        for key in value:
            if key not in allowed:
                hint = difflib.get_close_matches(str(key), list(allowed), n=1)
                suffix = f" (did you mean {hint[0]!r}?)" if hint else f" (allowed: {', '.join(map(str, allowed))})"
                self.fail(f"{path}.{key}" if path else str(key), f"unknown key{suffix}")
        return value

    def space(self, document):
        if document is None:
            raise SpaceError(f"{self.source}: the file is empty")
        doc = self.mapping(document, "", TOP_KEYS)
        if "families" not in doc:
            self.fail("families", "missing: a space needs at least one family")
        # (a block left empty in YAML reads as None; `training: 0` or `probe: false` is refused)
        training = self.mapping(self.or_empty(doc.get("training"), {}), "training", tuple(TRAINING_DEFAULTS))
        probe = self.probe(self.or_empty(doc.get("probe"), {}))
        space = Space(
            name=str(doc.get("name", Path(self.source).stem)),
            source=self.source,
            code_size=self.setting(doc.get("code_size", 32), "code_size"),
            include_input=self.setting(doc.get("include_input", False), "include_input"),
            scaling=self.setting(doc.get("scaling", "minmax"), "scaling"),
            training=tuple(
                (key, self.setting(training.get(key, default), key, f"training.{key}"))
                for key, default in TRAINING_DEFAULTS.items()
            ),
            families=self.families(doc["families"]),
            probe=tuple(probe.items()),
            data_kinds=self.data_kinds(doc.get("data_kinds")),
            digest=self.digest(document),
        )
        if self.strict:
            self.check_kinds_taken(space)
        start = self.or_empty(doc.get("start"), [])
        if self.scale != 1 and start:  # start points as written, against the space as written
            _Parser(self.source, 1.0, self.strict).space(document)
        return replace(space, start=self.start(start, space))

    def or_empty(self, value, empty):
        """A block left out or left empty (`training:` reads as None) as `empty`; anything else as
        given (not strict: anything false, as spaces were read before)."""
        return empty if value is None or (not self.strict and not value) else value

    def check_kinds_taken(self, space):
        """Every data kind the space names is taken by one of its families (else `spaces`
        passed a space that `run` refuses on every dataset)."""
        for kind in space.data_kinds:
            if not any(kind in FAMILIES[name].data_kinds for name in space.family_names):
                self.fail("data_kinds", f"no family of this space takes {kind} data ({', '.join(space.family_names)})")

    def start(self, block, space):
        """Each start point walked through the space: every key must be a parameter the walk
        asks for (given the point's own family and depth) and every value inside its domain."""
        from search.suggest import sample

        if not isinstance(block, list):
            self.fail("start", f"expected a list of parameter mappings, got {block!r}")
        points = []
        for index, point in enumerate(block):
            path = f"start[{index}]"
            if not isinstance(point, dict) or not point:
                self.fail(path, f"expected a mapping of parameter name to value, got {point!r}")
            point = {key: self.shrunk_start(key, value) for key, value in point.items()}
            if self.strict:
                self.check_family_named(point, space, path)
            # (shrunk values, checked at scale 1 already, are put on the shrunk range's grid)
            checker = _StartChecker(point, lambda name, message, path=path: self.fail(f"{path}.{name}", message),
                                    snap={key for key in point if _parameter(key) in SCALED} if self.scale != 1 else (),
                                    strict=self.strict)
            sample(space, checker)
            only_family = space.families[0].name if len(space.families) == 1 else None
            if only_family is not None and "family" in point:  # a one-family space does not search it
                if point["family"] != only_family:
                    self.fail(f"{path}.family", f"{point['family']!r}: this space has one family, {only_family!r}")
                point = {key: value for key, value in point.items() if key != "family"}
            unknown = [key for key in point if key not in checker.asked]
            if unknown:
                hint = difflib.get_close_matches(str(unknown[0]), list(checker.asked), n=1)
                suffix = f" (did you mean {hint[0]!r}?)" if hint else ""
                self.fail(f"{path}.{unknown[0]}", f"not a searched parameter of this space for this point{suffix}")
            points.append(tuple(point.items()))
        return tuple(points)

    def shrunk_start(self, key, value):
        """A start point's value as --scale shrinks it: epochs, units and filters, written as
        whole numbers in any form (`20`, `20.0`, `2e1`)."""
        value = _scientific_as_number(value)
        if self.scale == 1 or _parameter(key) not in SCALED or not _is_number(value) or value != int(value):
            return value
        return self.shrink(int(value))

    def check_family_named(self, point, space, path):
        """A point that sets a family's own parameters names that family: the family is
        otherwise sampled, and a point checked against one family would run as another with
        its parameters dropped in silence."""
        if "family" in point or len(space.families) == 1:
            return
        for key in point:
            family = str(key).split(".", 1)[0]
            if family in space.family_names:
                self.fail(f"{path}.{key}", f"a parameter of family {family!r}: add family: {family} to this point "
                                           "(a point without one has its family sampled)")

    def probe(self, block):
        block = {**PROBE_DEFAULTS, **self.mapping(block, "probe", tuple(PROBE_DEFAULTS))}
        if block["model"] not in PROBES:
            self.fail("probe.model", f"unknown probe {block['model']!r} (known: {', '.join(PROBES)})")
        if block["metric"] not in METRICS:
            self.fail("probe.metric", f"unknown metric {block['metric']!r} (known: {', '.join(METRICS)})")
        if isinstance(block["cv"], bool) or not isinstance(block["cv"], int) or block["cv"] < 2:
            self.fail("probe.cv", f"must be an integer of at least 2, got {block['cv']!r}")
        return block

    def families(self, block):
        if not isinstance(block, dict) or not block:
            self.fail("families", f"expected a non-empty mapping of family name to parameters, got {block!r}")
        resolved = {name: self.extended(block, name, ()) for name in block}
        return tuple(self.family(name, params) for name, params in resolved.items())

    def extended(self, block, name, seen):
        """The family's block with `extends` followed (cycles and unknown bases refused)."""
        path = f"families.{name}"
        if name not in FAMILIES:
            hint = difflib.get_close_matches(str(name), list(FAMILIES), n=1)
            suffix = f" (did you mean {hint[0]!r}?)" if hint else f" (known: {', '.join(FAMILIES)})"
            self.fail(path, f"unknown family{suffix}")
        params = block[name] if block[name] is not None else {}
        if not isinstance(params, dict):
            self.fail(path, f"expected a mapping of parameters, got {params!r}")
        base = params.get("extends")
        if base is None:
            return dict(params)
        if not isinstance(base, str):
            self.fail(f"{path}.extends", f"expected the name of one family, got {base!r}")
        if base in seen or base == name:
            self.fail(f"{path}.extends", f"circular extends through {base!r}")
        if base not in block:
            self.fail(f"{path}.extends", f"{base!r} is not a family of this space ({', '.join(block)})")
        inherited = self.extended(block, base, (*seen, name))
        merged = {**inherited, **{k: v for k, v in params.items() if k != "extends"}}
        own_stack = isinstance(params.get("stack"), dict)
        for key in inherited:
            if key not in params:
                self.note_inherited(f"{path}.{key}", f"families.{base}.{key}", base)
            if key == "stack" and isinstance(inherited["stack"], dict):  # each of its keys from where it was set
                for layer_key in inherited["stack"]:
                    if not (own_stack and layer_key in params["stack"]):
                        self.note_inherited(f"{path}.stack.{layer_key}", f"families.{base}.stack.{layer_key}", base)
        if own_stack:  # a stack extends the base's stack, key by key
            base_stack = inherited.get("stack", {})
            if not isinstance(base_stack, dict):
                self.fail(f"{path}.extends", f"{base!r} brings a stack that is not a mapping: {base_stack!r}")
            merged["stack"] = {**base_stack, **params["stack"]}
        return merged

    def note_inherited(self, key, base_key, base):
        """`key` came from `base`'s block, or from wherever `base` had it."""
        self.inherited[key] = self.inherited.get(base_key, base)

    def family(self, name, params):
        spec = FAMILIES[name]
        path = f"families.{name}"
        allowed = tuple(k for k in spec.params if k != "layers") + ("stack", "extends")
        self.mapping(params, path, allowed)
        domains = tuple(
            (key, self.domain(value, f"{path}.{key}", key, spec.constraints.get(key)))
            for key, value in params.items()
            if key not in ("stack", "extends")
        )
        depth, layer = None, ()
        if "stack" in params:
            stack = self.mapping(params["stack"], f"{path}.stack", ("depth", *spec.layer_params))
            if "depth" not in stack:
                self.fail(f"{path}.stack.depth", "missing: a stack needs a depth")
            depth = self.domain(stack["depth"], f"{path}.stack.depth", "depth", STACK_DEPTH)
            layer = tuple(
                (key, self.domain(stack.get(key, default), f"{path}.stack.{key}", key, spec.layer_constraints[key]))
                for key, default in spec.layer_params.items()
            )
        return FamilySpace(name, domains, depth, layer)

    def setting(self, value, param, path=None):
        """A model setting's domain, checked against the transformer's constraints."""
        return self.domain(value, path or param, param, TRANSFORMER_CONSTRAINTS[param])

    def domain(self, value, path, param, constraints):
        """One parameter's domain, checked against what that parameter may take."""
        if isinstance(value, dict):
            domain = self.searched(value, path, param)
        elif isinstance(value, list):
            self.fail(path, f"a list is ambiguous here; write {{choice: {value!r}}}")
        elif isinstance(value, SCALARS):
            domain = Fixed(_scientific_as_number(value))
        else:
            self.fail(path, f"unsupported value {value!r}")
        self.check_values(domain, path, constraints)
        if _integer(constraints) and isinstance(domain, (Fixed, Choice)):  # `batch_size: 6.4e1` failed every trial
            domain = (Fixed(int(domain.value)) if isinstance(domain, Fixed)
                      else Choice(tuple(dict.fromkeys(map(int, domain.options)))))
        return self.scaled(domain) if param in SCALED and self.scale != 1 else domain

    def shrink(self, value):
        return max(1, round(value * self.scale))

    def scaled(self, domain):
        shrink = self.shrink
        if isinstance(domain, Fixed):
            return Fixed(shrink(domain.value))
        if isinstance(domain, Choice):
            return Choice(tuple(dict.fromkeys(shrink(v) for v in domain.options)))
        if not self.strict:  # as a study made before 2026-12-03 sampled it: the step kept
            low, high = shrink(domain.low), shrink(domain.high)
            return IntRange(low, high, domain.log, domain.step if high - low >= domain.step else 1)
        low, step = shrink(domain.low), shrink(domain.step) if domain.step > 1 else 1
        steps = (shrink(domain.high) - low) // step  # whole steps, as Optuna wants: 10..50 by 20 at 0.5 is 5..25 by 10
        return IntRange(low, low + steps * step, domain.log, step if steps else 1)

    def searched(self, value, path, param):
        kinds = [k for k in ("int", "float", "choice") if k in value]
        if len(kinds) != 1:
            self.fail(path, f"expected exactly one of int, float, choice, got {value!r}")
        kind = kinds[0]
        self.mapping(value, path, (kind, "log", "step") if kind != "choice" else ("choice",))
        if kind == "choice":
            options = value["choice"]
            if not isinstance(options, list) or not options:
                self.fail(f"{path}.choice", f"expected a non-empty list, got {options!r}")
            for option in options:
                if not isinstance(option, SCALARS):
                    self.fail(f"{path}.choice", f"options must be scalars, got {option!r}")
            return Choice(tuple(map(_scientific_as_number, options)))
        bounds = value[kind]
        if not isinstance(bounds, list) or len(bounds) != 2:
            self.fail(f"{path}.{kind}", f"expected [low, high], got {bounds!r}")
        cast = int if kind == "int" else float
        low, high = (self.number(b, f"{path}.{kind}", cast) for b in bounds)
        log = value.get("log", False)
        if not isinstance(log, bool):
            self.fail(f"{path}.log", f"expected true or false, got {log!r}")
        if low > high:
            self.fail(f"{path}.{kind}", f"low {low} > high {high}")
        if log and low <= 0:
            self.fail(f"{path}.{kind}", f"log scale needs low > 0, got {low}")
        step = value.get("step")
        if step is not None:
            step = self.number(step, f"{path}.step", cast)
            if step <= 0:
                self.fail(f"{path}.step", f"must be positive, got {step}")
            if log:
                self.fail(f"{path}.step", "cannot be combined with log: true")
            if high > low and step > (high - low) * (1 + 1e-9):  # only `low` could be drawn (0.5 - 0.4 < 0.1)
                self.fail(f"{path}.step", f"{step} is wider than the range {low}..{high}, so only {low} could be "
                                          "drawn (a fixed value is written as the value itself)")
            if self.strict and not _whole_steps(low, high, step):  # Optuna would move `high` with a warning
                below = low + math.floor((high - low) / step) * step
                self.fail(f"{path}.step", f"{low}..{high} is not a whole number of steps of {step} "
                                          f"(e.g. {low}..{below:g} or {low}..{below + step:g})")
        if kind == "int":
            return IntRange(low, high, log, step or 1)
        return FloatRange(low, high, log, step)

    def data_kinds(self, value) -> tuple:
        if value is None:
            return ()
        kinds = [value] if isinstance(value, str) else value
        if not isinstance(kinds, list) or not kinds or any(k not in KINDS for k in kinds):
            self.fail("data_kinds", f"expected a list of {', '.join(KINDS)}, got {value!r}")
        return tuple(kinds)

    def number(self, value, path, cast):
        # YAML 1.1 reads `1e-4` as a string; accept it rather than surprise the user.
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                self.fail(path, f"expected a number, got {value!r}")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.fail(path, f"expected a number, got {value!r}")
        if (isinstance(value, float) and not math.isfinite(value)) or (isinstance(value, int) and abs(value) > 2**53):
            self.fail(path, f"expected a finite number of at most 2**53, got {value!r}")
        if cast is int and float(value) != int(value):
            self.fail(path, f"expected an integer, got {value!r}")
        return cast(value)

    def check_values(self, domain, path, constraints):
        """Every value the domain may take, against what the parameter's owner declares."""
        if not constraints:
            return
        options = _options(constraints)
        if options is not None:
            if not isinstance(domain, (Fixed, Choice)):
                self.fail(path, f"{domain.describe()} given; expected one of {options} or a choice of them")
            for value in domain.values():
                if violation(value, constraints):
                    self.fail(path, f"{value!r} is not one of {options}")
            return
        integer = _integer(constraints)
        if integer and isinstance(domain, FloatRange):
            self.fail(path, f"{domain.describe()} given; expected an integer range ({{int: [low, high]}})")
        for value in domain.values() or (domain.low, domain.high):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                self.fail(path, f"expected a number, got {value!r}")
            if integer and float(value) != int(value):
                self.fail(path, f"expected an integer, got {value!r}")
            wrong = violation(int(value) if integer else value, constraints)
            if wrong:
                self.fail(path, f"{value!r} out of range (must be {wrong})")


SCIENTIFIC = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def _scientific_as_number(value):
    """YAML 1.1 (PyYAML) reads `1e-3` as the string '1e-3' (only `1.0e-3` as a number); a
    number is meant. (Read here, not by the loader: a stored space's digest is of the document
    as PyYAML reads it.)"""
    return float(value) if isinstance(value, str) and SCIENTIFIC.fullmatch(value) else value


def _integer(constraints) -> bool:
    """Whether a parameter takes whole numbers only (an integer interval among its constraints)."""
    return any(isinstance(c, Interval) and c.type is Integral for c in constraints or ())


def _options(constraints) -> list | None:
    """The values a categorical parameter may take; None for a number."""
    for constraint in constraints:
        if constraint == "boolean":
            return [True, False]
        if isinstance(constraint, StrOptions):
            return sorted(constraint.options)
    return None


class _StartChecker:
    """A suggest adapter that answers from a start point (the domain's lowest value where the
    point says nothing) and refuses values outside a parameter's domain. A value is read as
    the space's own values are (`1e-3` a number, `4.0` a whole number, `0.0` the option `0`)
    and stored in the point as the domain holds it; `snap`: the keys that --scale shrank (their
    values were checked at scale 1), moved onto the shrunk range's grid. Not `strict`: a float
    step's grid is not checked (as for a study made before 2026-12-03)."""

    def __init__(self, point, fail, snap=(), strict=True):
        self.point, self.fail, self.asked, self.snap, self.strict = point, fail, set(), snap, strict

    def _given(self, name, default, read, domain):
        self.asked.add(name)
        if name not in self.point:
            return default
        value = read(_scientific_as_number(self.point[name]))
        if value is None:
            self.fail(name, f"{self.point[name]!r} is outside the space's {domain.describe()}")
        self.point[name] = value
        return value

    def int(self, name, low, high, *, log=False, step=1):
        def read(v):
            if not _is_number(v) or float(v) != int(v):
                return None
            v = int(v)
            if name in self.snap:
                v = min(max(low + round((v - low) / step) * step, low), high)
            return v if low <= v <= high and (v - low) % step == 0 else None

        return self._given(name, low, read, IntRange(low, high, log, step))

    def float(self, name, low, high, *, log=False, step=None):
        def read(v):
            if not _is_number(v) or not low <= v <= high:
                return None
            steps = (v - low) / step if step and self.strict else 0  # a tolerance, as Optuna's own check
            return float(v) if abs(steps - round(steps)) <= 1e-9 * max(1.0, steps) else None

        return self._given(name, low, read, FloatRange(low, high, log, step))

    def choice(self, name, options):
        def read(v):  # a number matches an equal number (0.0 the option 0), never a bool (True == 1)
            same = [o for o in options if v == o and (type(v) is type(o) or (_is_number(v) and _is_number(o)))]
            return same[0] if same else None

        return self._given(name, options[0], read, Choice(tuple(options)))


def _whole_steps(low, high, step) -> bool:
    """Whether `high - low` is a whole number of steps, decided in decimal as Optuna does."""
    from decimal import Decimal

    return (Decimal(str(high)) - Decimal(str(low))) % Decimal(str(step)) == 0


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _as_sequences(family: str, kind: str) -> str:
    """A hint where series given as rows (n, T) lose the sequence families."""
    if kind == "tabular" and "sequence" in FAMILIES[family].data_kinds:
        return (" (time series: give X as an (n, T, F) array, from Python or a .npz file; X[:, :, None] for one"
                " channel)")
    return ""
