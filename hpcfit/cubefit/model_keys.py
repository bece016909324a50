"""Config value types of cubefit's model and fitter keys (no astropy import: the job module stays cheap to load).

``ModelRef`` takes a model's ``class``: a built-in name or ``'package.module:Name'`` (resolved, with a clear error,
when the model is built by ``model_spec``), or from Python a model class or instance. ``InitialValue`` takes a
parameter's ``value``: a number, a quantity string, an ``.npy`` map (resolved against the config's folder), or
from Python an array.
"""

from __future__ import annotations

from typing import Any

from hpcfit.config.schema import Context, Invalid, PathT, Type


class ModelRef(Type):
    """A model's `class`: a name (built-in, or 'package.module:Name'), or from Python an astropy model class or
    instance itself (resolved and checked when the model is built, with the key in the message)."""

    def convert(self, value: Any, ctx: Context) -> Any:
        if isinstance(value, str) and value.strip():
            return value
        if hasattr(value, "param_names") and hasattr(value, "evaluate"):  # an astropy model class or instance
            return value
        raise Invalid(f"expected a model name, got {type(value).__name__} {value!r}", self.describe())

    def describe(self) -> str:
        return ("astropy model name (Gaussian1D) or 'package.module:Name' (a Fittable*Model subclass, a "
                "custom_model class or a model instance); from Python also the class or instance")


class InitialValue(Type):
    """A parameter's `value`: a number, a quantity string, or an .npy map of per-fit values (path relative to the
    config); from Python also an array over the iterating axes."""

    def convert(self, value: Any, ctx: Context) -> Any:
        if isinstance(value, str) and value.strip().lower().endswith(".npy"):
            return PathT().convert(value, ctx)
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return float(value) if not isinstance(value, str) else value
        if hasattr(value, "shape") and hasattr(value, "dtype"):  # an array (or Quantity) from Python
            return value
        raise Invalid(f"expected a number, a quantity string or an .npy path, got {value!r}", self.describe())

    def describe(self) -> str:
        return "number, quantity string ('4000 m/s') or path of an .npy map over the iterating axes"


#: the non-linear least-squares and optimisation fitters (FittingWithOutlierRemoval may wrap any of them)
FITTERS = ("TRFLSQFitter", "LevMarLSQFitter", "LMLSQFitter", "DogBoxLSQFitter", "SLSQPLSQFitter",
           "SimplexLSQFitter")
