"""Hyperparameter search spaces: random sampling on the right scale, and coarse-to-fine narrowing.

docs/methods.md §9. Every parameter is sampled uniformly on its own *sampling scale* r, never on a grid:

    log-uniform          r ~ U(log10 low, log10 high),          value = 10^r        (α, λ)
    one-minus-log        r ~ U(log10(1 − high), log10(1 − low)), value = 1 − 10^r    (β)
    int                  value ~ U{low, ..., high} (inclusive),  r = value           (units, epochs)
    choice               value ~ U(values)                                           (b, optimiser)

So α over [1e-4, 1] puts a quarter of its samples in each decade, and β over [0.9, 0.999] puts
half of them in [0.99, 0.999], where the average over ~1/(1 − β) steps is most sensitive to β.

Coarse to fine (``narrow``): after a round, each range becomes the interval spanned by the best
trials *on the sampling scale r*, padded on each side by ``padding`` × the current width, and
clipped to the current range (rounds zoom in; they never widen). Integer bounds are rounded
outwards. A choice keeps only the values the best trials used (``narrow_choices=True``) or all of
them; narrowing can drop an option that was merely unlucky with few trials, hence the switch.

A search space file is YAML (``.yaml``, ``.yml``, read with ``yaml.safe_load``) or JSON (any
other name): ``{"name": {"scale": "log", "low": 1e-4, "high": 1}, ...}`` with scales ``log``,
``one_minus_log``, ``int`` (``low``, ``high``) and ``choice`` (``values``). Parameter names are
``scripts/train.py`` flag names.
"""

import dataclasses
import json
import math
import os

import numpy as np
import yaml

from tfnet._checks import fail


def _require_numbers(name, rule, low, high):
    """Refuses bounds that are not numbers, naming them: PyYAML reads ``1e-4`` as the string
    "1e-4" (YAML 1.1 wants ``1.0e-4``), and a JSON "1e-4" in quotes is a string too."""
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (low, high)):
        fail(name, f"{rule}, both numbers (in YAML write 1.0e-4, not 1e-4, which PyYAML reads "
              "as a string; in JSON no quotes)", (low, high))


@dataclasses.dataclass(frozen=True)
class LogUniform:
    """α = 10^r with r ~ U(log10 low, log10 high); for α and λ. Requires 0 < low <= high.

    low == high is a constant: coarse to fine with ``padding=0`` reaches it when all the best
    trials share one value.
    """

    name: str
    low: float
    high: float
    scale = "log"

    def __post_init__(self):
        _require_numbers(self.name, "a log-uniform range (low, high)", self.low, self.high)
        if not 0 < self.low <= self.high:
            fail(self.name, "a log-uniform range (low, high) with 0 < low <= high",
                  (self.low, self.high))

    def to_scale(self, value):
        return np.log10(value)

    def from_scale(self, r):
        return 10.0 ** np.asarray(r)

    @property
    def scale_bounds(self):
        return self.to_scale(self.low), self.to_scale(self.high)

    def with_scale_bounds(self, r_low, r_high):
        return dataclasses.replace(self, low=float(self.from_scale(r_low)),
                                   high=float(self.from_scale(r_high)))

    def sample(self, rng, n):
        return [float(v) for v in self.from_scale(rng.uniform(*self.scale_bounds, size=n))]

    def to_dict(self):
        return {"scale": self.scale, "low": self.low, "high": self.high}


@dataclasses.dataclass(frozen=True)
class OneMinusLogUniform(LogUniform):
    """β = 1 − 10^r with r ~ U(log10(1 − high), log10(1 − low)). Requires 0 <= low <= high < 1."""

    scale = "one_minus_log"

    def __post_init__(self):
        _require_numbers(self.name, "a one-minus-log-uniform range (low, high)", self.low, self.high)
        if not 0 <= self.low <= self.high < 1:
            fail(self.name, "a one-minus-log-uniform range (low, high) with 0 <= low <= high < 1",
                  (self.low, self.high))

    def to_scale(self, value):
        return np.log10(1.0 - np.asarray(value))

    def from_scale(self, r):
        return 1.0 - 10.0 ** np.asarray(r)

    @property
    def scale_bounds(self):
        # 1 − β decreases as β grows, so high gives the lower end of r.
        return self.to_scale(self.high), self.to_scale(self.low)

    def with_scale_bounds(self, r_low, r_high):
        return dataclasses.replace(self, low=float(self.from_scale(r_high)),
                                   high=float(self.from_scale(r_low)))


@dataclasses.dataclass(frozen=True)
class IntUniform:
    """An integer uniform on {low, ..., high}, both included. Requires integers low <= high."""

    name: str
    low: int
    high: int
    scale = "int"

    def __post_init__(self):
        ints = all(isinstance(v, int) and not isinstance(v, bool) for v in (self.low, self.high))
        if not ints or self.low > self.high:
            fail(self.name, "an integer range (low, high) with low <= high",
                  (self.low, self.high))

    def to_scale(self, value):
        return np.asarray(value, dtype=float)

    @property
    def scale_bounds(self):
        return float(self.low), float(self.high)

    def with_scale_bounds(self, r_low, r_high):
        return dataclasses.replace(self, low=int(math.floor(r_low)), high=int(math.ceil(r_high)))

    def sample(self, rng, n):
        return [int(v) for v in rng.integers(self.low, self.high + 1, size=n)]

    def to_dict(self):
        return {"scale": self.scale, "low": self.low, "high": self.high}


