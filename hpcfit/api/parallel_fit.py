"""``hpcfit.parallel_fit``: astropy's ``parallel_fit_dask`` with hpcfit's cubefit underneath.

Same keywords and same answer (the model with one array per parameter, shaped like the map, failed fits NaN;
``fitter.fit_info`` a ``FitInfoArrayContainer`` when ``fit_info`` is asked for), with ``scheduler`` replaced by
``ranks``:

* ``ranks=None``: fit in this process, chunk after chunk, with the batched solver: the cubefit job's own work
  function (:func:`hpcfit.cubefit.rows.fit_range`), its world coordinates, its diagnostics; no MPI.
* ``ranks=N``: write the inputs and a cubefit config into a folder, run ``mpiexec -n N python -m hpcfit run`` there
  (``launcher`` or ``$HPCFIT_MPIEXEC``), and read the output back with :class:`hpcfit.cubefit.result.CubefitResult`.

Units follow astropy: the model's units are stripped with ``without_units_for_data`` for the data's and the world's
units and put back with ``with_units_from_data``, so parameters (and their bounds) mean what they mean to astropy.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

DEFAULT_LAUNCHER = ("mpiexec", "-n", "{n}")
_FITTER_KEYWORDS = ("maxiter", "acc", "epsilon", "estimate_jacobian")


@dataclass
class _Inputs:
    """The call's inputs, normalised: what both paths need."""

    data: Any              # ndarray, or None when read from ``path``
    path: str | None       # the data file when ``data`` was given as a path
    hdu: Any
    dataset: str | None
    shape: tuple[int, ...]
    header: Any            # FITS header holding the WCS (from the file, or ``wcs.to_header()``), else None
    data_unit: Any
    weights: np.ndarray | None
    mask: np.ndarray | None
    fitting_axes: tuple[int, ...]
    world_spec: dict[str, Any]      # cubefit.world settings (arrays as ndarrays)
    nd_world: list[np.ndarray] | None  # N-d world arrays (in-process only)


def parallel_fit(*, model: Any, fitter: Any, data: Any, data_unit: Any = None, weights: Any = None,
                 mask: Any = None, fitting_axes: int | tuple[int, ...] | None = None, world: Any = None,
                 chunk_n_max: int | None = None, diagnostics: str | None = None,
                 diagnostics_path: str | Path | None = None, diagnostics_callable: Callable[..., Any] | None = None,
                 fitter_kwargs: dict[str, Any] | None = None, equivalencies: Any = None,
                 fit_info: bool | str | tuple[str, ...] | list[str] = False, ranks: int | None = None,
                 launcher: list[str] | tuple[str, ...] | str | None = None, solver: str = "batched",
                 non_finite: str = "mask", hdu: int | str = 0, dataset: str | None = None,
                 workdir: str | Path | None = None) -> Any:
    """Fit ``model`` to every spectrum (or plane) of ``data``; see astropy's ``parallel_fit_dask`` for the
    shared keywords and ``docs/python_api_cubefit.md`` for a worked example.

    hpcfit's own keywords: ``ranks`` (None: this process; N: ``mpiexec -n N``), ``launcher`` (the MPI launch
    command, ``{n}`` standing for ``ranks``; default ``$HPCFIT_MPIEXEC`` or ``mpiexec -n {n}``), ``solver``
    (``batched`` or ``astropy``: astropy's fitter once per spectrum), ``non_finite`` (``mask`` NaN samples, or
    ``fail`` the fit), ``hdu``/``dataset`` (when ``data`` is a FITS/HDF5 path), ``workdir`` (the folder of a
    ``ranks=N`` run, kept; default a temporary folder, removed).
    """
    from hpcfit.cubefit.fitted_model import fitted_model, units_rename

    if diagnostics not in (None, "error", "error+warn", "all"):
        raise ValueError("diagnostics should be None, 'error', 'error+warn', or 'all'")
    if diagnostics is not None:
        if diagnostics_path is None:
            raise ValueError("diagnostics_path should be set")
        Path(diagnostics_path).mkdir(parents=True, exist_ok=True)
    if solver not in ("batched", "astropy"):
        raise ValueError(f"solver must be 'batched' or 'astropy', not {solver!r}")
    if non_finite not in ("mask", "fail"):
        raise ValueError(f"non_finite must be 'mask' or 'fail', not {non_finite!r}")
    if ranks is not None and (not isinstance(ranks, int) or isinstance(ranks, bool) or ranks < 1):
        raise ValueError(f"ranks must be None (this process) or a positive int, not {ranks!r}")
    if ranks is not None and diagnostics_callable is not None:
        raise ValueError("diagnostics_callable runs in this process: use it with ranks=None")

    inputs = _normalise_inputs(model, data, data_unit, weights, mask, fitting_axes, world, hdu, dataset)
    fitter_name, settings = _fitter_settings(fitter, fitter_kwargs)
    info_keys = _fit_info_keys(fit_info, fitter_name, settings, ranks)

    world_obj = _build_world(inputs, model, equivalencies)
    has_units = model._has_units or inputs.data_unit is not None
    rename = units_rename(model, world_obj.fitting_units, inputs.data_unit) if has_units else None
    unitless = model.without_units_for_data(**rename) if rename is not None else model
    iter_shape = tuple(inputs.shape[i] for i in range(len(inputs.shape)) if i not in inputs.fitting_axes)
    unitless, initial_maps = _initial_values(unitless, iter_shape)

    from hpcfit.cubefit.fitters import fit_info_keys

    numeric = [k for k in info_keys if k not in ("message", "param_cov", "success")]
    if "message" in info_keys and "status" in fit_info_keys(fitter_name, settings) and "status" not in numeric:
        numeric.append("status")  # a converged fit's message follows from its termination status
    need_cov = "param_cov" in info_keys
    if ranks is None:
        params, status, numbers, cov, messages = _fit_here(
            inputs, world_obj, unitless, initial_maps, rename, fitter_name, settings, solver, non_finite, numeric,
            need_cov, chunk_n_max, diagnostics, diagnostics_path, diagnostics_callable, fitter_kwargs or {})
    else:
        params, status, numbers = _fit_with_mpi(
            inputs, unitless, initial_maps, fitter_name, settings, solver, non_finite, numeric, chunk_n_max,
            diagnostics, diagnostics_path, ranks, launcher, workdir)
        cov, messages = None, {}

    values = {name: params[:, k].reshape(iter_shape) for k, name in enumerate(unitless.param_names)}
    result = fitted_model(unitless, values, rename)
    if info_keys:
        from astropy.modeling.fitting import FitInfoArrayContainer

        fitter.fit_info = FitInfoArrayContainer(
            _fit_info_array(info_keys, iter_shape, status, numbers, cov, messages))
    return result


