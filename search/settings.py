"""A study's settings as types: what it measures (`StudySpec`), how much to search (`Budget`),
and how its backend runs trials (one `BackendOptions` type per backend). Each validates itself
when made (errors name the Python parameter: "workers: must be at least 1, got 0"; the CLI
maps them to its flags), writes itself into the study's manifest, and reads itself back with
the defaults below: the one place they live.

Light on purpose (no TensorFlow, Optuna or Ray): the CLI takes its defaults from here."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from numbers import Integral
from typing import ClassVar

from search.errors import SettingsError

KERAS_BACKENDS = ("tensorflow", "jax", "torch")  # what --keras-backend and keras_backend= take

# Optuna trials run in a child process replaced every this many trials unless told otherwise:
# TensorFlow keeps what it traced for every fit, so a long-lived process grows ~6 MiB per
# trial (tensorflow#61791); a child per 25 trials bounds that for the price of one TensorFlow
# import per 25 trials, started while the last child finishes (benchmarks/results/memory.md).
DEFAULT_TRIALS_PER_PROCESS = 25


class _Settings:
    """Manifest round trip shared by the settings types: a field is stored under its name."""

    def to_manifest(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_manifest(cls, manifest: dict):
        """The settings a study stored; a key it lacks (an older study) takes the default."""
        return cls(**{f.name: manifest[f.name] for f in dataclasses.fields(cls) if f.name in manifest})


@dataclass(frozen=True)
class StudySpec(_Settings):
    """What a study measures; a resume or re-run must not change it. `data` is a dataset
    name, a file path, or `memory:HASH` for in-memory data; `metric` and `cv` (the probe's
    folds) None mean the space's."""

    data: str = "digits"
    target: str | None = None
    seed: int = 0
    test_size: float = 0.25
    metric: str | None = None
    subsample: int | None = None
    cv: int | None = None

    def __post_init__(self):
        from encoderkit.probe import METRICS

        _set(self, "seed", _integer("seed", self.seed))
        # NumPy and scikit-learn take seeds below 2**32; trials and workers add their numbers to this one
        if not 0 <= self.seed < 2**31:
            raise SettingsError(f"seed: must be between 0 and 2**31 - 1, got {self.seed}")
        try:
            size = float(self.test_size)
        except (TypeError, ValueError):
            raise SettingsError(f"test_size: must be a fraction between 0 and 1, got {self.test_size!r}") from None
        if not 0 < size < 1:
            raise SettingsError(f"test_size: must be a fraction strictly between 0 and 1, got {self.test_size!r}")
        _set(self, "test_size", size)
        if self.subsample is not None:
            if _integer("subsample", self.subsample) < 1:
                raise SettingsError(f"subsample: must be a positive number of rows, got {self.subsample}")
            _set(self, "subsample", int(self.subsample))
        if self.metric is not None and self.metric not in METRICS:
            raise SettingsError(f"metric: unknown metric {self.metric!r} (known: {', '.join(METRICS)})")
        if self.cv is not None:
            if _integer("cv", self.cv) < 2:
                raise SettingsError(f"cv: must be a number of folds of at least 2, got {self.cv}")
            _set(self, "cv", int(self.cv))


@dataclass(frozen=True)
class Budget(_Settings):
    """How much to search; may change between runs of one study. `timeout`: seconds after
    which no trial starts; `max_failures`: failed trials in a row that end the search."""

    trials: int = 30
    timeout: float | None = None
    max_failures: int = 10

    def __post_init__(self):
        if _integer("trials", self.trials) < 1:
            raise SettingsError(f"trials: must be at least 1, got {self.trials}")
        if _integer("max_failures", self.max_failures) < 1:
            raise SettingsError(f"max_failures: must be at least 1, got {self.max_failures}")
        if self.timeout is not None and not _number("timeout", self.timeout) > 0:
            raise SettingsError(f"timeout: must be positive seconds, got {self.timeout}")
        _set(self, "trials", int(self.trials))
        _set(self, "max_failures", int(self.max_failures))
        _set(self, "timeout", None if self.timeout is None else float(self.timeout))

    def deadline_from_now(self) -> float | None:
        """When (epoch seconds) a search starting now stops starting trials; None: no timeout."""
        import time

        return time.time() + self.timeout if self.timeout else None


@dataclass(frozen=True)
class BackendOptions(_Settings):
    """Options of one backend. Subclasses add their own fields; `for_backend` refuses, in one
    line, an option that belongs to another backend."""

    workers: int = 1  # trials at once

    takes_start_points: ClassVar[bool] = True  # whether the space's `start` points are tried first

    def __post_init__(self):
        if _integer("workers", self.workers) < 1:
            raise SettingsError(f"workers: must be at least 1, got {self.workers}")
        _set(self, "workers", int(self.workers))

    @classmethod
    def for_backend(cls, backend: str, **given):
        """`given`: the options a user set (None is not set: the backend's default). One that
        belongs to another backend is refused even at its default value: `--algorithm random`
        under optuna reads like a random search."""
        own = {f.name for f in dataclasses.fields(cls)}
        for key, value in given.items():
            if key == "fresh_process" and value == 0:
                continue  # "every trial in the worker itself" is what the other backends do anyway
            if key not in own:
                raise SettingsError(f"{key}: not an option of backend {backend}")
        return cls(**{k: v for k, v in given.items() if k in own})

    def process_env(self) -> dict:
        """Environment for this (the driver's) process before TensorFlow starts."""
        return {}

    @property
    def trials_per_child(self) -> int:
        """Trials per child process where the driver runs its trials in child processes; 0
        where it runs them itself (keras-tuner) or has none of its own (Ray's actors)."""
        return 0