@dataclasses.dataclass(frozen=True)
class Choice:
    """One of ``values`` (str, int, float or bool), each with probability 1/len(values)."""

    name: str
    values: tuple
    scale = "choice"

    def __post_init__(self):
        values = tuple(self.values)
        if not values or len(set(values)) != len(values):
            fail(f"{self.name}.values", "a non-empty list of distinct values", list(values))
        if len({type(v) for v in values}) != 1 or not isinstance(values[0], (str, int, float)):
            fail(f"{self.name}.values", "all of one type: str, int, float or bool", list(values))
        object.__setattr__(self, "values", values)

    def sample(self, rng, n):
        # Indices, not rng.choice(values): numpy would turn ints into np.int64 and bools to np.bool.
        return [self.values[i] for i in rng.integers(len(self.values), size=n)]

    def to_dict(self):
        return {"scale": self.scale, "values": list(self.values)}


_SCALES = {"log": LogUniform, "one_minus_log": OneMinusLogUniform, "int": IntUniform,
           "choice": Choice}


@dataclasses.dataclass(frozen=True)
class SearchSpace:
    """An ordered tuple of parameters with distinct names."""

    parameters: tuple

    def __post_init__(self):
        parameters = tuple(self.parameters)
        names = [p.name for p in parameters]
        if not parameters or len(set(names)) != len(names):
            fail("parameters", "a non-empty list with distinct names", names)
        object.__setattr__(self, "parameters", parameters)

    @property
    def names(self):
        return tuple(p.name for p in self.parameters)

    def __getitem__(self, name):
        return self.parameters[self.names.index(name)]

    def sample(self, rng, n):
        """``n`` trials, each a dict name -> value, drawn independently from ``rng``."""
        columns = {p.name: p.sample(rng, n) for p in self.parameters}
        return [{name: columns[name][i] for name in self.names} for i in range(n)]

    def to_dict(self):
        return {p.name: p.to_dict() for p in self.parameters}

    @classmethod
    def from_dict(cls, spec):
        """Builds a space from ``{"name": {"scale": ..., ...}}``; raises ValueError when invalid."""
        if not isinstance(spec, dict):
            fail("search space", 'a mapping {"name": {"scale": ..., ...}}', spec)
        parameters = []
        for name, entry in spec.items():
            entry = dict(entry) if isinstance(entry, dict) else {}
            scale = entry.pop("scale", None)
            if scale not in _SCALES:
                fail(f"{name}.scale", f"one of {', '.join(_SCALES)}", scale)
            expected = {"values"} if scale == "choice" else {"low", "high"}
            if set(entry) != expected:
                fail(f"{name}", f"given exactly the keys scale, {', '.join(sorted(expected))}",
                      sorted(entry))
            if scale == "choice":
                entry["values"] = tuple(entry["values"])
            parameters.append(_SCALES[scale](name=name, **entry))
        return cls(tuple(parameters))

    @classmethod
    def from_file(cls, path):
        """Reads a space from a YAML (``.yaml``, ``.yml``) or JSON (any other name) file.

        Raises:
          ValueError: naming ``path`` when it cannot be read or parsed, and as ``from_dict`` when
            its content is not a valid space.
        """
        is_yaml = os.path.splitext(str(path))[1].lower() in (".yaml", ".yml")
        kind = "YAML" if is_yaml else "JSON"
        try:
            with open(path) as f:
                spec = yaml.safe_load(f) if is_yaml else json.load(f)
        except (OSError, UnicodeDecodeError, ValueError, yaml.YAMLError) as error:
            # json.JSONDecodeError is a ValueError; the one-line reason follows the path.
            reason = " ".join(str(error).split())
            fail("search space file", f"a readable {kind} file ({reason})", str(path))
        return cls.from_dict(spec)


def narrow(space, best_trials, padding=0.1, narrow_choices=True):
    """The next round's space, zoomed around ``best_trials`` (dicts name -> value).

    For a range parameter with current sampling-scale bounds [r_lo, r_hi] and the best trials at
    r_1..r_k: the new bounds are [min r_i − padding (r_hi − r_lo), max r_i + padding (r_hi − r_lo)]
    clipped to [r_lo, r_hi]. A choice keeps the values the best trials used, in their original
    order, when ``narrow_choices`` is true, and all of its values otherwise.

    Args:
      space: the current ``SearchSpace``.
      best_trials: a non-empty list of the best trials' values, e.g. the top quarter of a round.
      padding: margin on each side as a fraction of the current width, >= 0. Default 0.1.
      narrow_choices: narrow choices to the values of the best trials. Default True.
    """
    if not best_trials:
        fail("best_trials", "a non-empty list of trials", best_trials)
    if not padding >= 0:
        fail("padding", ">= 0", padding)
    narrowed = []
    for parameter in space.parameters:
        used = [trial[parameter.name] for trial in best_trials]
        if isinstance(parameter, Choice):
            keep = [v for v in parameter.values if v in used] if narrow_choices else parameter.values
            narrowed.append(dataclasses.replace(parameter, values=tuple(keep)))
            continue
        r_low, r_high = parameter.scale_bounds
        margin = padding * (r_high - r_low)
        r_used = parameter.to_scale(used)
        new_low = max(r_low, float(np.min(r_used)) - margin)
        new_high = min(r_high, float(np.max(r_used)) + margin)
        narrowed.append(parameter.with_scale_bounds(new_low, new_high))
    return SearchSpace(tuple(narrowed))