# -- inputs -----------------------------------------------------------------------------------------------------
def _normalise_inputs(model: Any, data: Any, data_unit: Any, weights: Any, mask: Any, fitting_axes: Any,
                      world: Any, hdu: Any, dataset: str | None) -> _Inputs:
    from astropy import units as u
    from astropy.nddata import NDData, NDUncertainty, StdDevUncertainty

    path = None
    header = None
    if isinstance(data, NDData):  # what astropy's support_nddata does for parallel_fit_dask
        world = data.wcs if world is None else world
        weights = data.uncertainty if weights is None else weights
        mask = data.mask if mask is None else mask
        data_unit = data.unit if data_unit is None else data_unit
        data = data.data
    if isinstance(data, (str, os.PathLike)):
        from hpcfit.cubefit.arrays import ArraySourceError, describe_array

        try:
            info = describe_array(str(data), hdu=hdu, dataset=dataset)
        except ArraySourceError as exc:
            raise ValueError(f"data: {exc}") from None
        path, shape = str(Path(data).resolve()), info.shape
        if data_unit is None and info.unit:
            data_unit = u.Unit(info.unit)
        if world is None and info.header is not None and any(k.startswith("CTYPE") for k in info.header):
            header = info.header  # a FITS file's own WCS, as `world: auto` in a config
        data = None
    else:
        if isinstance(data, u.Quantity):
            data_unit = data.unit if data_unit is None else data_unit
            data = data.value
        data = np.asarray(data)
        shape = data.shape
    data_unit = None if data_unit is None else u.Unit(data_unit)
    if isinstance(weights, NDUncertainty):
        weights = 1 / weights.represent_as(StdDevUncertainty).array
    weights = None if weights is None else np.broadcast_to(np.asarray(weights, dtype=float), shape)
    mask = None if mask is None else np.broadcast_to(np.asarray(mask, dtype=bool), shape)

    ndim = len(shape)
    axes = fitting_axes if isinstance(fitting_axes, tuple) else (fitting_axes,)
    if any(a is None for a in axes):
        raise ValueError("fitting_axes is required: the axis (or axes) holding one fit's data, e.g. fitting_axes=0")
    if model.n_inputs != len(axes):
        raise ValueError(f"Model is {model.n_inputs}-dimensional, but got {len(axes)} value(s) in fitting_axes=")
    for a in axes:
        if a <= -ndim or a > ndim - 1:
            raise ValueError(f"Fitting index {a} out of range for {ndim}-dimensional data")
    axes = tuple(a % ndim for a in axes)
    if len(set(axes)) != len(axes) or len(axes) >= ndim:
        raise ValueError(f"fitting_axes {axes} must be distinct and leave at least one axis of the {ndim}-d data "
                         "to iterate over")

    spec: dict[str, Any] = {"source": "pixel", "arrays": None, "units": None}
    nd_world = None
    if world is not None:
        from astropy.wcs import WCS
        from astropy.wcs.wcsapi import BaseHighLevelWCS, BaseLowLevelWCS

        if isinstance(world, BaseHighLevelWCS) and not isinstance(world, WCS):
            world = world.low_level_wcs
        if isinstance(world, BaseLowLevelWCS):
            if not isinstance(world, WCS):
                raise TypeError(f"world: hpcfit takes a FITS WCS (astropy.wcs.WCS), not {type(world).__name__}; "
                                "pass the world coordinates as a tuple of arrays instead")
            if world.pixel_n_dim != ndim:
                raise ValueError(f"The WCS pixel_n_dim ({world.pixel_n_dim}) does not match the number of "
                                 f"dimensions in the data ({ndim})")
            header = world.to_header()
        elif isinstance(world, tuple):
            if len(world) != len(axes):
                raise ValueError(f"The number of world arrays ({len(world)}) must match number of fitting axes "
                                 f"({len(axes)})")
            units = [getattr(w, "unit", None) for w in world]
            arrays = [np.asarray(getattr(w, "value", w), dtype=float) for w in world]
            if all(a.ndim == 1 for a in arrays):
                for k, (a, axis) in enumerate(zip(arrays, axes)):
                    if a.shape[0] != shape[axis]:
                        raise ValueError(f"world[{k}] has length {a.shape[0]} but data along dimension {axis} has "
                                         f"length {shape[axis]}")
                spec = {"source": "arrays", "arrays": arrays,
                        "units": [None if x is None else x.to_string() for x in units]}
            else:
                for a in arrays:
                    try:
                        np.broadcast_shapes(a.shape, shape)
                    except ValueError:
                        raise ValueError(f"The arrays in the world tuple should be broadcastable to the shape of "
                                         f"the data (expected {shape}), got {a.shape})") from None
                nd_world = arrays
                spec = {"source": "arrays", "arrays": None, "units": [None if x is None else x.to_string()
                                                                      for x in units]}
        else:
            raise TypeError("world should be None, a WCS object or a tuple of arrays")
    if header is not None:
        spec = {"source": "wcs", "arrays": None, "units": None}
    return _Inputs(data, path, hdu, dataset, tuple(shape), header, data_unit, weights, mask, axes, spec, nd_world)


