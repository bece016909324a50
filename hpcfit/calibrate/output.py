"""The calibrate job's output: the science datasets (created in setup, filled during the work), and the collective
``write`` step: gaps of rejected frames closed, masters by row band, then the tables.

Output layout (a contract; the docs in docs/calibrate.md describe it with units)::

  /science/images        (n, ny, nx) float32, chunks (1, ny, nx): calibrated frames, NaN at bad pixels
  /science/uncertainty   same shape, 1-sigma (only with calibrate.uncertainty: true)
  /science/mask          (n, ny, nx) uint8 bits: 1 bad, 2 saturated, 4 cosmic ray (only with calibrate.cosmic_rays)
  /science/names, /science/paths, /science/exptime, /science/date_obs, /science/night, /science/filter
  /science/master_set    (n,) int32: row of /masters/sets used; /science/masters_used: text, which and why
  /masters/bias          (n_bias, ny, nx) float32 ADU, one plane per bias master (night)
  /masters/dark          (n_dark, ny, nx) float32 ADU/s (dark-current rate)
  /masters/flat          (n_flat, ny, nx) float32, median 1
  /masters/bad_pixels    (n_sets, ny, nx) uint8, 1 = bad (flat <= 0 or not finite, or bias/dark not finite)
  /masters/sets          (n_sets, 3) int32: [bias, dark, flat] plane used (-1: step not applied)
  /masters/<kind>_groups table: night, filter, n_frames, source, bias, dark (planes subtracted when building it)
  /masters/<kind>_frames table: plane, name, path, exptime, date_obs (the frames combined into each plane)
  /rejected              table: name, path, kind, stage, reason
  /skipped               table: name, path, reason (files under the inputs not used: hpcfit.calibrate.inputs)
  /frames                table: every frame found: name, path, kind, night, filter, exptime, date_obs, status, notes

Science frames are written during the work at their planned plane (their index among the planned science frames:
``hpcfit.calibrate.science``), in datasets created at setup with one plane per planned frame, allocated at creation
and never filled. Frames rejected while calibrating leave no hole in the final file: each rank learns every frame's
outcome (allgather of a few bytes per frame), the frames after the first rejected one move down in collective
rounds (read back and written once more — nothing moves when no frame was rejected while calibrating) and the
datasets are cut to the good frames. Frames not in this output file — items from checkpoints (a resumed run,
whose earlier output was discarded) or from job-array slices (scratch files) — are calibrated again, or copied from
their scratch files, by the rank that holds their result.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hpcfit.calibrate.kernels.calibrate import bad_pixel_mask
from hpcfit.calibrate.kernels.cosmics import MASK_BITS
from hpcfit.io.h5out import OutputFile
from hpcfit.runtime.comm import Comm
from hpcfit.calibrate.masters import Masters
from hpcfit.calibrate.planning import KINDS, CalibPlan, Rejection, cosmic_rays_spec
from hpcfit.calibrate.science import ItemResult, calibrate_item, read_scratch
from hpcfit.runtime import iostats

_ROUND_FRAMES_IDLE = 8  # frames per rank and round of the gap closing on a rank that has no work buffers
SCIENCE = "science/images"
UNCERTAINTY = "science/uncertainty"
MASK = "science/mask"


def table(rows: Sequence[Sequence[Any]], columns: Sequence[tuple[str, str]]) -> np.ndarray:
    """A structured array for HDF5: text columns ('S') become fixed-length UTF-8 bytes sized to the longest."""
    dtype = []
    for j, (name, kind) in enumerate(columns):
        if kind == "S":
            width = max([len(str(r[j]).encode("utf-8")) for r in rows] + [1])
            dtype.append((name, f"S{width}"))
        else:
            dtype.append((name, kind))
    data = [tuple(str(v).encode("utf-8") if kind == "S" else v for v, (_, kind) in zip(r, columns)) for r in rows]
    return np.array(data, dtype=dtype)


def _text(values: Sequence[Any]) -> np.ndarray:
    return np.array([str(v) for v in values], dtype=str) if len(values) else np.empty(0, dtype="S1")


def science_outcomes(comm: Comm, plan: CalibPlan, results: dict[int, ItemResult]
                     ) -> tuple[np.ndarray, list[Rejection]]:
    """(position of each science entry in /science or -1, rejections while calibrating), identical everywhere."""
    local = [(o.science, o.ok, o.reason) for r in results.values() for o in r.outcomes]
    outcomes = sorted(o for part in comm.allgather(local) for o in part)
    ok = np.zeros(len(plan.science), bool)
    rejected = []
    for s, good, reason in outcomes:
        ok[s] = good
        if not good:
            f = plan.frames[plan.science[s].frame]
            rejected.append(Rejection(f.name, f.path, "science", "calibrate", reason))
    position = np.where(ok, np.cumsum(ok) - 1, -1)
    return position, rejected


def science_streams(c: Any) -> list[str]:
    """The per-frame datasets of /science the work fills, in order: images, then uncertainty and mask if asked."""
    return ([SCIENCE] + ([UNCERTAINTY] if c.uncertainty else [])
            + ([MASK] if cosmic_rays_spec(c) is not None else []))


def create_science_datasets(out: OutputFile, plan: CalibPlan, c: Any) -> None:
    """``/science/images`` (and ``/science/uncertainty``, ``/science/mask``) with one plane per planned science
    frame, allocated now, never filled: the work writes each frame into its plane (collective)."""
    ny, nx = plan.shape
    n = len(plan.science)
    attrs = {"unit": "adu", "formula": "(raw - bias - dark_rate * exptime) / flat", "bad_pixels": "NaN"}
    out.create_dataset(SCIENCE, (n, ny, nx), "f4", attrs=attrs, early=True)
    if c.uncertainty:
        out.create_dataset(UNCERTAINTY, (n, ny, nx), "f4", early=True,
                           attrs={"unit": "adu", "meaning": "1-sigma: read noise + Poisson, propagated"})
    if MASK in science_streams(c):
        out.create_dataset(MASK, (n, ny, nx), "u1", early=True, attrs={"meaning": MASK_BITS})


def write_output(comm: Comm, plan: CalibPlan, masters: Masters, results: dict[int, ItemResult], out: OutputFile,
                 c: Any, state: dict[str, Any]) -> tuple[dict[str, int], list[Rejection]]:
    """Write everything (collective); return counters and the full list of rejected frames. ``state``: the rank's
    job state (frame buffers from the work, reused; ``science_created``; the run id; I/O counters)."""
    if not state.get("science_created"):  # the output was opened after the work (a merge of job-array slices)
        create_science_datasets(out, plan, c)
    io_start = iostats.snapshot()
    state["out"] = out
    _complete_science(out, plan, results, c, state)  # frames from checkpoints or scratch files
    position, late = science_outcomes(comm, plan, results)
    rejected = plan.rejected + masters.rejected + late
    good = [k for k in range(len(plan.science)) if position[k] >= 0]
    names = science_streams(c)
    _close_gaps(comm, out, names, position, plan.shape, state.get("buffers"))
    for name in names:
        out.shrink(name, len(good))
    state["io_science_write"] = iostats.snapshot() - io_start
    _write_science_tables(out, plan, good)
    _write_masters(out, plan, masters)
    _write_inventory(out, plan, rejected)
    _name_dimensions(out, plan, good, c.uncertainty)
    counts = {"science_written": sum(r.n_good for r in results.values()),
              "science_rejected_here": sum(len(r.outcomes) - r.n_good for r in results.values())}
    return counts, rejected


def science_io_attrs(comm: Comm, plan: CalibPlan, c: Any, n_good: int, mine: iostats.IoSnapshot) -> dict[str, Any]:
    """The science stage's file-system traffic (``mine``: this rank's, work + gap closing) against what must move:
    every planned raw science frame's pixels in, the calibrated planes out (collective)."""
    deltas = comm.allgather(mine)
    ny, nx = plan.shape
    raw = sum(_raw_bytes(plan.frames[e.frame].layout) for e in plan.science if plan.frames[e.frame].layout)
    per_pixel = sum(1 if name == MASK else 4 for name in science_streams(c))
    written = n_good * ny * nx * per_pixel
    attrs = iostats.traffic_attrs(deltas, prefix="io_science")
    moved = attrs["io_science_read_bytes"] + attrs["io_science_written_bytes"]
    attrs.update(io_science_raw_bytes=raw, io_science_output_bytes=written,
                 io_science_ratio=moved / (raw + written) if raw + written else float("nan"),
                 io_note=iostats.note(deltas) + "; science stage: from the end of the masters to the science "
                         "frames complete in the output (FITS copies with fits_dir included)")
    return attrs


