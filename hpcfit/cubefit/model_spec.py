"""Turn the YAML model description into a unitless astropy model fitted in known units.

The user writes values and bounds in whatever units they like (``mean: {value: 4000, unit: m/s, bounds:
["3 km/s", "6 km/s"]}``). Fitting happens without units, in the units the data imply: the world unit of the
fitting axes and the data unit, mapped to each parameter by the model's own ``_parameter_units_for_data_units``
(the rule astropy's fitters use). Values *and bounds* are converted to those units here. astropy converts the
values but applies bound numbers unchanged (astropy issue #18705); hpcfit converts both and reports the unit
each parameter was fitted in.

Tied parameters are written as arithmetic expressions over other parameters (``line2.stddev: line1.stddev``,
``line2.mean: "line1.mean * 1.05"``), parsed with a whitelist (no ``eval`` of user text).

``class`` names a built-in astropy model (``Gaussian1D``), or ``package.module:Name`` naming a user's model
class (a ``Fittable*Model`` subclass or one made with ``custom_model``) or model *instance*, imported on every
rank; from Python it may be the class or instance itself. A parameter's ``value`` may be a map of initial values
(an ``.npy`` path in YAML, an array in Python) over the iterating axes; ``BuiltModel.initial_maps`` keeps them.
"""

from __future__ import annotations

import ast
import difflib
import importlib
import operator
from pathlib import Path
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
from astropy import units as u
from astropy.modeling import CompoundModel, Fittable1DModel, Fittable2DModel, FittableModel, Model, models

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


_USER_MODEL_ALLOWED = ("a built-in astropy model name (e.g. Gaussian1D), or 'package.module:Name' naming a "
                       "Fittable1DModel/Fittable2DModel subclass, a custom_model class or a model instance, "
                       "importable on every rank")


def resolve_model(ref: Any, path: str) -> "type[Model] | Model":
    """What a ``class`` key names: a model class, or a model instance used as a template (copied, never changed).

    ``ref`` is a built-in name, ``'package.module:Name'`` (imported here), or (from Python) a class or instance.
    """
    if isinstance(ref, Model):
        return _checked_model(ref, path, repr(ref))
    if isinstance(ref, type):
        return _checked_model(ref, path, ref.__name__)
    if not isinstance(ref, str):
        raise ModelSpecError(path, f"expected a model name, got {type(ref).__name__} {ref!r}", _USER_MODEL_ALLOWED)
    if ":" not in ref:
        return model_class(ref, path)
    module_name, _, attribute = ref.partition(":")
    if not module_name or not attribute:
        raise ModelSpecError(path, f"'{ref}' is not of the form 'package.module:Name'", _USER_MODEL_ALLOWED)
    try:
        obj: Any = importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001 - ImportError, or the user's module failing while it loads
        raise ModelSpecError(path, f"cannot import module '{module_name}' for '{ref}' "
                                   f"({type(exc).__name__}: {exc}); it must be importable on every rank "
                                   "(installed, or on PYTHONPATH)", _USER_MODEL_ALLOWED) from None
    for part in attribute.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ModelSpecError(path, f"module '{module_name}' has no attribute '{attribute}' (for '{ref}')",
                                 _USER_MODEL_ALLOWED) from None
    return _checked_model(obj, path, ref)


def _checked_model(obj: Any, path: str, label: str) -> "type[Model] | Model":
    if isinstance(obj, type) and issubclass(obj, FittableModel):
        if not obj.param_names:
            raise ModelSpecError(path, f"'{label}' has no parameters to fit", _USER_MODEL_ALLOWED)
        return obj
    if isinstance(obj, Model):
        if not obj.param_names:
            raise ModelSpecError(path, f"'{label}' has no parameters to fit", _USER_MODEL_ALLOWED)
        if len(obj) != 1:
            raise ModelSpecError(path, f"'{label}' is a model set of {len(obj)} models; give one model",
                                 _USER_MODEL_ALLOWED)
        return obj
    found = f"a class that is not a fittable astropy model ({obj.__name__})" if isinstance(obj, type) else \
        f"a {type(obj).__name__}, not an astropy model class or instance"
    raise ModelSpecError(path, f"'{label}' is {found}", _USER_MODEL_ALLOWED)


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
    #: astropy parameter name -> per-fit initial values over the iterating axes (shape = iterating axes),
    #: in the parameter's fitting unit
    initial_maps: dict[str, Any] = field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.parameters]