def _build_world(inputs: _Inputs, model: Any, equivalencies: Any) -> Any:
    """hpcfit's World for the call; with a WCS, coordinates are converted to the model's input units (astropy
    converts them when the model declares ``input_units``)."""
    from astropy import units as u

    from hpcfit.cubefit.world import WorldError, build_world, world_from_nd_arrays

    spec = dict(inputs.world_spec)
    if model.input_units is not None:
        wanted = [model.input_units.get(name) for name in model.inputs]
        if spec["source"] == "wcs":
            spec["units"] = [None if unit is None else str(unit) for unit in wanted]
        elif spec["source"] == "arrays":  # arrays with units are converted to the model's input units first
            arrays = inputs.nd_world if inputs.nd_world is not None else spec["arrays"]
            equivalencies = _combine_equivalencies(model, equivalencies)
            converted, units = [], []
            for name, values, given, target in zip(model.inputs, arrays, spec["units"], wanted):
                if given and target is not None:
                    values = u.Unit(given).to(target, values, equivalencies=equivalencies[name])
                    given = target.to_string()
                converted.append(values)
                units.append(given)
            spec["units"] = units
            if inputs.nd_world is not None:
                inputs.nd_world = converted
            else:
                spec["arrays"] = converted
    try:
        if inputs.nd_world is not None:
            units = [u.Unit(x) if x else None for x in spec["units"]]
            inputs.world_spec = spec
            return world_from_nd_arrays(inputs.nd_world, units, shape=inputs.shape, fitting_axes=inputs.fitting_axes)
        world = build_world(spec, shape=inputs.shape, fitting_axes=inputs.fitting_axes, header=inputs.header)
    except WorldError as exc:
        raise ValueError(f"world ({exc.path}): {exc.message}") from None
    inputs.world_spec = spec
    return world


