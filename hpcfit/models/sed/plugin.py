"""The forward-model plug-in protocol of the ``sample`` job, and how a model is named in a config.

A config's ``model:`` names either ``builtin`` or a plug-in ``package.module:attribute``. The attribute is either

1. a :class:`ModelSpec` (preferred: the config validator can check parameter names, ranges and options on rank 0
   *before* anything expensive is built), or
2. a factory callable with a ``param_names`` attribute (optionally ``valid_ranges`` and ``option_names``), which
   :func:`load_model_spec` wraps in a ModelSpec.

Building: ``spec.build(filters=..., options=..., bounds=...)`` calls the factory once per rank as
``factory(filters=FilterSet, options=dict, bounds=dict[name, (low, high)])`` and returns a :class:`ForwardModel`.
``bounds`` are the linear-space ranges the job will evaluate (a rank may pass its own redshift band): a model may
use them to size precomputed tables. The object returned must provide

* ``param_names``: tuple of str, the parameters it takes (all of them: the job passes free and fixed ones);
* ``filter_names`` (F,) and ``wavelengths`` (F,) Angstrom, the columns of its output;
* ``description``: str, stored in the output file;
* ``__call__(params)`` with ``params`` a mapping name -> ndarray (B,) of linear values (the job has already
  exponentiated ``log_*`` axes), or an ndarray (B, D) in ``param_names`` order; it returns maggies, ndarray (B, F),
  float64 or float32, finite. It raises an exception on bad input (the engine turns that into a clean abort).

Models are plain array-in / array-out objects: they never see MPI.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np



@runtime_checkable
class ForwardModel(Protocol):
    """What a built model looks like to the sample job (see the module docstring)."""

    param_names: tuple[str, ...]
    filter_names: tuple[str, ...]
    wavelengths: np.ndarray
    description: str

    def __call__(self, params: Mapping[str, np.ndarray] | np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class ParamSpec:
    """One model parameter: physical valid range [low, high] (linear units), unit, default (None = required)."""

    name: str
    low: float
    high: float
    unit: str
    doc: str
    default: float | None = None


@dataclass(frozen=True)
class OptionSpec:
    """One model option: default value, allowed choices (or None), expected type, documentation."""

    name: str
    default: Any
    doc: str
    choices: tuple[Any, ...] | None = None
    kind: type | tuple[type, ...] = object


@dataclass(frozen=True)
class ModelSpec:
    """A model declaration: what it takes and how to build it (cheap to hold; building may be expensive)."""

    name: str
    params: tuple[ParamSpec, ...]
    factory: Callable[..., ForwardModel]
    options: tuple[OptionSpec, ...] = ()
    doc: str = ""
    open_options: bool = False  # True: unknown option names are passed through unchecked (plug-ins without a list)
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def param_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.params)

    @property
    def option_names(self) -> tuple[str, ...]:
        return tuple(o.name for o in self.options)

    def param(self, name: str) -> ParamSpec:
        for p in self.params:
            if p.name == name:
                return p
        raise KeyError(name)

    def check_bounds(self, bounds: Mapping[str, Sequence[float]]) -> list[str]:
        """Problems with ``bounds`` (name -> (low, high), linear units): unknown names, ranges outside validity."""
        problems = []
        for name, pair in bounds.items():
            if name not in self.param_names:
                problems.append(f"unknown parameter {name!r} for model {self.name!r} (allowed: {', '.join(self.param_names)})")
                continue
            low, high = (float(v) for v in pair)
            spec = self.param(name)
            if not (math.isfinite(low) and math.isfinite(high)) or low > high:
                problems.append(f"{name}: need finite low <= high, got [{low}, {high}]")
            elif low < spec.low or high > spec.high:
                problems.append(f"{name}: range [{low}, {high}] outside the model's valid range [{spec.low}, {spec.high}] ({spec.unit})")
        return problems

    def check_options(self, options: Mapping[str, Any]) -> list[str]:
        """Problems with ``options``: unknown names, values outside their choices or of the wrong type."""
        if self.open_options:
            return []
        problems = []
        known = {o.name: o for o in self.options}
        for key, value in options.items():
            if key not in known:
                problems.append(f"unknown option {key!r} for model {self.name!r} (allowed: {', '.join(known)})")
                continue
            spec = known[key]
            if spec.choices is not None and value not in spec.choices:
                problems.append(f"option {key}: {value!r} not one of {list(spec.choices)}")
            elif not isinstance(value, spec.kind) or (isinstance(value, bool) and spec.kind in (int, float, (int, float))):
                problems.append(f"option {key}: expected {_kind_name(spec.kind)}, got {value!r}")
        return problems

    def missing_params(self, provided: Sequence[str]) -> list[str]:
        """Required parameters (no default) absent from ``provided``."""
        return [p.name for p in self.params if p.default is None and p.name not in provided]

    def build(self, *, filters, options: Mapping[str, Any] | None = None,
              bounds: Mapping[str, Sequence[float]] | None = None) -> ForwardModel:
        """Validate, then call the factory; raises ValueError listing every problem."""
        options = dict(options or {})
        bounds = dict(bounds or {})
        problems = self.check_options(options) + self.check_bounds(bounds)
        if problems:
            raise ValueError("; ".join(problems))
        model = self.factory(filters=filters, options=options, bounds=bounds)
        if tuple(model.param_names) != self.param_names:
            raise TypeError(f"model {self.name!r} declared {self.param_names} but built {tuple(model.param_names)}")
        return model


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(k.__name__ for k in kinds)


def as_param_dict(params: Mapping[str, Any] | np.ndarray, names: Sequence[str]) -> dict[str, np.ndarray]:
    """Normalise a (B, D) array (columns in ``names`` order) or a mapping to name -> float array (B,)."""
    if isinstance(params, Mapping):
        unknown = sorted(set(params) - set(names))
        if unknown:
            raise KeyError(f"unknown parameters {unknown} (the model takes {list(names)})")
        arrays = {k: np.atleast_1d(np.asarray(v, dtype=float)) for k, v in params.items()}
        sizes = {a.size for a in arrays.values() if a.size != 1}
        if len(sizes) > 1:
            raise ValueError(f"parameter arrays have different lengths: {sorted(sizes)}")
        size = sizes.pop() if sizes else 1
        return {k: np.broadcast_to(a.ravel(), (size,)) for k, a in arrays.items()}
    array = np.asarray(params, dtype=float)
    if array.ndim != 2 or array.shape[1] != len(names):
        raise ValueError(f"expected an array (B, {len(names)}) with columns {list(names)}, got shape {array.shape}")
    return {name: array[:, i] for i, name in enumerate(names)}