def build_model(spec: dict[str, Any], *, input_units: list[u.UnitBase | None], data_unit: u.UnitBase | None,
                iter_shape: tuple[int, ...] | None = None) -> BuiltModel:
    """Build the unitless model from the validated ``cubefit.model`` settings.

    ``input_units``: the unit of each fitting axis' coordinates (None for pixel coordinates);
    ``data_unit``: the unit of the data values (None when the data have no unit);
    ``iter_shape``: the shape of the iterating axes, which maps of initial values must have (None: not checked).
    """
    components = spec.get("components")
    if spec.get("class") is not None and components:
        raise ModelSpecError("components", "give either 'class' (one model) or 'components' (a compound model), not both")
    if spec.get("class") is None and not components:
        raise ModelSpecError("class", "missing: give 'class' (e.g. Gaussian1D) or a list of 'components'")
    if components:
        leaves, names = [], []
        for i, comp in enumerate(components):
            name = comp.get("name") or f"c{i}"
            if name in names:
                raise ModelSpecError(f"components.{i}.name", f"duplicate component name '{name}'")
            names.append(name)
            ref = resolve_model(comp["class"], f"components.{i}.class")
            if isinstance(ref, CompoundModel):
                raise ModelSpecError(f"components.{i}.class", "a compound model instance cannot be a component; "
                                     "give its parts as components (or pass it as the single 'class')")
            leaves.append((name, ref, comp, f"components.{i}"))
        expression = spec.get("expression") or " + ".join(names)
    else:
        leaves = [("", resolve_model(spec["class"], "class"), spec, "")]
        names = [""]
        expression = None

    # Instantiate leaves with plain numbers first (units are resolved below, once the whole model exists).
    instances: dict[str, Model] = {}
    for name, ref, comp, path in leaves:
        kwargs = dict(comp.get("options") or {})
        if isinstance(ref, Model):
            if kwargs:
                raise ModelSpecError(_join(path, "options"), "options are constructor arguments of a model class; "
                                     "the model given is an instance, already constructed")
            instances[name] = _template_copy(ref, name or None, _join(path, "class"))
        else:
            try:
                instances[name] = ref(name=name or None, **kwargs)
            except TypeError as exc:
                raise ModelSpecError(_join(path, "options"), f"cannot create {ref.__name__}: {exc}") from None
        # checked on the instance: some classes' parameters depend on options (Polynomial1D's degree)
        unknown = set(comp.get("parameters") or {}) - set(instances[name].param_names)
        if unknown:
            bad = sorted(unknown)[0]
            raise ModelSpecError(f"{_join(path, 'parameters')}.{bad}",
                                 f"{type(instances[name]).__name__} has no parameter '{bad}'",
                                 ", ".join(instances[name].param_names))
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
    maps: dict[str, Any] = {}
    tied_specs: dict[str, str] = {}
    # a leaf's parameters are suffixed by its position in the compound model (expression order, not list order)
    positions = {id(leaf): k for k, leaf in enumerate(getattr(model, "_leaflist", None) or [model])}
    for index, (name, ref, comp, path) in enumerate(leaves):
        pspecs = comp.get("parameters") or {}
        leaf = instances[name]
        template = ref if isinstance(ref, Model) else None
        for pname in leaf.param_names:
            astropy_name = pname if not components else f"{pname}_{positions.get(id(leaf), index)}"
            out_name = pname if not components else f"{name}.{pname}"
            pspec = pspecs.get(pname) or {}
            ppath = f"{_join(path, 'parameters')}.{pname}"
            target = fit_units.get(astropy_name)
            target = None if target is None or (not any_units) else u.Unit(target)
            notes: list[str] = []
            value, unit, bounds = pspec.get("value"), pspec.get("unit"), pspec.get("bounds")
            template_param = getattr(template, pname) if template is not None else None
            if template_param is not None:  # an instance: its values, unit and bounds unless the config overrides
                if value is None:
                    value = template_param.value if np.ndim(template_param.value) else float(template_param.value)
                if unit is None and template_param.unit is not None:
                    unit = template_param.unit.to_string()
                if bounds is None and template_param.unit is not None:
                    bounds = list(template_param.bounds)
            if value is None:  # the value the class gave it (its default, or one set through options)
                current = getattr(leaf, pname).value
                if current is None or np.ndim(current) != 0:
                    raise ModelSpecError(ppath, "needs an initial value")
                value = float(current)
            param = getattr(model, astropy_name)
            if bounds is None:
                # keep the model's own defaults (e.g. Gaussian1D's stddev > 0), exactly as astropy would
                low, high = param.bounds
            else:
                bounds = list(bounds)
                low = None if bounds[0] is None else _to_fit_unit(bounds[0], unit, target,
                                                                  f"{ppath}.bounds.0", notes, "lower bound")
                high = None if bounds[1] is None else _to_fit_unit(bounds[1], unit, target,
                                                                   f"{ppath}.bounds.1", notes, "upper bound")
            if low is not None and high is not None and low >= high:
                raise ModelSpecError(f"{ppath}.bounds", f"lower bound {low:g} is not below upper bound {high:g}"
                                     + (f" ({target})" if target is not None else ""))
            if _is_map(value):
                values = _initial_map(value, unit, target, f"{ppath}.value", notes, iter_shape, low, high)
                maps[astropy_name] = values
                number = float(np.median(values))  # the template's value (logs, plots); each fit starts at its own
            else:
                number = _to_fit_unit(value, unit, target, f"{ppath}.value", notes, "value")
                if (low is not None and number < low) or (high is not None and number > high):
                    raise ModelSpecError(f"{ppath}.value", f"initial value {number:g} lies outside the bounds "
                                         f"[{_fmt(low)}, {_fmt(high)}]" + (f" {target}" if target is not None else ""))
            param.value = number
            param.bounds = (low, high)
            fixed_default = bool(template_param.fixed) if template_param is not None else False
            param.fixed = bool(pspec.get("fixed")) or fixed_default
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
    for info in infos:  # ties an instance brought along (callables) are kept: astropy's per-fit path honours them
        if not info.tied and model.tied.get(info.astropy_name):
            info.tied = "(tied on the model instance)"
    # in the model's parameter order, which is the order of every fitted parameter array
    order = {name: k for k, name in enumerate(model.param_names)}
    infos.sort(key=lambda info: order[info.astropy_name])
    return BuiltModel(model, infos, maps)