def _combine_equivalencies(model: Any, equivalencies: Any) -> dict[str, Any]:
    """Per-input equivalencies: the model's own plus the caller's (astropy's ``_combine_equivalency_dict``)."""
    from astropy.modeling.utils import _combine_equivalency_dict

    return _combine_equivalency_dict(model.inputs, equivalencies, model.input_units_equivalencies)


def _fitter_settings(fitter: Any, fitter_kwargs: dict[str, Any] | None) -> tuple[str, dict[str, Any]]:
    """The cubefit job's ``fitter`` settings for an astropy fitter object (and the call's ``fitter_kwargs``).

    Every fitter the job runs is taken: the least-squares ones (batched), SLSQP, Simplex and LinearLSQFitter (per
    spectrum through astropy), and ``FittingWithOutlierRemoval`` wrapping one of them with ``sigma_clip``
    (``{class: FittingWithOutlierRemoval, fitter, outlier, niter, sigma}``). Anything else is refused by name.
    """
    from astropy import stats
    from astropy.modeling import fitting

    from hpcfit.cubefit.fitters import FIT_INFO_KEYS, OUTLIER_REMOVAL

    def plain_name(obj: Any, role: str) -> str:
        name = type(obj).__name__
        if name not in FIT_INFO_KEYS or type(obj) is not getattr(fitting, name, None):
            raise TypeError(f"{role}: {name} is not one of the astropy fitters hpcfit reproduces "
                            f"(allowed: {', '.join(FIT_INFO_KEYS)}, or {OUTLIER_REMOVAL} wrapping one of them "
                            "with astropy.stats.sigma_clip)")
        return name

    settings: dict[str, Any] = {}
    if type(fitter) is fitting.FittingWithOutlierRemoval:
        inner = plain_name(fitter.fitter, f"fitter: the fitter {OUTLIER_REMOVAL} wraps")
        if fitter.outlier_func is not stats.sigma_clip:
            raise TypeError(f"fitter: {OUTLIER_REMOVAL} with outlier function "
                            f"{getattr(fitter.outlier_func, '__name__', fitter.outlier_func)!r} is not supported "
                            "(allowed: astropy.stats.sigma_clip)")
        extra = sorted(set(fitter.outlier_kwargs) - {"sigma"})
        if extra:
            raise TypeError(f"fitter: {OUTLIER_REMOVAL} keyword(s) {', '.join(extra)} for sigma_clip not supported "
                            "(allowed: niter, sigma)")
        name = OUTLIER_REMOVAL
        settings = {"class": name, "fitter": inner, "outlier": "sigma_clip", "niter": int(fitter.niter),
                    "sigma": float(fitter.outlier_kwargs.get("sigma", 3.0))}
    else:
        name = plain_name(fitter, "fitter")
        settings = {"class": name}
    kwargs = dict(fitter_kwargs or {})
    kwargs.pop("inplace", None)  # hpcfit never changes the caller's model
    unknown = sorted(set(kwargs) - set(_FITTER_KEYWORDS))
    if unknown:
        raise TypeError(f"fitter_kwargs: {', '.join(unknown)} not supported (allowed: {', '.join(_FITTER_KEYWORDS)})")
    settings.update({"maxiter": int(kwargs.get("maxiter", fitting.DEFAULT_MAXITER)),
                     "acc": float(kwargs.get("acc", fitting.DEFAULT_ACC)),
                     "epsilon": float(kwargs.get("epsilon", fitting.DEFAULT_EPS)),
                     "estimate_jacobian": bool(kwargs.get("estimate_jacobian", False))})
    return name, settings


def _fit_info_keys(fit_info: Any, fitter_name: str, settings: dict[str, Any], ranks: int | None) -> list[str]:
    from hpcfit.cubefit.fitters import BATCHABLE_FITTERS, OUTLIER_REMOVAL, fit_info_keys

    numeric = list(fit_info_keys(fitter_name, settings))
    # the non-numeric entries the astropy fitter itself reports (LinearLSQFitter: no message; only the
    # least-squares fitters give a param_cov)
    inner = settings["fitter"] if fitter_name == OUTLIER_REMOVAL else fitter_name
    extra = ((["message"] if inner != "LinearLSQFitter" else []) + (["param_cov"] if inner in BATCHABLE_FITTERS
                                                                     else [])
             + (["success"] if "status" in numeric else []))
    if fit_info is False or fit_info is None:
        return []
    if fit_info is True:
        return numeric + (extra if ranks is None else [])
    keys = [fit_info] if isinstance(fit_info, str) else list(fit_info)
    allowed = numeric + extra
    for key in keys:
        if key not in allowed:
            raise AttributeError(f"fit_info on fitter has no attribute '{key}' that hpcfit reproduces "
                                 f"(allowed for {fitter_name}: {', '.join(allowed)})")
        if ranks is not None and key in extra:
            raise ValueError(f"fit_info '{key}' is only kept with ranks=None (a ranks=N run stores the numeric "
                             f"entries: {', '.join(numeric)})")
    return keys


