"""Turn the YAML model description into a unitless astropy model fitted in known units.

The user writes values and bounds in whatever units they like (``mean: {value: 4000, unit: m/s, bounds:
["3 km/s", "6 km/s"]}``). Fitting happens without units, in the units the data imply: the world unit of the
fitting axes and the data unit, mapped to each parameter by the model's own ``_parameter_units_for_data_units``
(the rule astropy's fitters use). Values *and bounds* are converted to those units here. astropy converts the
values but applies bound numbers unchanged (astropy issue #18705); hpcfit converts both and reports the unit
each parameter was fitted in.

Tied parameters are written as arithmetic expressions over other parameters (``line2.stddev: line1.stddev``,
``line2.mean: "line1.mean * 1.05"``), parsed with a whitelist (no ``eval`` of user text).
"""

from __future__ import annotations

import ast
import difflib
import operator
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
from astropy import units as u
from astropy.modeling import Fittable1DModel, Fittable2DModel, FittableModel, Model, models

_MODEL_OPERATORS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
                    ast.Div: operator.truediv, ast.Pow: operator.pow}
_TIED_OPERATORS = {ast.Add: np.add, ast.Sub: np.subtract, ast.Mult: np.multiply, ast.Div: np.divide,
                   ast.Pow: np.power}


class ModelSpecError(ValueError):
    """A problem with the model description; ``path`` is the config key (below ``cubefit.model``)."""

    def __init__(self, path: str, message: str, allowed: str | None = None):
        super().__init__(message)
        self.path, self.message, self.allowed = path, message, allowed


def fittable_model_classes() -> dict[str, type[Model]]:
    """astropy model classes that can be fitted, by class name."""
    found = {}
    for name in dir(models):
        obj = getattr(models, name)
        if isinstance(obj, type) and issubclass(obj, FittableModel) and obj not in (
                FittableModel, Fittable1DModel, Fittable2DModel) and obj.param_names:
            found[name] = obj
    return found


def model_class(name: str, path: str) -> type[Model]:
    classes = fittable_model_classes()
    if name not in classes:
        close = difflib.get_close_matches(name, list(classes), n=3)
        hint = f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""
        raise ModelSpecError(path, f"'{name}' is not a fittable astropy model{hint}",
                             "any class of astropy.modeling.models with parameters, e.g. Gaussian1D, Lorentz1D, "
                             "Voigt1D, Const1D, Linear1D, Polynomial1D, Gaussian2D")
    return classes[name]


def parse_quantity(value: Any, unit: str | None, path: str) -> tuple[float, u.UnitBase | None]:
    """A number (in ``unit`` when given) or a quantity string like '4000 m/s' -> (value, unit or None)."""
    if isinstance(value, str):
        try:
            q = u.Quantity(value)
        except (TypeError, ValueError) as exc:
            raise ModelSpecError(path, f"'{value}' is not a number or a quantity such as '4000 m/s' ({exc})") from None
        if unit is not None:
            try:
                q = q.to(u.Unit(unit), equivalencies=u.spectral())
            except u.UnitsError:
                raise ModelSpecError(path, f"'{value}' cannot be expressed in the parameter's unit '{unit}'") from None
        return float(q.value), (None if q.unit == u.dimensionless_unscaled and unit is None else q.unit)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ModelSpecError(path, f"expected a number or a quantity string, got {value!r}")
    return float(value), (u.Unit(unit) if unit else None)


@dataclass
class ParameterInfo:
    """One model parameter as fitted: its output name, astropy name, fitting unit and constraints."""

    name: str            # output name: 'mean', or 'line1.mean' in compound models
    astropy_name: str    # name in model.param_names: 'mean' or 'mean_0'
    unit: str            # unit the parameter is fitted and stored in ('' when dimensionless / unitless run)
    fixed: bool
    tied: str | None
    notes: list[str]


@dataclass
class BuiltModel:
    """The unitless astropy model to fit, with what the output needs to know about its parameters."""

    model: Model
    parameters: list[ParameterInfo]

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.parameters]


