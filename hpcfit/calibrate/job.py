"""The calibrate job: CCD reduction on MPI (eloy's multiprocessing pipeline / ccdproc), masters in node memory.

Survey (all ranks): read only the headers of the input frames, each rank a share of them. Plan (rank 0): from the
gathered header facts, classify the frames (IMAGETYP or folder), group by night and filter, choose the masters of
every science frame, report config problems (exit 2). Setup (all ranks): combine
every master collectively, each rank one row band of every stack, into node-shared memory (one copy per node).
Work (any rank, dynamic): a batch of science frames, calibrated against the shared masters and written straight into
their planes of the output file (open since setup). Write (all ranks): gaps of rejected frames closed, masters by row
band, tables. See docs/calibrate.md.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

from hpcfit.config.schema import (
    Any_,
    Bool,
    Choice,
    Field,
    Float,
    Int,
    ListOf,
    MapOf,
    Null,
    OneOf,
    Optional,
    PathT,
    Record,
    Section,
    Settings,
    Str,
)
from hpcfit.io.h5out import OutputFile
from hpcfit.runtime.checkpoint import parts_directory
from hpcfit.runtime.comm import Comm
from hpcfit.engine.job import Job, Plan, Report, RunContext, WorkItem

_KIND = Choice("bias", "dark", "flat", "science")

_SIGMA_CLIP = Record({
    "low": Field(Optional(Float(min=0.0, min_exclusive=True)), 3.0,
                 "reject values below centre - low * dev (null: no lower clipping)"),
    "high": Field(Optional(Float(min=0.0, min_exclusive=True)), 3.0,
                  "reject values above centre + high * dev (null: no upper clipping)"),
    "iters": Field(Optional(Int(min=1)), 5, "at most this many clipping passes (null: until nothing changes)"),
    "center": Field(Choice("median", "mean"), "median", "centre of the clipping bounds"),
    "dev": Field(Choice("std", "mad_std"), "std",
                 "spread: standard deviation (astropy/ccdproc default) or the robust 1.4826 * MAD"),
})
_CLIP_DEFAULT = {"low": 3.0, "high": 3.0, "iters": 5, "center": "median", "dev": "std"}

SCHEMA = Section({
    "calibrate": Section({
        "inputs": Field(ListOf(PathT(), min_len=1, scalar_ok=True),
                        doc="directories (searched recursively) and/or glob patterns of raw FITS frames (bias, "
                            "darks, flats and science frames together), relative to the config file"),
        "classify_by": Field(Choice("header", "folder"), "header",
                             "frame type from the IMAGETYP keyword ('Bias Frame', 'zero', 'Light Frame', "
                             "'object', ...) or from the folder name (Bias, Darks, Flats, ScienceImages, ...); the "
                             "other one is used when the first says nothing"),
        "imagetyp": Field(MapOf(_KIND), {}, "extra IMAGETYP values and their frame type, e.g. {'Sky Flat': flat}; "
                                            "case and punctuation do not matter"),
        "folders": Field(MapOf(_KIND), {}, "extra folder names and their frame type, e.g. {Zeros: bias}"),
        "on_mismatch": Field(Choice("use", "reject"), "use",
                             "a frame whose IMAGETYP and folder disagree (a dark inside Flats/): `use` it as "
                             "classify_by says (logged and noted in /frames) or `reject` it"),
        "night_offset_hours": Field(Float(min=-24.0, max=24.0), 10.0,
                                    "the night of a frame is the date of DATE-OBS minus this many hours, so a "
                                    "night that crosses midnight UTC stays one night"),
        "exptime_key": Field(ListOf(Str(), min_len=1, scalar_ok=True), ["EXPTIME", "EXPOSURE"],
                             "exposure-time keyword(s), first present wins (seconds)"),
        "filter_key": Field(Str(), "FILTER", "filter keyword: flats and science frames are grouped by it"),
        "date_key": Field(Str(), "DATE-OBS", "observation start keyword (ISO date/time, UTC)"),
        "imagetyp_key": Field(Str(), "IMAGETYP", "frame type keyword"),
        "overscan": Field(Optional(Str()), None,
                          "overscan section '[x1:x2,y1:y2]' (FITS convention: 1-based, inclusive, x = column); "
                          "columns beside the image give one level per row, rows below/above one per column"),
        "overscan_method": Field(Choice("median", "mean"), "median", "how the overscan level is estimated"),
        "trim": Field(Optional(Str()), None, "section '[x1:x2,y1:y2]' of the raw frame to keep"),
        "gain": Field(OneOf(Float(min=0.0, min_exclusive=True), Str()), "GAIN",
                      "gain in e-/ADU: a number, or the header keyword holding it (uncertainty only)"),
        "read_noise": Field(OneOf(Float(min=0.0), Str()), "RDNOISE",
                            "read noise in e-: a number, or the header keyword holding it (uncertainty only)"),
        "uncertainty": Field(Bool(), False,
                             "also write the per-pixel 1-sigma uncertainty (read noise + Poisson, propagated)"),
        "require": Field(ListOf(Choice("bias", "dark", "flat"), scalar_ok=True), ["bias", "dark", "flat"],
                         "masters every science frame must have (a kind left out is applied when available)"),
        "combine": Section({
            "method": Field(Choice("median", "mean"), "median", "combine the kept values by median or mean"),
            "sigma_clip": Field(OneOf(Choice("none"), Null(), _SIGMA_CLIP), dict(_CLIP_DEFAULT),
                                "iterative sigma clipping along the stack before combining (`none` to switch off)"),
            "min_frames": Field(Int(min=1), 3, "a group with fewer usable frames is not used"),
        }, doc="how frames are combined into masters"),
        "masters": Section({
            "match": Field(Choice("nearest", "same_night"), "nearest",
                           "which masters serve a science frame: those of its night, else the nearest in time "
                           "(`nearest`), or only those of its night (`same_night`: the others are rejected)"),
            "bias": Field(Optional(PathT(exists=True)), None, "ready master bias (FITS or .npy, ADU) instead of "
                                                              "combining bias frames"),
            "dark": Field(Optional(PathT(exists=True)), None, "ready master dark (FITS or .npy): a rate in ADU/s, "
                                                              "or see dark_exptime"),
            "dark_exptime": Field(Optional(Float(min=0.0, min_exclusive=True)), None,
                                  "the ready master dark holds the dark signal of this many seconds (it is divided "
                                  "by it); null: it is already a rate in ADU/s"),
            "flat": Field(Optional(OneOf(PathT(exists=True), MapOf(PathT(exists=True)))), None,
                          "ready master flat (FITS or .npy), or filter -> file; it is divided by its median"),
        }, doc="how masters are chosen, or ready master files"),
        "on_bad_frame": Field(Choice("skip", "fail"), "skip",
                              "a corrupt, truncated, unclassifiable, wrongly shaped, empty or saturated frame: "
                              "`skip` it (named in the log and /rejected) or `fail` the run"),
        "saturation": Field(OneOf(Choice("auto"), Null(), Float()), "auto",
                            "saturation level in ADU: `auto` = the largest value the raw integer type holds "
                            "(65535 for uint16), a number, or null for no check"),
        "max_saturated_fraction": Field(Float(min=0.0, max=1.0), 0.5,
                                        "a frame with more of its pixels at or above saturation is rejected"),
        "fits_dir": Field(Optional(PathT()), None,
                          "also write each calibrated frame as FITS here, ready for CCDData.read(path): original "
                          "header + BUNIT + HISTORY, UNCERT (StdDevUncertainty) and MASK extensions"),
        "cosmic_rays": Field(OneOf(Choice("none"), Null(), MapOf(Any_())), None,
                             "clean science frames of cosmic rays after bias/dark/flat: {method: lacosmic, replace: "
                             "clean | nan | none, and any astroscrappy detect_cosmics parameter: sigclip, sigfrac, "
                             "objlim, gain, readnoise, satlevel, niter, sepmed, cleantype, fsmode, psfmodel, "
                             "psffwhm, psfsize, psfbeta}; gain/readnoise default to calibrate.gain/read_noise; "
                             "flagged in /science/mask (bit 4). Needs astroscrappy (extra `cosmics`); null or "
                             "`none`: off"),
        "batch_frames": Field(Int(min=1, max=256), 4,
                              "science frames per work item (calibrated in one sweep over the masters)"),
        "memory_mb": Field(Int(min=8), 512,
                           "per-rank budget (MiB) for a stack's row band while combining and for write rounds; "
                           "larger stacks are processed in row blocks"),
        "scratch_dir": Field(Optional(PathT()), None,
                             "job-array slices only (a whole run writes its frames straight into the output): "
                             "where a slice's calibrated frames wait for the merge (default: <output>.parts/"
                             "calibrated, beside the output; it must be on a shared file system)"),
    }, doc="CCD calibration: inputs, classification, combining, masters, outputs", required=True),
})


class CalibrateJob(Job):
    name = "calibrate"
    title = ("CCD reduction: master bias/dark/flat combined by row bands and shared in node memory, science frames "
             "calibrated in parallel (eloy's multiprocessing pipeline, ccdproc)")
    schema = SCHEMA
    writes_during_work = True  # science frames go straight into the output during the work (ctx.out)

    def warm_up(self) -> None:
        import astropy.io.fits  # noqa: F401

        from hpcfit.calibrate import masters, output, science  # noqa: F401
        from hpcfit.calibrate.kernels import calibrate, combine, reading  # noqa: F401

    # -- rank 0 ---------------------------------------------------------------------------------------------
    def check(self, cfg: Settings, report: Report) -> None:
        c = cfg.calibrate
        m = c.masters
        if m.dark_exptime is not None and m.dark is None:
            report("calibrate.masters.dark_exptime", "only meaningful with masters.dark (a ready master dark file)")
        clip = c.combine.sigma_clip
        if isinstance(clip, dict) and clip.get("low") is None and clip.get("high") is None:
            report("calibrate.combine.sigma_clip", "low and high are both null: use sigma_clip: none to switch "
                                                   "clipping off")
        if c.fits_dir and cfg.output and Path(c.fits_dir) == Path(cfg.output):
            report("calibrate.fits_dir", "must be a directory, not the output file")
        if isinstance(c.cosmic_rays, dict):
            from hpcfit.calibrate.kernels.cosmics import check_settings

            for key, message, allowed in check_settings(c.cosmic_rays):
                report(("calibrate", "cosmic_rays") + ((key,) if key else ()), message, allowed)

    def survey(self, cfg: Settings, comm: Comm) -> Any:
        """Every rank reads the headers of its share of the raw files (``hpcfit.calibrate.survey``)."""
        from hpcfit.calibrate.survey import survey

        return survey(cfg, comm)

    def plan(self, cfg: Settings, report: Report, survey: Any = None) -> Plan:
        from hpcfit.calibrate.planning import make_plan

        calib = make_plan(cfg, report, survey)
        if calib is None:
            return Plan([])
        items = []
        for k, (a, b) in enumerate(calib.batches(cfg.calibrate.batch_frames)):
            names = [calib.frames[e.frame].name for e in calib.science[a:b]]
            label = f"science frames {a}-{b - 1} ({names[0]}{' ...' if len(names) > 1 else ''})"
            items.append(WorkItem(index=k, label=label, size=b - a, cost=float(b - a), data=(a, b)))
        rejected = len(calib.rejected)
        notes = [calib.inputs_line(), f"{len(calib.science)} science frame(s) to calibrate, {rejected} frame(s) "
                                      "rejected while planning"]
        return Plan(items, unit="frames", info={"calib": calib}, notes=notes)

    def estimate_output_bytes(self, cfg: Settings, plan: Plan) -> int | None:
        """Every science frame (and its uncertainty) and every master bias, dark and flat as 4-byte floats, and a
        1-byte bad-pixel mask per master set."""
        calib = plan.info.get("calib")
        if calib is None:
            return None
        ny, nx = calib.shape
        frames = len(calib.science) * (2 if cfg.calibrate.uncertainty else 1)
        masters = len(calib.groups)
        return ny * nx * (4 * (frames + masters) + len(calib.sets))

    # -- every rank -----------------------------------------------------------------------------------------
    def setup(self, ctx: RunContext) -> None:
        from hpcfit.calibrate.kernels.cosmics import CosmicRayCleaner
        from hpcfit.calibrate.masters import build_masters
        from hpcfit.calibrate.output import create_science_datasets
        from hpcfit.calibrate.planning import cosmic_rays_spec
        from hpcfit.calibrate.science import Calibrators
        from hpcfit.runtime import iostats

        comm, c = ctx.comm, ctx.cfg.calibrate
        calib = ctx.plan.info["calib"]
        scratch = Path(c.scratch_dir) if c.scratch_dir else parts_directory(ctx.cfg.output) / "calibrated"
        if comm.is_root:
            for line in _plan_lines(calib):
                ctx.log(line)
        masters = build_masters(comm, calib, c, ctx.log)
        for r in masters.rejected:
            ctx.log(f"rejected {r.name} ({r.kind}, while combining): {r.reason}")
        ctx.log(f"calibrate: {len(calib.groups)} master(s) built in {masters.seconds:.2f} s, shared by the ranks of "
                f"each of {masters.shared.n_nodes} node(s); {len(calib.science)} science frame(s) to calibrate")
        spec = cosmic_rays_spec(c)
        ctx.state.update(masters=masters, calibrators=Calibrators(calib, masters), scratch_dir=str(scratch),
                         cleaner=CosmicRayCleaner(spec) if spec else None,
                         run_id=comm.bcast(uuid.uuid4().hex if comm.is_root else None))
        if ctx.out is not None:  # the work writes each frame into its plane (no scratch files)
            create_science_datasets(ctx.out, calib, c)
            ctx.state.update(out=ctx.out, science_created=True)
        comm.barrier()
        ctx.state["io_science_start"] = iostats.snapshot()

    def work(self, item: WorkItem, ctx: RunContext) -> Any:
        from hpcfit.calibrate.science import calibrate_item

        start, stop = item.data
        return calibrate_item(item.index, start, stop, ctx.plan.info["calib"], ctx.cfg.calibrate, ctx.state)

    def write(self, ctx: RunContext, results: dict[int, Any], out: OutputFile) -> dict[str, int]:
        from hpcfit.calibrate.inputs import SKIPPED_COLUMNS, skipped_rows
        from hpcfit.calibrate.output import remove_scratch, science_io_attrs, table, write_output
        from hpcfit.runtime import iostats

        comm, c = ctx.comm, ctx.cfg.calibrate
        calib, masters = ctx.plan.info["calib"], ctx.state["masters"]
        t0 = time.monotonic()
        work_io = iostats.snapshot() - ctx.state["io_science_start"]  # read, calibrate, write into the planes
        counts, rejected = write_output(comm, calib, masters, results, out, c, ctx.state)
        n_good = comm.allreduce(counts["science_written"])
        out.set_attrs("science", science_io_attrs(comm, calib, c, n_good, work_io + ctx.state["io_science_write"]))
        out.write_small("skipped", table(skipped_rows(calib.skipped), SKIPPED_COLUMNS),
                        attrs={"meaning": "files under the inputs that are not used, and why"})
        comm.barrier()
        write_seconds = time.monotonic() - t0
        peaks = comm.allgather(peak_rss_mb())
        out.set_attrs("/", {
            "calibrate_formula": "science = (raw - bias - dark_rate * exptime) / flat",
            "calibrate_combine": _describe_combine(c),
            "calibrate_overscan": c.overscan or "", "calibrate_trim": c.trim or "",
            "calibrate_masters_seconds": round(masters.seconds, 3),
            "calibrate_write_seconds": round(write_seconds, 3),
            "calibrate_nodes": masters.shared.n_nodes,
            "calibrate_peak_rss_mb": [round(p, 1) for p in peaks],
        })
        masters.shared.free()
        if not ctx.cfg.run.checkpoint or c.scratch_dir:
            remove_scratch(comm, ctx.state["scratch_dir"])
        ctx.state["rejected"] = rejected
        ctx.state["peaks"] = peaks
        return counts

    def summary(self, ctx: RunContext, totals: dict[str, int]) -> list[str]:
        from hpcfit.calibrate.inputs import skipped_lines

        calib = ctx.plan.info["calib"]
        rejected = ctx.state.get("rejected", [])
        lines = [f"{totals.get('science_written', 0)} science frame(s) calibrated; {len(rejected)} frame(s) rejected"
                 + (":" if rejected else "")]
        lines += [f"  rejected {r.name} ({r.kind}, {r.stage}): {r.reason}" for r in rejected]
        lines.append(calib.inputs_line() + (":" if calib.skipped else ""))
        lines += [f"  {line}" for line in skipped_lines(calib.skipped)]
        kinds = {k: len(calib.kind_groups(k)) for k in ("bias", "dark", "flat")}
        lines.append("masters: " + ", ".join(f"{n} {k}" for k, n in kinds.items()))
        peaks = ctx.state.get("peaks")
        if peaks:
            lines.append("peak RSS per rank (MiB): " + ", ".join(f"{p:.0f}" for p in peaks))
        return lines

    def demo(self, directory: Path) -> Path:
        from hpcfit.calibrate.demo import write_demo

        return write_demo(directory)

    plot_options = {"frame": "the science frame to show: its name or index (default: the first)"}

    def plot(self, path: Path, output: Path | None, options: dict[str, str]) -> list[Path]:
        from hpcfit.calibrate.plot import plot_calibrate

        return [plot_calibrate(path, output, frame=options.get("frame"))]


def peak_rss_mb() -> float:
    """This process's peak resident set size (VmHWM) in MiB; 0 where /proc is not available."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _describe_combine(c: Any) -> str:
    clip = c.combine.sigma_clip
    if not isinstance(clip, dict):
        return f"{c.combine.method}, no clipping"
    return (f"{c.combine.method} after sigma clipping (low {clip['low']}, high {clip['high']}, iters {clip['iters']}, "
            f"center {clip['center']}, dev {clip['dev']})")


def _plan_lines(calib: Any) -> list[str]:
    """What rank 0 tells the user about the plan: classification notes, rejections, master choices."""
    from hpcfit.calibrate.inputs import skipped_lines

    lines = [f"calibrate: {calib.inputs_line()}; frames {calib.raw_shape[0]} x {calib.raw_shape[1]}"
             + (f", calibrated {calib.shape[0]} x {calib.shape[1]}" if calib.shape != calib.raw_shape else "")]
    lines += skipped_lines(calib.skipped)
    lines += list(calib.log)
    mismatched = [f for f in calib.frames if any(" says " in n for n in f.notes)]
    for f in mismatched:
        lines.append(f"classification: {f.name}: " + "; ".join(n for n in f.notes if " says " in n))
    others = sum(1 for f in calib.frames if f.notes and f not in mismatched)
    if others:
        lines.append(f"{others} frame(s) carry classification notes (see /frames)")
    for r in calib.rejected:
        lines.append(f"rejected {r.name} ({r.kind}, {r.stage}): {r.reason}")
    return lines


JOB = CalibrateJob
