"""The cubefit job: fit an astropy model to every spectrum (or plane) of an N-d cube, on MPI.

Plan (rank 0): read the headers, build the world coordinates and the model once to validate every key, and
cut the iterating axes into chunks of at most ``chunk_n_max`` consecutive fits. Work (any rank): read the
chunk's spectra (only those), fit them with the batched solver (or astropy's fitter per item), write
diagnostics. Write (all ranks): parameter, uncertainty, status, fit_info and world maps, each rank its chunks.

Output layout (a contract; ``hpcfit inspect`` and plots rely on it):
  /parameters/<name>     maps over the iterating axes, attribute ``unit`` = the unit it was fitted in
  /uncertainties/<name>  1-sigma from the covariance (free parameters; when the fitter provides it)
  /status                int8: 0 converged, 1 converged with warning, 2 failed
  /fit_info/<key>        numeric fit_info entries asked for
  /world/<axis name>     world coordinates of the iterating axes (from the WCS), attribute ``unit``
  /fit_axes/<name>       the model inputs along the fitting axes (when shared by every fit), attribute ``unit``
  root attributes        provenance, plus cubefit_* attributes: solver used, fallback note, model, units, and
                         cubefit_wcs: the WCS of the iterating axes (the maps' celestial WCS) as a FITS header
                         string ("" when the cube has none)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from hpcfit.config.schema import (Bool, Choice, Field, Float, Int, ListOf, MapOf, Null, OneOf, Optional, PathT,
                             Record, Section, Settings, Str)
from hpcfit.cubefit.arrays import ArrayInfo, ArraySource, ArraySourceError, describe_array
from hpcfit.cubefit.boxes import flat_range_boxes
from hpcfit.cubefit.model_keys import FITTERS as _FITTERS, InitialValue as _InitialValue, ModelRef as _ModelRef
from hpcfit.io.h5out import OutputFile
from hpcfit.engine.job import Job, Plan, Report, RunContext, WorkItem, raise_report

_ARRAY_FIELDS = {
    "path": Field(PathT(exists=True), doc="FITS, HDF5 or .npy file"),
    "hdu": Field(OneOf(Int(min=0), Str()), 0, "FITS HDU index or name"),
    "dataset": Field(Optional(Str()), None, "dataset path inside an HDF5 file"),
}

_PARAMETER = Record({
    "value": Field(_InitialValue(), None, "initial value: a number (in `unit`), a quantity string such as "
                                          "'4000 m/s', or the path of an .npy array of one value per fit (shape = "
                                          "the non-fitting axes; relative to the config); default: the model's"),
    "unit": Field(Optional(Str()), None, "unit of `value` and `bounds` when they are plain numbers; "
                                        "default: the unit the parameter is fitted in"),
    "bounds": Field(Optional(ListOf(OneOf(Null(), Float(), Str()), min_len=2, max_len=2)), None,
                    "[low, high], numbers (in `unit`) or quantity strings; null for an open side"),
    "fixed": Field(Bool(), False, "keep the parameter at its initial value"),
    "tied": Field(Optional(Str()), None, "expression of other parameters, e.g. 'line1.stddev' or "
                                        "'line1.mean * 1.05'"),
}, shorthand="value")

_COMPONENT = Record({
    "class": Field(_ModelRef(), doc="astropy model class name, e.g. Gaussian1D, or 'package.module:Name'"),
    "name": Field(Optional(Str()), None, "component name used in `expression`, `tied` and output names"),
    "parameters": Field(MapOf(_PARAMETER), {}, "parameter name -> settings"),
    "options": Field(MapOf(OneOf(Bool(), Int(), Float(), Str())), {}, "other constructor arguments, e.g. degree"),
})

SCHEMA = Section({
    "cubefit": Section({
        "data": Field(Record({**_ARRAY_FIELDS, "unit": Field(Optional(Str()), None,
                                                              "unit of the data values (default: BUNIT, "
                                                              "else none)")}),
                      doc="the cube: path, and hdu (FITS) or dataset (HDF5)"),
        "weights": Field(Optional(Record({**_ARRAY_FIELDS, "kind": Field(
            Choice("weights", "uncertainty", "variance", "inverse_variance"), "weights",
            "what the array holds: weights (1/sigma, astropy's convention), uncertainty (sigma), variance, "
            "inverse_variance")})), None, "optional per-sample weights or uncertainties, same shape as the data"),
        "mask": Field(Optional(Record(dict(_ARRAY_FIELDS))), None,
                      "optional mask array, same shape as the data: non-zero = bad sample"),
        "non_finite": Field(Choice("mask", "fail"), "mask",
                            "non-finite data samples: `mask` them (default) or mark the whole fit failed"),
        "fitting_axes": Field(ListOf(Int(min=0), min_len=1, max_len=2, scalar_ok=True), [0],
                              "numpy axes holding one fit's data (0 for the spectral axis of a FITS cube "
                              "stored as (spectral, y, x)); two axes for 2-D models"),
        "world": Field(Record({
            "source": Field(Choice("auto", "wcs", "pixel", "arrays"), "auto",
                            "coordinates of the fitting axes: the FITS `wcs`, explicit `arrays`, or `pixel` "
                            "indices; `auto` = wcs when the header has one"),
            "arrays": Field(Optional(ListOf(OneOf(PathT(exists=True), ListOf(Float(), min_len=1)))), None,
                            "with source: arrays, one 1-D coordinate array (.npy path or list) per fitting axis"),
            "units": Field(Optional(ListOf(Optional(Str()))), None,
                           "unit per fitting axis: converts WCS coordinates to it (e.g. km/s), or states the "
                           "unit of explicit arrays"),
        }, shorthand="source"), {"source": "auto", "arrays": None, "units": None},
            "world coordinates (shorthand: `world: wcs`)"),
        "model": Field(Record({
            "class": Field(Optional(_ModelRef()), None,
                           "a single model: an astropy model name (Gaussian1D), or 'package.module:Name' naming "
                           "a user's Fittable1DModel/Fittable2DModel subclass, custom_model class or model "
                           "instance, importable on every rank"),
            "parameters": Field(MapOf(_PARAMETER), {}, "parameter name -> settings (single model)"),
            "options": Field(MapOf(OneOf(Bool(), Int(), Float(), Str())), {}, "other constructor arguments"),
            "components": Field(Optional(ListOf(_COMPONENT, min_len=1)), None,
                                "the parts of a compound model"),
            "expression": Field(Optional(Str()), None, "how components combine, e.g. 'line1 + line2 + base' "
                                                       "(default: their sum)"),
            "tied": Field(MapOf(Str()), {}, "parameter -> expression of other parameters"),
        }), doc="the model: one astropy class, or components combined by an expression"),
        "fitter": Field(Record({
            "class": Field(Choice(*_FITTERS, "LinearLSQFitter", "FittingWithOutlierRemoval"), "TRFLSQFitter",
                           "astropy fitter; SLSQPLSQFitter, SimplexLSQFitter, LinearLSQFitter and "
                           "FittingWithOutlierRemoval (keys fitter, outlier, niter, sigma) run per spectrum "
                           "through astropy"),
            "fitter": Field(Choice(*_FITTERS, "LinearLSQFitter"), "TRFLSQFitter",
                            "with class: FittingWithOutlierRemoval, the fitter it wraps"),
            "outlier": Field(Choice("sigma_clip"), "sigma_clip",
                             "with class: FittingWithOutlierRemoval, the outlier function (astropy.stats)"),
            "niter": Field(Int(min=1), 3, "with class: FittingWithOutlierRemoval, maximum fit-and-clip rounds"),
            "sigma": Field(Float(min=0.0, min_exclusive=True), 3.0,
                           "with class: FittingWithOutlierRemoval, sigma_clip's clipping threshold"),
            "maxiter": Field(Int(min=1), 100, "maximum function evaluations (astropy's maxiter)"),
            "acc": Field(Float(min=0.0, min_exclusive=True), 1e-7, "relative tolerance (astropy's acc)"),
            "epsilon": Field(Float(min=0.0, min_exclusive=True), float(np.sqrt(np.finfo(float).eps)),
                             "finite-difference step (astropy's epsilon)"),
            "estimate_jacobian": Field(Bool(), False, "ignore the model's fit_deriv and use finite differences"),
        }, shorthand="class"), {"class": "TRFLSQFitter", "fitter": "TRFLSQFitter", "outlier": "sigma_clip",
                                "niter": 3, "sigma": 3.0, "maxiter": 100, "acc": 1e-7,
                                "epsilon": float(np.sqrt(np.finfo(float).eps)), "estimate_jacobian": False},
            "the fitter and its keyword arguments (shorthand: `fitter: LevMarLSQFitter`)"),
        "solver": Field(Choice("batched", "astropy"), "batched",
                        "`batched`: fit a whole chunk at once with numpy, reproducing the fitter's algorithm "
                        "(TRF, or Levenberg-Marquardt for LevMar/LM); `astropy`: call "
                        "the fitter once per spectrum (exact parity, any model). Models the batched solver "
                        "cannot take fall back to `astropy`, with a note in the output."),
        "chunk_n_max": Field(Optional(Int(min=1)), None,
                             "maximum number of fits per work item; default 2048 with the batched solver (it "
                             "needs large batches to be fast) and 500 (astropy's default) with solver: astropy"),
        "diagnostics": Field(Choice("none", "error", "error+warn", "all"), "none",
                             "which fits get a folder of logs (and a plot) under diagnostics_path"),
        "diagnostics_path": Field(Optional(PathT()), None, "folder for per-fit diagnostics"),
        "diagnostics_plots": Field(Bool(), True, "draw fit.png per reported fit when matplotlib is present"),
        "fit_info": Field(ListOf(Str(), scalar_ok=True), ["nfev", "cost", "status"],
                          "numeric fit_info keys stored as maps under /fit_info"),
        "uncertainties": Field(Bool(), True, "store 1-sigma uncertainties from the covariance"),
    }, doc="what to fit and how", required=True),
})


class CubefitJob(Job):
    name = "cubefit"
    title = ("Fit an astropy model to every spectrum or plane of an N-d cube (astropy's parallel_fit_dask, "
             "on MPI).")
    schema = SCHEMA

    def warm_up(self) -> None:
        import astropy.modeling.fitting  # noqa: F401
        import astropy.wcs  # noqa: F401

        from hpcfit.cubefit import astropy_batch, fit_chunk, model_spec, world  # noqa: F401

    # -- rank 0 ---------------------------------------------------------------------------------------------
    def check(self, cfg: Settings, report: Report) -> None:
        c = cfg.cubefit
        if c.diagnostics != "none" and not c.diagnostics_path:
            report("cubefit.diagnostics_path", f"required when diagnostics is '{c.diagnostics}'")
        axes = c.fitting_axes or []
        if len(set(axes)) != len(axes):
            report("cubefit.fitting_axes", "axes must be distinct")
        from hpcfit.cubefit.fitters import DEFAULT_FIT_INFO, fit_info_keys

        allowed = fit_info_keys(c.fitter["class"], c.fitter)
        if list(c.fit_info or []) != list(DEFAULT_FIT_INFO):  # the default is cut to what the fitter reports
            for i, key in enumerate(c.fit_info or []):
                if key not in allowed:
                    report(f"cubefit.fit_info.{i}", f"'{key}' is not a numeric fit_info entry of "
                           f"{c.fitter['class']}", ", ".join(allowed) or "(none)")
        _check_unit_keys(c, report)

    def plan(self, cfg: Settings, report: Report) -> Plan:
        c = cfg.cubefit
        try:
            info = describe_array(c.data.path, hdu=c.data.hdu, dataset=c.data.dataset)
        except ArraySourceError as exc:
            report(f"cubefit.data.{exc.key}", str(exc))
            return Plan([])
        ndim = len(info.shape)
        axes = tuple(c.fitting_axes)
        if any(a >= ndim for a in axes) or ndim <= len(axes):
            report("cubefit.fitting_axes", f"must name {'an axis' if len(axes) == 1 else 'axes'} of the "
                   f"{ndim}-d data (shape {info.shape}) and leave at least one axis to iterate over",
                   f"0..{ndim - 1}")
            return Plan([])
        for key in ("weights", "mask"):
            spec = c.get(key)
            if spec:
                try:
                    other = describe_array(spec.path, hdu=spec.hdu, dataset=spec.dataset)
                except ArraySourceError as exc:
                    report(f"cubefit.{key}.{exc.key}", str(exc))
                    continue
                if other.shape != info.shape:
                    report(f"cubefit.{key}.path", f"shape {other.shape} differs from the data's {info.shape}")
        context = _build_context(cfg, info, report)
        if context is None:
            return Plan([])
        world, built = context
        iter_shape = tuple(info.shape[i] for i in range(ndim) if i not in axes)
        n_fits = int(np.prod(iter_shape))
        step = c.chunk_n_max or (2048 if c.solver == "batched" else 500)
        items = [WorkItem(index=k, label=f"fits {a}-{min(a + step, n_fits) - 1} of {n_fits}",
                          size=min(step, n_fits - a), cost=float(min(step, n_fits - a)), data=(a, min(a + step, n_fits)))
                 for k, a in enumerate(range(0, n_fits, step))]
        notes = [note for p in built.parameters for note in p.notes]
        units = {p.name: p.unit for p in built.parameters}
        return Plan(items, unit="fits", info={"shape": info.shape, "iter_shape": iter_shape, "data_unit": info.unit,
                                              "notes": notes, "units": units,
                                              "fitting_names": world.fitting_names,
                                              "fitting_units": [str(u) if u is not None else "" for u in world.fitting_units]})

    def estimate_output_bytes(self, cfg: Settings, plan: Plan) -> int | None:
        """One map per parameter (and per uncertainty), fit_info entry and iterated world axis, of 8 bytes per
        fit, and the 1-byte status map."""
        if not plan.items:
            return None
        c, info = cfg.cubefit, plan.info
        n_fits = int(np.prod(info["iter_shape"]))
        n_params = len(info["units"])
        maps = n_params * (2 if c.uncertainties else 1) + len(c.fit_info or ()) + len(info["iter_shape"])
        return n_fits * (8 * maps + 1)

    # -- every rank -----------------------------------------------------------------------------------------
    def setup(self, ctx: RunContext) -> None:
        from hpcfit.cubefit.fit_chunk import prepare_setup

        c = ctx.cfg.cubefit
        info = describe_array(c.data.path, hdu=c.data.hdu, dataset=c.data.dataset)
        world, built = _build_context(ctx.cfg, info, raise_report)
        ctx.state["world"] = world
        ctx.state["data"] = ArraySource(c.data.path, hdu=c.data.hdu, dataset=c.data.dataset)
        for key in ("weights", "mask"):
            spec = c.get(key)
            ctx.state[key] = ArraySource(spec.path, hdu=spec.hdu, dataset=spec.dataset) if spec else None
        ctx.state["fit"] = prepare_setup(
            built, fitter_name=c.fitter["class"], fitter_settings=dict(c.fitter), solver=c.solver,
            fit_info_keys=list(c.fit_info), uncertainties=c.uncertainties,
            absolute_weights=c.weights is not None, non_finite=c.non_finite)
        fit = ctx.state["fit"]
        if ctx.comm.is_root:
            for line in _describe_fit(ctx, world, fit):
                ctx.log(line)

    def work(self, item: WorkItem, ctx: RunContext) -> Any:
        from hpcfit.cubefit.diagnostics import write_chunk_diagnostics
        from hpcfit.cubefit.rows import fit_range

        c = ctx.cfg.cubefit
        start, stop = item.data
        result, inputs = fit_range(ctx.state["fit"], ctx.state["world"], ctx.state["data"], ctx.state["weights"],
                                   c.weights.kind if c.weights else "weights", ctx.state["mask"], start, stop)
        if c.diagnostics != "none":
            write_chunk_diagnostics(Path(c.diagnostics_path), c.diagnostics, ctx.state["fit"], ctx.state["world"],
                                    result, inputs, plots=c.diagnostics_plots)
        result.messages = {}  # written to diagnostics already; not needed in the output
        return result

    def write(self, ctx: RunContext, results: dict[int, Any], out: OutputFile) -> dict[str, int]:
        info = ctx.plan.info
        iter_shape = tuple(info["iter_shape"])
        fit = ctx.state["fit"]
        world = ctx.state["world"]
        chunks = None  # contiguous, no fill value: every cell is written exactly once
        names = fit.built.names
        for p in fit.built.parameters:
            attrs = {"unit": p.unit, "astropy_name": p.astropy_name, "fixed": p.fixed, "tied": p.tied or ""}
            out.create_dataset(f"parameters/{p.name}", iter_shape, "f8", attrs=attrs, chunks=chunks)
            if ctx.cfg.cubefit.uncertainties and not (p.fixed or p.tied):
                out.create_dataset(f"uncertainties/{p.name}", iter_shape, "f8", attrs={"unit": p.unit},
                                   chunks=chunks)
        out.create_dataset("status", iter_shape, "i1", chunks=chunks,
                           attrs={"meaning": "0 converged, 1 converged with warning, 2 failed"})
        for key in fit.fit_info_keys:
            out.create_dataset(f"fit_info/{key}", iter_shape, "f8", chunks=chunks)
        for name, unit, _ in world.iterating:
            out.create_dataset(f"world/{name}", iter_shape, "f8", attrs={"unit": unit}, chunks=chunks)
        if world.shared is not None:
            for name, unit, values in zip(world.fitting_names, world.fitting_units, world.shared):
                out.write_small(f"fit_axes/{name}", values.reshape(world.fitting_shape),
                                attrs={"unit": "" if unit is None else str(unit)})

        _name_dimensions(out, ctx, iter_shape, world)

        pieces = []
        counts = {"fits": 0, "converged": 0, "warning": 0, "failed": 0}
        for index, result in results.items():
            start, stop = ctx.plan.items[index].data
            for box, a, b in flat_range_boxes(iter_shape, start, stop):
                rows = slice(a - start, b - start)
                shape = tuple(s.stop - s.start for s in box)
                for k, name in enumerate(names):
                    pieces.append((f"parameters/{name}", box, result.params[rows, k].reshape(shape)))
                    p = fit.built.parameters[k]
                    if ctx.cfg.cubefit.uncertainties and not (p.fixed or p.tied):
                        pieces.append((f"uncertainties/{name}", box, result.uncertainties[rows, k].reshape(shape)))
                pieces.append(("status", box, result.status[rows].reshape(shape)))
                for key in fit.fit_info_keys:
                    pieces.append((f"fit_info/{key}", box, result.fit_info[key][rows].reshape(shape)))
                for name, values in result.world.items():
                    pieces.append((f"world/{name}", box, values[rows].reshape(shape)))
            counts["fits"] += stop - start
            for code, key in ((0, "converged"), (1, "warning"), (2, "failed")):
                counts[key] += int(np.count_nonzero(result.status == code))
        out.write(pieces)
        solver = "batched" if fit.uses_batched else "astropy"
        out.set_attrs("/", {
            "cubefit_solver": solver,
            "cubefit_solver_note": (f"batched solver not used: {fit.fallback_reason}; fitted with astropy's "
                                    f"{fit.fitter_name} per spectrum") if fit.fallback_reason else "",
            "cubefit_fitter": fit.fitter_name,
            "cubefit_model": repr(fit.built.model),
            "cubefit_fitting_axes": list(ctx.cfg.cubefit.fitting_axes),
            "cubefit_fitting_units": ", ".join(f"{n}: {u or 'none'}" for n, u in
                                                zip(info["fitting_names"], info["fitting_units"])),
            "cubefit_unit_conversions": "; ".join(info["notes"]),
            "cubefit_data_unit": ctx.cfg.cubefit.data.unit or info.get("data_unit") or "",
            "cubefit_wcs": world.iterating_header(),
            "cubefit_parameters": list(names),
            "cubefit_input_units": ["" if unit is None else str(unit) for unit in world.fitting_units],
        })
        return counts

    def summary(self, ctx: RunContext, totals: dict[str, int]) -> list[str]:
        n = max(totals.get("fits", 0), 1)
        return [f"{totals.get('fits', 0):,} fits: {totals.get('converged', 0):,} converged, "
                f"{totals.get('warning', 0):,} with warnings, {totals.get('failed', 0):,} failed "
                f"({100 * totals.get('failed', 0) / n:.1f}%)"]

    def demo(self, directory: Path) -> Path:
        from hpcfit.cubefit.demo import write_demo

        return write_demo(directory)

    def plot(self, path: Path, output: Path | None, options: dict[str, str]) -> list[Path]:
        from hpcfit.cubefit.plot import plot_cubefit_maps
        from hpcfit.cubefit.result import CubefitResult

        return [plot_cubefit_maps(CubefitResult(path),
                                  output if output is not None else Path(path).with_suffix(".png"))]


def _check_unit_keys(c: Settings, report: Report) -> None:
    """Every unit key must be a unit astropy parses (checked before any file is opened; whether a unit fits the
    data or the WCS is the plan's business)."""
    from hpcfit.config.units import check_unit

    if c.data.unit:
        check_unit(report, "cubefit.data.unit", c.data.unit)
    for k, unit in enumerate(c.world.get("units") or []):
        if unit:
            check_unit(report, f"cubefit.world.units.{k}", unit)
    model = c.model
    parameter_maps = [("cubefit.model.parameters", model.get("parameters") or {})]
    parameter_maps += [(f"cubefit.model.components.{i}.parameters", comp.get("parameters") or {})
                       for i, comp in enumerate(model.get("components") or [])]
    for prefix, parameters in parameter_maps:
        for name, settings in parameters.items():
            if settings.get("unit"):
                check_unit(report, f"{prefix}.{name}.unit", settings["unit"])


def _build_context(cfg: Settings, info: ArrayInfo, report: Report) -> tuple[Any, Any] | None:
    """World coordinates and the model, validated; None (with problems reported) when they cannot be built."""
    from astropy import units as u

    from hpcfit.cubefit.model_spec import ModelSpecError, build_model
    from hpcfit.cubefit.world import WorldError, build_world

    c = cfg.cubefit
    try:
        world = build_world(c.world, shape=info.shape, fitting_axes=tuple(c.fitting_axes), header=info.header)
    except WorldError as exc:
        report(f"cubefit.world.{exc.path}", exc.message)
        return None
    unit_text = c.data.unit or info.unit
    try:
        data_unit = u.Unit(unit_text) if unit_text else None
    except ValueError:
        report("cubefit.data.unit" if c.data.unit else "cubefit.data.path",
               f"'{unit_text}' is not a unit astropy understands")
        return None
    try:
        iter_shape = tuple(n for i, n in enumerate(info.shape) if i not in tuple(c.fitting_axes))
        built = build_model(c.model, input_units=world.fitting_units, data_unit=data_unit, iter_shape=iter_shape)
    except ModelSpecError as exc:
        report(f"cubefit.model.{exc.path}", exc.message, exc.allowed)
        return None
    return world, built


def _describe_fit(ctx: RunContext, world: Any, fit: Any) -> list[str]:
    lines = []
    axes = ", ".join(f"{n} [{u or 'pixel'}]" for n, u in zip(world.fitting_names, world.fitting_units))
    lines.append(f"cubefit: model inputs {axes}; parameters fitted in: "
                 + ", ".join(f"{p.name} [{p.unit or 'dimensionless'}]" for p in fit.built.parameters))
    for note in ctx.plan.info.get("notes", []):
        lines.append(f"cubefit: converted {note}")
    if fit.uses_batched:
        algorithm = "Levenberg-Marquardt" if fit.fitter_name in ("LevMarLSQFitter", "LMLSQFitter") else \
            "trust-region-reflective"
        lines.append(f"cubefit: solver: batched {algorithm} as {fit.fitter_name} (numpy, whole chunks at once)")
    else:
        reason = f" ({fit.fallback_reason})" if fit.fallback_reason else ""
        lines.append(f"cubefit: solver: astropy {fit.fitter_name}, one fit at a time{reason}")
    return lines


def _name_dimensions(out: OutputFile, ctx: RunContext, iter_shape: tuple[int, ...], world: Any) -> None:
    """Axis names for netCDF readers (xarray): the maps' iterating axes are ``y``, ``x`` (``z``, then ``axis<i>``
    further out), the fitting axes in /fit_axes keep their coordinate names (1-D: with their values)."""
    spatial = ["x", "y", "z"] + [f"axis{i}" for i in range(3, len(iter_shape))]
    dims = tuple(reversed(spatial[:len(iter_shape)]))
    fitting = tuple(n if n not in dims else f"fit_{n}" for n in world.fitting_names)
    for name in ("parameters/*", "uncertainties/*", "fit_info/*", "world/*", "status"):
        out.name_dimensions(name, dims)
    if world.shared is not None:
        coords = {fitting[0]: world.shared[0]} if len(fitting) == 1 else {}
        for name in world.fitting_names:
            out.name_dimensions(f"fit_axes/{name}", fitting, coords)


JOB = CubefitJob