def _initial_values(model: Any, iter_shape: tuple[int, ...]) -> tuple[Any, dict[str, np.ndarray]]:
    """The model with scalar parameters and the per-fit starting values of those given as arrays.

    A parameter given an array (broadcastable to the map, as astropy's ``parallel_fit_dask`` takes it) becomes a
    map over the iterating axes (``BuiltModel.initial_maps``, a ``value: <file>.npy`` in a ranks=N config),
    validated as the cubefit job validates one (finite, within the bounds); its scalar stand-in is the median.
    """
    from hpcfit.cubefit.model_spec import ModelSpecError, _initial_map

    maps: dict[str, np.ndarray] = {}
    for name in model.param_names:
        p = getattr(model, name)
        if np.size(p.value) == 1:
            continue
        try:
            values = np.broadcast_to(np.asarray(p.value, dtype=float), iter_shape)
        except ValueError:
            raise ValueError(f"model parameter '{name}' has initial values of shape {np.shape(p.value)}, which do "
                             f"not broadcast to the shape of the iterating axes {iter_shape}") from None
        low, high = p.bounds
        try:
            maps[name] = _initial_map(np.array(values), None, None, name, [], iter_shape, low, high)
        except ModelSpecError as exc:
            raise ValueError(f"model parameter '{name}': {exc.message}") from None
    if not maps:
        return model, maps
    scalar = model.copy()
    scalar._reset_parameters(**{name: float(np.median(maps[name])) if name in maps
                                else float(np.ravel(getattr(model, name).value)[0]) for name in model.param_names})
    return scalar, maps


# -- ranks=None: this process -----------------------------------------------------------------------------------
def _built_model(unitless: Any, rename: Any, initial_maps: dict[str, np.ndarray]) -> Any:
    """The unitless model with what cubefit's output needs to know about each parameter."""
    from hpcfit.cubefit.fitted_model import fitted_model
    from hpcfit.cubefit.model_spec import BuiltModel, ParameterInfo

    with_units = fitted_model(unitless, {n: getattr(unitless, n).value for n in unitless.param_names}, rename) \
        if rename is not None else unitless
    infos = []
    for name in unitless.param_names:
        p = getattr(unitless, name)
        unit = getattr(with_units, name).unit
        infos.append(ParameterInfo(name, name, "" if unit is None else unit.to_string(), bool(p.fixed),
                                   "python" if p.tied else None, []))
    return BuiltModel(unitless, infos, initial_maps)


