"""The value domains of a search space: fixed, int range, float range, choice.

Each domain is frozen and samples itself through a `Suggest` (see suggest.py), so the same
space drives Optuna, keras-tuner, Ray and a fixed replay."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

SCALARS = (bool, int, float, str, type(None))


@dataclass(frozen=True)
class Fixed:
    value: Any

    def sample(self, suggest, name):
        return self.value

    def values(self):
        return (self.value,)

    def describe(self):
        return repr(self.value)


@dataclass(frozen=True)
class IntRange:
    low: int
    high: int
    log: bool = False
    step: int = 1

    def sample(self, suggest, name):
        return suggest.int(name, self.low, self.high, log=self.log, step=self.step)

    def values(self):
        return None  # not enumerated

    def describe(self):
        step = f" step {self.step}" if self.step != 1 else ""
        return f"int[{self.low}, {self.high}]" + (" log" if self.log else "") + step


@dataclass(frozen=True)
class FloatRange:
    low: float
    high: float
    log: bool = False
    step: float | None = None

    def sample(self, suggest, name):
        return suggest.float(name, self.low, self.high, log=self.log, step=self.step)

    def values(self):
        return None

    def describe(self):
        step = f" step {self.step:g}" if self.step else ""
        return f"float[{self.low:g}, {self.high:g}]" + (" log" if self.log else "") + step


@dataclass(frozen=True)
class Choice:
    options: tuple

    def sample(self, suggest, name):
        return suggest.choice(name, self.options)

    def values(self):
        return self.options

    def describe(self):
        return "choice" + repr(list(self.options))