def _raw_bytes(layout: Any) -> int:
    """The bytes a science frame must move in: its image's pixels (plain file), or the whole file on disk for a
    compressed one (astropy reads its compressed bytes, headers included; the decompressed size never crosses the
    file system)."""
    if layout.compression:
        return Path(layout.path).stat().st_size
    return layout.shape[0] * layout.shape[1] * layout.dtype.itemsize


def _write_science_tables(out: OutputFile, plan: CalibPlan, good: list[int]) -> None:
    entries = [plan.science[k] for k in good]
    frames = [plan.frames[e.frame] for e in entries]
    out.write_small("science/names", _text([f.name for f in frames]))
    out.write_small("science/paths", _text([f.path for f in frames]))
    out.write_small("science/exptime", np.array([f.exptime for f in frames], float), attrs={"unit": "s"})
    out.write_small("science/date_obs", _text([f.date_obs.isoformat() if f.date_obs else "" for f in frames]),
                    attrs={"meaning": "DATE-OBS as written in the header (UTC by FITS convention)"})
    out.write_small("science/night", _text([str(f.night or "") for f in frames]))
    out.write_small("science/filter", _text([f.filter or "" for f in frames]))
    out.write_small("science/master_set", np.array([e.set for e in entries], np.int32),
                    attrs={"meaning": "row of /masters/sets"})
    out.write_small("science/masters_used", _text([e.notes for e in entries]))