def spec_from_model(model: Model) -> dict[str, Any]:
    """The ``cubefit.model`` settings for an astropy model instance (or class): ``{'class': model}``.

    Its values (scalars or maps over the iterating axes), units, bounds, fixed flags and ties are taken from the
    instance when the model is built (:func:`build_model`); the instance is copied, never modified.
    """
    resolve_model(model, "class")  # fail early, with the same message as the config path
    return {"class": model, "parameters": {}, "options": {}, "components": None, "expression": None, "tied": {}}


_CONSTRUCTOR_SKIP = {"self", "name", "meta", "bounds", "fixed", "tied", "n_models", "model_set_axis", "inverse"}


def _template_copy(ref: Model, name: str | None, path: str) -> Model:
    """A copy of a model instance with scalar, unitless parameters (values are set by the caller).

    A plain copy when it has them already; otherwise a new instance of its class with the same constructor
    arguments (e.g. Polynomial1D's degree), bounds, fixed flags and ties.
    """
    plain = all(np.ndim(getattr(ref, n).value) == 0 and getattr(ref, n).unit is None for n in ref.param_names)
    if plain:
        leaf = ref.copy()
    else:
        if isinstance(ref, CompoundModel):
            raise ModelSpecError(path, "a compound model instance needs scalar, unitless parameters; give array "
                                       "initial values or units on its parts (components) instead")
        import inspect

        kwargs: dict[str, Any] = {}
        for arg, info in inspect.signature(type(ref).__init__).parameters.items():
            if info.kind in (info.VAR_POSITIONAL, info.VAR_KEYWORD) or arg in _CONSTRUCTOR_SKIP:
                continue
            if arg in ref.param_names:
                kwargs[arg] = float(np.ravel(getattr(ref, arg).value)[0])
            elif hasattr(ref, arg):
                kwargs[arg] = getattr(ref, arg)
        try:
            leaf = type(ref)(**kwargs)
        except Exception as exc:  # noqa: BLE001 - an unusual constructor: say what to do instead
            raise ModelSpecError(path, f"cannot make a scalar, unitless copy of the {type(ref).__name__} instance "
                                       f"({type(exc).__name__}: {exc}); give scalar unitless values on it and "
                                       "maps/units through 'parameters'") from None
        for pname in ref.param_names:
            getattr(leaf, pname).fixed = getattr(ref, pname).fixed
            if getattr(ref, pname).tied:
                getattr(leaf, pname).tied = getattr(ref, pname).tied
            if getattr(ref, pname).unit is None:
                getattr(leaf, pname).bounds = getattr(ref, pname).bounds
    if name is not None:
        leaf.name = name
    return leaf