@dataclass(frozen=True)
class OptunaOptions(BackendOptions):
    """`workers` processes share the study's SQLite storage, each on its own GPU (round-robin
    over `gpus`: "auto", "none", "0,1" or a list of ids); `fresh_process`: trials per child
    process (None: 25; 0: every trial in the worker itself; True: 1); `storage`: None (the
    study's own SQLite file) or a storage other machines can join: a database URL
    (postgresql://USER@HOST/DB) or journal:PATH on a shared filesystem (kept without password)."""

    gpus: object = "auto"
    fresh_process: int | None = None
    storage: str | None = None

    def __post_init__(self):
        super().__post_init__()
        from search import devices

        if self.storage is not None:
            from search.storage import public_url

            _set(self, "storage", public_url(str(self.storage)))

        _set(self, "gpus", devices.resolve_gpus(self.gpus))
        every = DEFAULT_TRIALS_PER_PROCESS if self.fresh_process is None else self.fresh_process
        if isinstance(every, bool):  # a switch, as the bare --fresh-process flag: on means every trial
            every = int(every)
        if _integer("fresh_process", every) < 0:
            raise SettingsError(f"fresh_process: must be a number of trials per process, got {self.fresh_process}")
        _set(self, "fresh_process", int(every))

    @classmethod
    def from_manifest(cls, manifest: dict):
        # Studies from before these options ran trials in the worker, on no pinned GPU.
        return super().from_manifest({"fresh_process": 0, "gpus": [], **manifest})

    def process_env(self) -> dict:
        from search import devices

        return devices.for_worker(self.gpus, 0)  # worker 0 is the driver itself

    @property
    def trials_per_child(self) -> int:
        return self.fresh_process


@dataclass(frozen=True)
class RayOptions(BackendOptions):
    """`address`: a Ray cluster to join ("auto": the running one; None: start Ray here);
    `cpus_per_trial` and `gpus_per_trial` (fractions share one GPU) reserve resources;
    `workers`: concurrent trials."""

    address: str | None = None
    cpus_per_trial: float = 1
    gpus_per_trial: float = 0

    def __post_init__(self):
        super().__post_init__()
        if self.address is not None and not isinstance(self.address, str):  # (a hand-edited manifest's)
            raise SettingsError(f"address: expected HOST:PORT or auto, got {self.address!r}")
        if not _number("cpus_per_trial", self.cpus_per_trial) > 0:
            raise SettingsError(f"cpus_per_trial: must be positive, got {self.cpus_per_trial}")
        gpus = _number("gpus_per_trial", self.gpus_per_trial)
        if gpus < 0 or (gpus > 1 and not gpus.is_integer()):
            raise SettingsError(f"gpus_per_trial: a fraction of one GPU or a whole number, got {self.gpus_per_trial}")
        _set(self, "cpus_per_trial", float(self.cpus_per_trial))
        _set(self, "gpus_per_trial", gpus)


@dataclass(frozen=True)
class KerasTunerOptions(BackendOptions):
    """`algorithm`: random, bayesian or hyperband; one trial at a time."""

    algorithm: str = "random"

    ALGORITHMS: ClassVar[tuple] = ("random", "bayesian", "hyperband")
    takes_start_points: ClassVar[bool] = False  # its oracles choose every value themselves

    def __post_init__(self):
        super().__post_init__()
        if self.algorithm not in self.ALGORITHMS:
            raise SettingsError(f"algorithm: unknown algorithm {self.algorithm!r} (known: {', '.join(self.ALGORITHMS)})")
        if self.workers != 1:
            raise SettingsError(
                f"workers: the kerastuner backend runs one trial at a time, got {self.workers} "
                "(its distributed mode needs a chief and gRPC workers; use the optuna or ray backend)"
            )


OPTIONS = {"optuna": OptunaOptions, "ray": RayOptions, "kerastuner": KerasTunerOptions}  # by backend name

# Every backend option with its default, for the CLI and for refusing another backend's option.
OPTION_DEFAULTS = {f.name: f.default for cls in OPTIONS.values() for f in dataclasses.fields(cls)}


def option_keys() -> set:
    return set(OPTION_DEFAULTS)


def _integer(name, value) -> int:
    """A whole number as given (2, 2.0, "2"); 2.5 or True is refused, not rounded."""
    if isinstance(value, bool):
        raise SettingsError(f"{name}: must be a whole number, got {value!r}")
    try:
        number = int(value)
        whole = isinstance(value, (str, Integral)) or float(value).is_integer()
    except (TypeError, ValueError, OverflowError):
        raise SettingsError(f"{name}: must be a whole number, got {value!r}") from None
    if not whole:
        raise SettingsError(f"{name}: must be a whole number, got {value!r}")
    return number


def _number(name, value) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise SettingsError(f"{name}: must be a number, got {value!r}") from None
    if number != number or number in (float("inf"), float("-inf")):
        raise SettingsError(f"{name}: must be a finite number, got {value!r}")
    return number


def _set(settings, name, value):
    object.__setattr__(settings, name, value)  # normalising a frozen dataclass while it is made