def _write_masters(out: OutputFile, plan: CalibPlan, masters: Masters) -> None:
    ny, nx = plan.shape
    r0, r1 = masters.band
    units = {"bias": "adu", "dark": "adu / s", "flat": ""}
    pieces = []
    for kind in KINDS:
        groups = plan.kind_groups(kind)
        out.create_dataset(f"masters/{kind}", (len(groups), ny, nx), "f4",
                           chunks=(1, ny, nx) if groups else None, attrs={"unit": units[kind]})
        for gi in groups:
            if r1 > r0:
                pieces.append((f"masters/{kind}", (slice(plan.groups[gi].slot, plan.groups[gi].slot + 1),
                                                   slice(r0, r1)), masters.arrays[gi][r0:r1][None]))
    out.create_dataset("masters/bad_pixels", (len(plan.sets), ny, nx), "u1",
                       chunks=(1, ny, nx) if plan.sets else None, attrs={"meaning": "1 = bad pixel (NaN in images)"})
    for s, (b, d, f) in enumerate(plan.sets):
        if r1 <= r0:
            continue
        rows = [masters.arrays[g][r0:r1] if g >= 0 else None for g in (b, d, f)]
        if any(r is not None for r in rows):
            bad = bad_pixel_mask(rows[2], bias=rows[0], dark_rate=rows[1])
        else:
            bad = np.zeros((r1 - r0, nx), bool)
        pieces.append(("masters/bad_pixels", (slice(s, s + 1), slice(r0, r1)), bad.astype(np.uint8)[None]))
    out.write(pieces)
    slot = {gi: g.slot for gi, g in enumerate(plan.groups)}
    out.write_small("masters/sets", np.array([[slot.get(g, -1) for g in s] for s in plan.sets], np.int32)
                    .reshape(-1, 3), attrs={"columns": "bias, dark, flat (plane of /masters/<kind>; -1: not applied)"})
    for kind in KINDS:
        groups = [plan.groups[gi] for gi in plan.kind_groups(kind)]
        rows = [(str(g.night or ""), g.filter or "", len(masters.used.get(gi, [])), g.file or "combined",
                 slot.get(g.bias, -1), slot.get(g.dark, -1))
                for gi, g in zip(plan.kind_groups(kind), groups)]
        out.write_small(f"masters/{kind}_groups", table(rows, [("night", "S"), ("filter", "S"), ("n_frames", "i4"),
                                                               ("source", "S"), ("bias", "i4"), ("dark", "i4")]))
        frame_rows = [(plan.groups[gi].slot, plan.frames[i].name, plan.frames[i].path, plan.frames[i].exptime
                       if plan.frames[i].exptime is not None else np.nan,
                       plan.frames[i].date_obs.isoformat() if plan.frames[i].date_obs else "")
                      for gi in plan.kind_groups(kind) for i in masters.used.get(gi, [])]
        out.write_small(f"masters/{kind}_frames", table(frame_rows, [("plane", "i4"), ("name", "S"), ("path", "S"),
                                                                     ("exptime", "f8"), ("date_obs", "S")]))


def _complete_science(out: OutputFile, plan: CalibPlan, results: dict[int, ItemResult], c: Any,
                      state: dict[str, Any]) -> None:
    """Put the frames of this rank's results that are not in this output into their planes: copied from a
    job-array slice's scratch files, or calibrated again (items from checkpoints of a run that was stopped)."""
    run_id = state.get("run_id")
    for index in sorted(results):
        r = results[index]
        if not r.n_good or (r.written is not None and r.written == run_id):
            continue
        if r.images is not None and Path(r.images).exists():
            planes = [o.science for o in r.outcomes if o.ok]
            buffer = np.empty((1,) + plan.shape, np.float32)
            mask_buffer = np.empty((1,) + plan.shape, np.uint8)
            for j, plane in enumerate(planes):
                out.write_plane(SCIENCE, plane, read_scratch(r.images, j, buffer)[0])
                if c.uncertainty:
                    out.write_plane(UNCERTAINTY, plane, read_scratch(r.sigmas, j, buffer)[0])
                if r.masks is not None:
                    out.write_plane(MASK, plane, read_scratch(r.masks, j, mask_buffer)[0])
        else:
            again = calibrate_item(index, r.start, r.stop, plan, c, state)
            if [o.ok for o in again.outcomes] != [o.ok for o in r.outcomes]:
                raise RuntimeError(f"science frames {r.start}-{r.stop - 1} gave other outcomes when calibrated "
                                   "again: were the raw files changed since the checkpoint?")