def _is_map(value: Any) -> bool:
    if isinstance(value, Path):
        return True
    if isinstance(value, str):
        return value.strip().lower().endswith(".npy")
    return isinstance(value, (np.ndarray, list, tuple)) and np.ndim(value) > 0


def _initial_map(value: Any, unit: str | None, target: u.UnitBase | None, path: str, notes: list[str],
                 iter_shape: tuple[int, ...] | None, low: float | None, high: float | None) -> np.ndarray:
    """Per-fit initial values from an .npy path or an array, validated and converted to the fitting unit."""
    if isinstance(value, (str, Path)):
        file = Path(value)
        if not file.is_file():
            raise ModelSpecError(path, f"map of initial values '{file}' does not exist",
                                 "a number, a quantity string, or the path of an .npy array over the iterating axes")
        try:
            values = np.load(file, allow_pickle=False)
        except Exception as exc:  # noqa: BLE001 - any unreadable file is the user's to fix
            raise ModelSpecError(path, f"cannot read '{file}' as an .npy array ({type(exc).__name__}: {exc})") from None
        where = f"'{file}'"
    else:
        values = value
        where = "the array"
    if isinstance(values, u.Quantity):
        if unit is None:
            unit = values.unit.to_string()
        values = values.value
    try:
        values = np.asarray(values, dtype=float)
    except (TypeError, ValueError):
        raise ModelSpecError(path, f"{where} does not hold numbers (dtype {np.asarray(values).dtype})") from None
    if iter_shape is not None and values.shape != tuple(iter_shape):
        raise ModelSpecError(path, f"{where} has shape {values.shape}, but initial values need the shape of the "
                                   f"iterating (non-fitting) axes {tuple(iter_shape)}")
    if not np.all(np.isfinite(values)):
        raise ModelSpecError(path, f"{where} holds {int(np.count_nonzero(~np.isfinite(values)))} non-finite "
                                   "value(s); every fit needs a finite initial value")
    values = _map_to_fit_unit(values, unit, target, path)
    outside = ((values < low) if low is not None else False) | ((values > high) if high is not None else False)
    if np.any(outside):
        raise ModelSpecError(path, f"{int(np.count_nonzero(outside))} initial value(s) in {where} lie outside the "
                                   f"bounds [{_fmt(low)}, {_fmt(high)}]" + (f" {target}" if target is not None else ""))
    if unit is not None and target is not None and u.Unit(unit) != target:
        notes.append(f"initial value map {where} from {unit} to {target}")
    return values


def _map_to_fit_unit(values: np.ndarray, unit: str | None, target: u.UnitBase | None, path: str) -> np.ndarray:
    if unit is None:
        return values
    try:
        given = u.Unit(unit)
    except ValueError:
        raise ModelSpecError(path, f"'{unit}' is not a unit astropy understands") from None
    goal = target if target is not None else u.dimensionless_unscaled
    try:
        return np.asarray((values * given).to_value(goal, equivalencies=u.spectral()), dtype=float)
    except u.UnitsError:
        raise ModelSpecError(path, f"initial values in '{given}' cannot be converted to the fitting unit "
                                   f"'{goal}'") from None


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
