"""Find the forward model a config names: ``builtin`` or a plug-in ``package.module:attribute``.

It sits above both the plug-in protocol (``plugin``) and the built-in model (``builtin``), which imports the protocol.
"""

from __future__ import annotations

import importlib
import math

from hpcfit.models.sed.plugin import ModelSpec, OptionSpec, ParamSpec

BUILTIN_NAME = "builtin"


def import_target(target: str, expected: str = "'package.module:callable'") -> object:
    """The object a ``package.module:attribute`` string names (ValueError saying what is wrong otherwise)."""
    module_name, sep, attribute = target.partition(":")
    if not sep or not module_name or not attribute:
        raise ValueError(f"model {target!r}: expected {expected}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ValueError(f"model {target!r}: cannot import {module_name!r}: {error}") from error
    obj = module
    for part in attribute.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ValueError(f"model {target!r}: {module_name!r} has no attribute {attribute!r}") from None
    return obj


def load_model_spec(target: str) -> ModelSpec:
    """The ModelSpec named by a config's ``model`` value: ``builtin`` or ``package.module:attribute``."""
    if target == BUILTIN_NAME:
        from hpcfit.models.sed.builtin import BUILTIN_SPEC

        return BUILTIN_SPEC
    obj = import_target(target, expected="'builtin' or 'package.module:callable'")
    if isinstance(obj, ModelSpec):
        return obj
    if callable(obj) and hasattr(obj, "param_names"):
        ranges = dict(getattr(obj, "valid_ranges", {}) or {})
        params = tuple(
            ParamSpec(name, *ranges.get(name, (-math.inf, math.inf)), unit="", doc="") for name in obj.param_names
        )
        option_names = getattr(obj, "option_names", None)
        options = tuple(OptionSpec(n, None, "") for n in option_names) if option_names is not None else ()
        return ModelSpec(name=target, params=params, factory=obj, options=options, open_options=option_names is None,
                         doc=(obj.__doc__ or "").strip())
    raise TypeError(
        f"model {target!r} is neither a ModelSpec nor a factory callable with a 'param_names' attribute "
        "(see hpcfit.models.sed.plugin)"
    )