def build_model(spec: dict[str, Any], *, input_units: list[u.UnitBase | None], data_unit: u.UnitBase | None) -> BuiltModel:
    """Build the unitless model from the validated ``cubefit.model`` settings.

    ``input_units``: the unit of each fitting axis' coordinates (None for pixel coordinates);
    ``data_unit``: the unit of the data values (None when the data have no unit).
    """
    components = spec.get("components")
    if spec.get("class") and components:
        raise ModelSpecError("components", "give either 'class' (one model) or 'components' (a compound model), not both")
    if not spec.get("class") and not components:
        raise ModelSpecError("class", "missing: give 'class' (e.g. Gaussian1D) or a list of 'components'")
    if components:
        leaves, names = [], []
        for i, comp in enumerate(components):
            name = comp.get("name") or f"c{i}"
            if name in names:
                raise ModelSpecError(f"components.{i}.name", f"duplicate component name '{name}'")
            names.append(name)
            leaves.append((name, model_class(comp["class"], f"components.{i}.class"), comp, f"components.{i}"))
        expression = spec.get("expression") or " + ".join(names)
    else:
        leaves = [("", model_class(spec["class"], "class"), spec, "")]
        names = [""]
        expression = None

    # Instantiate leaves with plain numbers first (units are resolved below, once the whole model exists).
    instances: dict[str, Model] = {}
    for name, cls, comp, path in leaves:
        kwargs = dict(comp.get("options") or {})
        unknown = set(comp.get("parameters") or {}) - set(cls.param_names)
        if unknown:
            bad = sorted(unknown)[0]
            raise ModelSpecError(f"{_join(path, 'parameters')}.{bad}", f"{cls.__name__} has no parameter '{bad}'",
                                 ", ".join(cls.param_names))
        try:
            instances[name] = cls(name=name or None, **kwargs)
        except TypeError as exc:
            raise ModelSpecError(_join(path, "options"), f"cannot create {cls.__name__}: {exc}") from None
    model = _combine(expression, instances) if expression else instances[""]
    n_inputs = len(input_units)
    if model.n_inputs != n_inputs:
        raise ModelSpecError("class" if not components else "components",
                             f"the model takes {model.n_inputs} input(s) but {n_inputs} fitting axis/axes were given")

    # The unit each parameter is fitted in, by astropy's own rule for data of these units.
    in_units = {inp: (unit or u.dimensionless_unscaled) for inp, unit in zip(model.inputs, input_units)}
    out_units = {out: (data_unit or u.dimensionless_unscaled) for out in model.outputs}
    try:
        fit_units = model._parameter_units_for_data_units(in_units, out_units)
    except Exception:  # noqa: BLE001 - models without a units rule: parameters are taken as written
        fit_units = {}
    any_units = any(unit is not None for unit in input_units) or data_unit is not None

    infos = []
    tied_specs: dict[str, str] = {}
    for index, (name, cls, comp, path) in enumerate(leaves):
        pspecs = comp.get("parameters") or {}
        leaf = instances[name]
        for pname in cls.param_names:
            astropy_name = pname if not components else f"{pname}_{index}"
            out_name = pname if not components else f"{name}.{pname}"
            pspec = pspecs.get(pname) or {}
            ppath = f"{_join(path, 'parameters')}.{pname}"
            target = fit_units.get(astropy_name)
            target = None if target is None or (not any_units) else u.Unit(target)
            notes: list[str] = []
            value = pspec.get("value")
            if value is None:
                value = getattr(leaf, pname).default
                if value is None:
                    raise ModelSpecError(ppath, "needs an initial value")
            number = _to_fit_unit(value, pspec.get("unit"), target, f"{ppath}.value", notes, "value")
            param = getattr(model, astropy_name)
            if pspec.get("bounds") is None:
                # keep the model's own defaults (e.g. Gaussian1D's stddev > 0), exactly as astropy would
                low, high = param.bounds
            else:
                bounds = list(pspec["bounds"])
                low = None if bounds[0] is None else _to_fit_unit(bounds[0], pspec.get("unit"), target,
                                                                  f"{ppath}.bounds.0", notes, "lower bound")
                high = None if bounds[1] is None else _to_fit_unit(bounds[1], pspec.get("unit"), target,
                                                                   f"{ppath}.bounds.1", notes, "upper bound")
            if low is not None and high is not None and low >= high:
                raise ModelSpecError(f"{ppath}.bounds", f"lower bound {low:g} is not below upper bound {high:g}"
                                     + (f" ({target})" if target is not None else ""))
            if (low is not None and number < low) or (high is not None and number > high):
                raise ModelSpecError(f"{ppath}.value", f"initial value {number:g} lies outside the bounds "
                                     f"[{_fmt(low)}, {_fmt(high)}]" + (f" {target}" if target is not None else ""))
            param.value = number
            param.bounds = (low, high)
            param.fixed = bool(pspec.get("fixed", False))
            if pspec.get("tied"):
                tied_specs[astropy_name] = pspec["tied"]
            infos.append(ParameterInfo(out_name, astropy_name, "" if target is None else target.to_string(),
                                       param.fixed, pspec.get("tied"), notes))
    for key, expression_text in (spec.get("tied") or {}).items():
        astropy_name = _resolve_parameter(key, infos, "tied")
        tied_specs[astropy_name] = expression_text
        next(p for p in infos if p.astropy_name == astropy_name).tied = expression_text
    for astropy_name, expression_text in tied_specs.items():
        getattr(model, astropy_name).tied = _tied_function(expression_text, infos, astropy_name)
    return BuiltModel(model, infos)