def _fit_here(inputs: _Inputs, world: Any, unitless: Any, initial_maps: dict[str, np.ndarray], rename: Any,
              fitter_name: str, settings: dict[str, Any],
              solver: str, non_finite: str, numeric: list[str], need_cov: bool, chunk_n_max: int | None,
              diagnostics: str | None, diagnostics_path: Any, diagnostics_callable: Any,
              fitter_kwargs: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray],
                                                      np.ndarray | None, dict[int, str]]:
    from hpcfit.cubefit.arrays import ArraySource
    from hpcfit.cubefit.diagnostics import write_chunk_diagnostics
    from hpcfit.cubefit.fit_chunk import prepare_setup
    from hpcfit.cubefit.rows import InMemory, fit_range
    from hpcfit.runtime.threads import pinned_threads

    built = _built_model(unitless, rename, initial_maps)
    setup = prepare_setup(built, fitter_name=fitter_name, fitter_settings=settings, solver=solver,
                          fit_info_keys=numeric, uncertainties=need_cov,
                          # astropy turns a mask into 0/1 weights handed to the fitter: its covariances are then
                          # taken as absolute, as with real weights
                          absolute_weights=inputs.weights is not None or inputs.mask is not None,
                          non_finite=non_finite)
    source = ArraySource(inputs.path, hdu=inputs.hdu, dataset=inputs.dataset) if inputs.path else InMemory(inputs.data)
    wsource = None if inputs.weights is None else InMemory(inputs.weights)
    msource = None if inputs.mask is None else InMemory(inputs.mask)
    n_fits = int(np.prod([inputs.shape[i] for i in world.iterating_axes]))
    step = chunk_n_max or (2048 if setup.uses_batched else 500)
    params = np.full((n_fits, len(built.parameters)), np.nan)
    status = np.full(n_fits, 2, dtype=np.int8)
    numbers = {key: np.full(n_fits, np.nan) for key in numeric}
    cov = None
    messages: dict[int, str] = {}
    try:
        with pinned_threads(1):  # as the job: one BLAS thread, the same numbers as an MPI run
            for start in range(0, n_fits, step):
                stop = min(start + step, n_fits)
                result, chunk_inputs = fit_range(setup, world, source, wsource, "weights", msource, start, stop)
                params[start:stop] = result.params
                status[start:stop] = result.status
                for key in numeric:
                    numbers[key][start:stop] = result.fit_info[key]
                if need_cov and result.covariance is not None:
                    if cov is None:
                        n_free = result.covariance.shape[1]
                        cov = np.full((n_fits, n_free, n_free), np.nan)
                    cov[start:stop] = result.covariance
                messages.update({start + row: text for row, text in result.messages.items()})
                if diagnostics is not None:
                    callback = None
                    if diagnostics_callable is not None:
                        callback = _diagnostics_callback(diagnostics_callable, unitless, result, chunk_inputs,
                                                         fitter_kwargs)
                    write_chunk_diagnostics(Path(diagnostics_path), diagnostics, setup, world, result, chunk_inputs,
                                            callback=callback)
    finally:
        close = getattr(source, "close", None)
        if close is not None:
            close()
    return params, status, numbers, cov, messages


def _diagnostics_callback(user: Callable[..., Any], unitless: Any, result: Any, inputs: dict[str, Any],
                          fitter_kwargs: dict[str, Any]) -> Callable[[Path, int], None]:
    """astropy's ``diagnostics_callable(path, world, data, weights, model, fitter_kwargs)`` for one fit."""

    def call(folder: Path, row: int) -> None:
        coords = tuple(c if c.ndim == 1 else c[row] for c in inputs["coords"])
        model = None
        if result.status[row] != 2:
            model = unitless.copy()
            model.parameters = result.params[row]
        weights = None if inputs["weights"] is None else inputs["weights"][row]
        user(folder, coords, inputs["y"][row], weights, model, fitter_kwargs)

    return call


# -- ranks=N: mpiexec -------------------------------------------------------------------------------------------
def _launcher(launcher: Any, ranks: int) -> list[str]:
    if launcher is None:
        launcher = os.environ.get("HPCFIT_MPIEXEC") or list(DEFAULT_LAUNCHER)
    parts = shlex.split(launcher) if isinstance(launcher, str) else [str(p) for p in launcher]
    if not any("{n}" in p for p in parts):
        raise ValueError(f"launcher {parts!r} must contain '{{n}}' where the number of ranks goes "
                         "(e.g. ['mpiexec', '-n', '{n}'])")
    return [p.replace("{n}", str(ranks)) for p in parts]


def _class_module(cls: type) -> str:
    """The module defining a model class: custom_model's classes say ``astropy.modeling.core``, their function
    (``evaluate``) knows the user's module."""
    module = cls.__module__
    if module.startswith("astropy.modeling"):
        module = getattr(getattr(cls, "evaluate", None), "__module__", None) or module
    return module


def _class_reference(cls: type) -> str:
    """How a ranks=N config names a model class: its astropy name, or ``module:Name`` that every rank imports."""
    from astropy.modeling import models

    if getattr(models, cls.__name__, None) is cls:
        return cls.__name__
    module_name = _class_module(cls)
    module = sys.modules.get(module_name)
    if module_name == "__main__" or module is None or getattr(module, "__spec__", None) is None:
        raise ValueError(f"model class {cls.__name__} is defined in {module_name!r}, which the ranks of a ranks=N "
                         "run cannot import: a user model class must be importable on every rank (put it in a "
                         "module, e.g. mylines.py, and import it from there), or fit with ranks=None")
    # custom_model's class may live under another name than its __qualname__ (Lorentzian = custom_model(lorentzian))
    names = [cls.__qualname__] + [k for k, v in vars(module).items() if v is cls]
    for name in names:
        obj: Any = module
        for part in name.split("."):
            obj = getattr(obj, part, None)
        if obj is cls:
            return f"{module_name}:{name}"
    raise ValueError(f"model class {cls.__name__} is not reachable as an attribute of its module "
                     f"{module_name!r}: a user model class must be importable on every rank as 'module:Name' "
                     "(give it a module-level name), or fit with ranks=None")