def _close_gaps(comm: Comm, out: OutputFile, names: list[str], position: np.ndarray, shape: tuple[int, int],
                buffers: dict[str, np.ndarray] | None) -> None:
    """Move every good frame from its planned plane down to its final position (collective).

    Moves go in rounds of up to ``k`` frames per rank, in increasing plane order, each round read completely
    (barrier) before it is written: a destination is below its source, so it is either a rejected frame's plane
    or the source of a move of this round or an earlier one, already read — never one still to be read. Every
    dataset goes through the float32 buffer (uint8 masks too: exact, and cast back by ``write_plane``)."""
    moves = [(int(s), int(p)) for s, p in enumerate(position) if p >= 0 and p != s]
    if not moves:
        return
    buffer = buffers.get("raw") if buffers else None
    if buffer is None:
        buffer = np.empty((min(_ROUND_FRAMES_IDLE, len(moves)),) + shape, np.float32)
    k = comm.allreduce(len(buffer), "min")
    per_round = k * comm.size
    for first in range(0, len(moves), per_round):
        mine = moves[first:first + per_round][comm.rank * k:(comm.rank + 1) * k]
        for name in names:
            for j, (source, _) in enumerate(mine):
                out.read_plane(name, source, buffer[j])
            comm.barrier()
            for j, (_, target) in enumerate(mine):
                out.write_plane(name, target, buffer[j])
            comm.barrier()


def _write_inventory(out: OutputFile, plan: CalibPlan, rejected: list[Rejection]) -> None:
    out.write_small("rejected", table([(r.name, r.path, r.kind, r.stage, r.reason) for r in rejected],
                                      [("name", "S"), ("path", "S"), ("kind", "S"), ("stage", "S"),
                                       ("reason", "S")]))
    late = {r.path: r for r in rejected}
    rows = []
    for f, status in zip(plan.frames, plan.status):
        if f.path in late and status != "rejected":
            status = f"rejected ({late[f.path].stage})"
        rows.append((f.name, f.path, str(f.kind), str(f.night or ""), f.filter or "",
                     f.exptime if f.exptime is not None else np.nan,
                     f.date_obs.isoformat() if f.date_obs else "", status, "; ".join(f.notes + f.problems)))
    out.write_small("frames", table(rows, [("name", "S"), ("path", "S"), ("kind", "S"), ("night", "S"),
                                           ("filter", "S"), ("exptime", "f8"), ("date_obs", "S"), ("status", "S"),
                                           ("notes", "S")]))


def _name_dimensions(out: OutputFile, plan: CalibPlan, good: list[int], uncertainty: bool) -> None:
    """Axis names for netCDF readers (xarray): science frames (labelled by name), y, x, each kind's master
    groups and the frames combined into them, the master sets, and the input and rejected frames of the
    inventory tables."""
    coords = {"frame": [plan.frames[plan.science[k].frame].name for k in good], "master": list(KINDS)}
    for name in ["images"] + (["uncertainty"] if uncertainty else []):
        out.name_dimensions(f"science/{name}", ("frame", "y", "x"), coords)
    for name in ("names", "paths", "exptime", "date_obs", "night", "filter", "master_set", "masters_used"):
        out.name_dimensions(f"science/{name}", ("frame",), coords)
    for kind in KINDS:
        out.name_dimensions(f"masters/{kind}", (f"{kind}_group", "y", "x"), coords)
        out.name_dimensions(f"masters/{kind}_groups", (f"{kind}_group",), coords)
        out.name_dimensions(f"masters/{kind}_frames", (f"{kind}_frame",), coords)
    out.name_dimensions("masters/bad_pixels", ("master_set", "y", "x"), coords)
    out.name_dimensions("masters/sets", ("master_set", "master"), coords)
    out.name_dimensions("frames", ("input_frame",), coords)
    out.name_dimensions("rejected", ("rejected_frame",), coords)


def remove_scratch(comm: Comm, directory: str | Path) -> None:
    """Remove the scratch directory (collective; rank 0 deletes after everyone has copied its frames)."""
    comm.barrier()
    if comm.is_root:
        shutil.rmtree(directory, ignore_errors=True)
        parent = Path(directory).parent
        if parent.name.endswith(".parts") and parent.is_dir() and not any(parent.iterdir()):
            parent.rmdir()