def _to_fit_unit(value: Any, unit: str | None, target: u.UnitBase | None, path: str, notes: list[str],
                 what: str) -> float:
    number, given = parse_quantity(value, unit, path)
    if target is None:
        if given is not None and not given.is_equivalent(u.dimensionless_unscaled):
            raise ModelSpecError(path, f"{what} is given in '{given}' but the fit has no units here (pixel "
                                       "coordinates or unitless data): give a plain number or set world/data units")
        return number if given is None else float((number * given).to_value(u.dimensionless_unscaled))
    if given is None:
        return number  # a bare number is taken to be in the fitting unit already
    try:
        converted = float((number * given).to_value(target, equivalencies=u.spectral()))
    except u.UnitsError:
        raise ModelSpecError(path, f"{what} in '{given}' cannot be converted to the fitting unit '{target}'") from None
    if given != target:
        notes.append(f"{what} {number:g} {given} = {converted:g} {target}")
    return converted


def _fmt(value: float | None) -> str:
    return "-inf" if value is None else f"{value:g}"


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _combine(expression: str, instances: dict[str, Model]) -> Model:
    try:
        tree = ast.parse(expression, mode="eval").body
    except SyntaxError as exc:
        raise ModelSpecError("expression", f"'{expression}' is not a valid expression ({exc.msg})") from None

    def build(node: ast.AST) -> Model:
        if isinstance(node, ast.Name):
            if node.id not in instances:
                raise ModelSpecError("expression", f"unknown component '{node.id}'", ", ".join(instances))
            return instances[node.id]
        if isinstance(node, ast.BinOp) and type(node.op) in _MODEL_OPERATORS:
            return _MODEL_OPERATORS[type(node.op)](build(node.left), build(node.right))
        raise ModelSpecError("expression", f"only component names combined with + - * / ** are allowed, "
                                           f"not '{ast.unparse(node)}'")

    used = [n.id for n in ast.walk(tree) if isinstance(n, ast.Name)]
    if sorted(used) != sorted(set(used)) or set(used) != set(instances):
        raise ModelSpecError("expression", "the expression must use every component exactly once",
                             ", ".join(instances))
    return build(tree)


def _resolve_parameter(reference: str, infos: list[ParameterInfo], path: str) -> str:
    for info in infos:
        if reference in (info.name, info.astropy_name):
            return info.astropy_name
    raise ModelSpecError(path, f"unknown parameter '{reference}'", ", ".join(i.name for i in infos))


def _tied_function(text: str, infos: list[ParameterInfo], target: str) -> Callable[[Model], Any]:
    """A picklable-free closure computing a tied parameter from the others."""
    try:
        tree = ast.parse(str(text), mode="eval").body
    except SyntaxError as exc:
        raise ModelSpecError(f"tied.{target}", f"'{text}' is not a valid expression ({exc.msg})") from None

    def compile_node(node: ast.AST) -> Callable[[Model], Any]:
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
            return lambda model, v=float(node.value): v
        if isinstance(node, (ast.Name, ast.Attribute)):
            reference = ast.unparse(node)
            name = _resolve_parameter(reference, infos, f"tied.{target}")
            if name == target:
                raise ModelSpecError(f"tied.{target}", "a parameter cannot be tied to itself")
            return lambda model, n=name: getattr(model, n).value
        if isinstance(node, ast.BinOp) and type(node.op) in _TIED_OPERATORS:
            left, right, op = compile_node(node.left), compile_node(node.right), _TIED_OPERATORS[type(node.op)]
            return lambda model: op(left(model), right(model))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            inner = compile_node(node.operand)
            return lambda model: -inner(model)
        raise ModelSpecError(f"tied.{target}", f"'{ast.unparse(node)}' is not allowed in a tied expression "
                                               "(parameters, numbers and + - * / ** only)")

    return compile_node(tree)