def _module_roots(model: Any) -> list[str]:
    """The folders the ranks need on PYTHONPATH to import the user's model classes as this process did."""
    roots = []
    for leaf in (list(model._leaflist) if model.n_submodels > 1 else [model]):
        name = _class_module(type(leaf))
        file = getattr(sys.modules.get(name), "__file__", None)
        if file is None or name.startswith("astropy."):
            continue
        root = Path(file).resolve().parents[name.count(".")]
        if Path(file).name == "__init__.py":
            root = root.parent
        if str(root) not in roots:
            roots.append(str(root))
    return roots


def _model_config(model: Any, initial_maps: dict[str, np.ndarray], folder: Path) -> dict[str, Any]:
    """The ``cubefit.model`` settings of a unitless model (values and bounds in the units it is fitted in); the
    per-fit starting values are written as ``initial_<name>.npy`` in ``folder`` and named as the value."""
    leaves = list(model._leaflist) if model.n_submodels > 1 else [model]
    compound = model.n_submodels > 1

    def describe(index: int, leaf: Any) -> dict[str, Any]:
        entry: dict[str, Any] = {"class": _class_reference(type(leaf)), "parameters": {}}
        if hasattr(leaf, "degree"):
            entry["options"] = {"degree": int(leaf.degree)}
        for pname in leaf.param_names:
            full = f"{pname}_{index}" if compound else pname
            p = getattr(model, full)
            if p.tied:
                raise ValueError(f"model parameter '{full}' is tied by a Python function: a ranks=N run cannot take "
                                 "it; fit with ranks=None, or write the model as a cubefit config (tied: 'a.b * 2')")
            low, high = p.bounds
            value: Any = float(p.value)
            if full in initial_maps:
                file = folder / f"initial_{full}.npy"
                np.save(file, np.ascontiguousarray(initial_maps[full], dtype=np.float64))
                value = str(file.resolve())
            entry["parameters"][pname] = {"value": value,
                                          "bounds": [None if low is None else float(low),
                                                     None if high is None else float(high)],
                                          "fixed": bool(p.fixed)}
        return entry

    if not compound:
        return describe(0, model)
    components = []
    for i, leaf in enumerate(leaves):
        entry = describe(i, leaf)
        entry["name"] = f"c{i}"
        components.append(entry)
    return {"components": components,
            "expression": model._format_expression(format_leaf=lambda i, leaf: f"c{i}")}


def _fit_with_mpi(inputs: _Inputs, unitless: Any, initial_maps: dict[str, np.ndarray], fitter_name: str,
                  settings: dict[str, Any], solver: str,
                  non_finite: str, numeric: list[str], chunk_n_max: int | None, diagnostics: str | None,
                  diagnostics_path: Any, ranks: int, launcher: Any,
                  workdir: Any) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    import yaml
    from astropy import units as u

    from hpcfit.cubefit.result import CubefitResult

    if inputs.nd_world is not None:
        raise NotImplementedError("N-d world arrays are fitted with ranks=None only (a cubefit config takes one "
                                  "1-D coordinate array per fitting axis)")
    command = _launcher(launcher, ranks)
    for leaf in (list(unitless._leaflist) if unitless.n_submodels > 1 else [unitless]):
        _class_reference(type(leaf))  # refuse an unimportable class before anything is written
    temporary = tempfile.TemporaryDirectory(prefix="hpcfit-parallel-fit-") if workdir is None else None
    folder = Path(temporary.name if temporary is not None else workdir)
    folder.mkdir(parents=True, exist_ok=True)
    try:
        model_cfg = _model_config(unitless, initial_maps, folder)
        cfg: dict[str, Any] = {"job": "cubefit", "output": "parallel_fit.h5", "run": {"overwrite": True}}
        c: dict[str, Any] = {"fitting_axes": list(inputs.fitting_axes), "model": model_cfg,
                             "fitter": dict(settings), "solver": solver, "non_finite": non_finite,
                             "fit_info": numeric, "uncertainties": False}
        if inputs.path is not None:
            c["data"] = {"path": inputs.path, "hdu": inputs.hdu, "dataset": inputs.dataset}
        elif inputs.header is not None:
            from astropy.io import fits

            fits.PrimaryHDU(np.ascontiguousarray(inputs.data, dtype=np.float64),
                            header=inputs.header).writeto(folder / "data.fits", overwrite=True)
            c["data"] = {"path": "data.fits"}
        else:
            np.save(folder / "data.npy", np.ascontiguousarray(inputs.data, dtype=np.float64))
            c["data"] = {"path": "data.npy"}
        # a dimensionless data unit (astropy's u.one) is the config's default: the parameters come out the same
        unit = inputs.data_unit
        c["data"]["unit"] = unit.to_string() if unit is not None and unit != u.dimensionless_unscaled else None
        if inputs.weights is not None:
            np.save(folder / "weights.npy", np.ascontiguousarray(inputs.weights, dtype=np.float64))
            c["weights"] = {"path": "weights.npy", "kind": "weights"}
        if inputs.mask is not None:
            np.save(folder / "mask.npy", np.ascontiguousarray(inputs.mask, dtype=np.uint8))
            c["mask"] = {"path": "mask.npy"}
        world = dict(inputs.world_spec)
        if world.get("arrays") is not None:
            names = []
            for k, values in enumerate(world["arrays"]):
                np.save(folder / f"world{k}.npy", np.asarray(values, dtype=np.float64))
                names.append(f"world{k}.npy")
            world["arrays"] = names
        c["world"] = world
        if chunk_n_max is not None:
            c["chunk_n_max"] = int(chunk_n_max)
        if diagnostics is not None:
            c["diagnostics"] = diagnostics
            c["diagnostics_path"] = str(Path(diagnostics_path).resolve())
        cfg["cubefit"] = c
        (folder / "parallel_fit.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
        env = dict(os.environ)
        package_root = str(Path(__file__).resolve().parents[2])  # the tree this hpcfit was imported from
        # the user's model modules are imported by every rank as they were here
        paths = [package_root] + _module_roots(unitless) + env.get("PYTHONPATH", "").split(os.pathsep)
        env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(p for p in paths if p))
        argv = command + [sys.executable, "-m", "hpcfit", "run", "parallel_fit.yaml", "-q"]
        done = subprocess.run(argv, cwd=folder, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-20:])
            raise RuntimeError(f"hpcfit.parallel_fit: `{' '.join(argv)}` in {folder} failed with exit code "
                               f"{done.returncode}:\n{tail}")
        result = CubefitResult(folder / "parallel_fit.h5")
        with result.h5() as h5:
            by_astropy = {h5[f"parameters/{n}"].attrs["astropy_name"]: n for n in h5["parameters"]}
            by_astropy = {(k.decode() if isinstance(k, bytes) else str(k)): v for k, v in by_astropy.items()}
            params = np.stack([h5[f"parameters/{by_astropy[name]}"][()].ravel() for name in unitless.param_names],
                              axis=1)
            status = h5["status"][()].ravel()
            numbers = {key: h5[f"fit_info/{key}"][()].ravel() for key in numeric}
        return params, status, numbers
    finally:
        if temporary is not None:
            temporary.cleanup()


# -- fit_info as astropy exposes it -----------------------------------------------------------------------------
def _fit_info_array(keys: list[str], iter_shape: tuple[int, ...], status: np.ndarray,
                    numbers: dict[str, np.ndarray], cov: np.ndarray | None, messages: dict[int, str]) -> np.ndarray:
    """An object array over the map of per-fit ``fit_info`` (a scipy ``OptimizeResult``, the dict with attribute
    access TRFLSQFitter's own fit_info is); None where the fit failed, as astropy leaves it for a fit that raised."""
    from scipy.optimize import OptimizeResult

    from hpcfit.cubefit.batched_lm import MESSAGES, Termination

    out = np.empty(status.size, dtype=object)
    integer = {"nfev", "njev", "status", "ierr", "numiter", "exit_mode", "niter", "rank"}
    for i in range(status.size):
        if status[i] == 2:
            continue
        entry = OptimizeResult()
        for key in keys:
            if key == "message":
                text = messages.get(i)
                if text is None and "status" in numbers and np.isfinite(numbers["status"][i]):
                    text = MESSAGES.get(Termination(int(numbers["status"][i])), "")
                entry[key] = text or ""
            elif key == "param_cov":
                entry[key] = None if cov is None else cov[i]
            elif key == "success":
                entry[key] = bool(status[i] == 0)
            else:
                value = numbers[key][i]
                entry[key] = int(value) if key in integer and np.isfinite(value) else float(value)
        out[i] = entry
    return out.reshape(iter_shape)
