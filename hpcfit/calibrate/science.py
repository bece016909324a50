"""One work item of the calibrate job: a batch of science frames sharing masters and exposure time.

For each frame: read it (pread, or astropy for a compressed file; BZERO/BSCALE, overscan, trim) into a per-rank
buffer, check its pixels (unreadable, empty, constant, mostly saturated -> rejected by the ``on_bad_frame``
policy), then calibrate the good ones in one sweep over the node-shared masters
(``ScienceCalibrator.calibrate_batch``, in place). The calibrated frames leave the rank's memory at once: each is written straight into its planned plane of ``/science/images`` in the output
file, open since setup (``OutputFile.write_plane``: one independent write, no collective call; the ``write`` step
later closes the gaps of rejected frames), and, when asked, as a FITS file with the original header plus HISTORY.
So each raw byte is read once and each calibrated byte written once. Only a slice of a job array, which has no
output file, appends its frames to a scratch file instead (raw float32, copied in by the merge). The item's result
is small (outcomes, and where the frames went), as the checkpoint needs.
With ``cosmic_rays`` (or FITS copies) each frame also gets its uint8 mask (``kernels.cosmics``: bad, saturated,
cosmic ray), cosmic rays cleaned after calibration; with ``cosmic_rays`` the mask is written into its plane of
``/science/mask`` beside the image (or a scratch file of its own in a slice).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hpcfit.calibrate.fits_copies import write_fits_copy
from hpcfit.calibrate.kernels.calibrate import NoiseModel, ScienceCalibrator
from hpcfit.calibrate.kernels.cosmics import flag_bad, frame_mask
from hpcfit.calibrate.kernels.reading import band_stats, read_rows, stats_problems
from hpcfit.calibrate.masters import Masters, saturation_level
from hpcfit.calibrate.planning import CalibPlan, ScienceEntry

SCRATCH_SUFFIX = ".f32"


@dataclass
class FrameOutcome:
    """What happened to one science frame (index into ``CalibPlan.science``)."""

    science: int
    ok: bool
    reason: str = ""


@dataclass
class ItemResult:
    """A work item's result: outcomes, and where its good frames went (the output file, or scratch files)."""

    start: int
    stop: int
    outcomes: list[FrameOutcome] = field(default_factory=list)
    images: str | None = None  # scratch files (a slice of a job array only)
    sigmas: str | None = None
    masks: str | None = None  # uint8 frame masks (with cosmic_rays)
    written: str | None = None  # id of the run whose output file holds the good frames (planned planes)

    @property
    def n_good(self) -> int:
        return sum(o.ok for o in self.outcomes)


class BadFrameError(RuntimeError):
    """A bad science frame under ``on_bad_frame: fail``."""


class Calibrators:
    """Per-rank cache of ScienceCalibrators (one per master set and noise model), all reading the shared masters."""

    def __init__(self, plan: CalibPlan, masters: Masters):
        self.plan, self.masters = plan, masters
        self._cache: dict[tuple[int, float | None, float | None], ScienceCalibrator] = {}

    def get(self, entry: ScienceEntry) -> ScienceCalibrator:
        key = (entry.set, entry.gain, entry.read_noise)
        if key not in self._cache:
            b, d, f = self.plan.sets[entry.set]
            arrays = self.masters.arrays
            noise = NoiseModel(entry.gain, entry.read_noise) if entry.gain is not None else None
            offsets = {t: a for (ob, od, t), a in self.masters.offsets.items() if (ob, od) == (b, d)} if d >= 0 else None
            self._cache[key] = ScienceCalibrator(
                arrays[b] if b >= 0 else None, arrays[d] if d >= 0 else None, None,
                inv_flat=self.masters.inv_flat.get(f), noise=noise, offsets=offsets)
        return self._cache[key]


def scratch_path(directory: str | Path, index: int, what: str = "images") -> Path:
    return Path(directory) / f"item-{index:06d}-{what}{SCRATCH_SUFFIX}"


def calibrate_item(index: int, start: int, stop: int, plan: CalibPlan, c: Any, state: dict[str, Any]
                   ) -> ItemResult:
    """Calibrate science entries [start, stop) (see the module docstring)."""
    ny, nx = plan.shape
    entries = plan.science[start:stop]
    cleaner = state.get("cleaner")  # a CosmicRayCleaner with cosmic_rays, else None
    with_mask = cleaner is not None or bool(c.fits_dir)
    buffers = _buffers(state, len(entries), plan.shape, c.uncertainty, with_mask)
    result = ItemResult(start, stop)
    good: list[int] = []
    for k, entry in enumerate(entries):
        frame = plan.frames[entry.frame]
        reason = ""
        try:
            read_rows(frame, 0, ny, trim=c.trim, overscan=c.overscan, overscan_method=c.overscan_method,
                      out=buffers["raw"][k])
            saturation = saturation_level(frame, c.saturation)
            problems = stats_problems(band_stats(buffers["raw"][k][None], saturation),
                                      ny * nx, max_saturated_fraction=c.max_saturated_fraction)[0]
            reason = "; ".join(problems)
            if with_mask and not reason:
                frame_mask(buffers["raw"][k], saturation, buffers["mask"][k])
        except (OSError, ValueError) as exc:
            reason = f"unreadable: {exc}"
        if reason and c.on_bad_frame == "fail":
            raise BadFrameError(f"{frame.path}: {reason} (on_bad_frame: fail)")
        result.outcomes.append(FrameOutcome(start + k, not reason, reason))
        if not reason:
            good.append(k)

    calibrators: Calibrators = state["calibrators"]
    by_calibrator: dict[int, list[int]] = {}
    for k in good:
        by_calibrator.setdefault(id(calibrators.get(entries[k])), []).append(k)
    for ks in by_calibrator.values():
        cal = calibrators.get(entries[ks[0]])
        raws = [buffers["raw"][k] for k in ks]
        times = [plan.frames[entries[k].frame].exptime for k in ks]
        if c.uncertainty:  # from the raw frame, before it is calibrated in place (no flat_err: image not used)
            for k, raw, t in zip(ks, raws, times):
                cal.uncertainty(raw, t, raw, out=buffers["sigma"][k])
        cal.calibrate_batch(raws, times, outs=raws)
    if with_mask:
        for k in good:
            flag_bad(buffers["raw"][k], buffers["mask"][k])
            if cleaner is not None:
                cleaner.clean(buffers["raw"][k], buffers["mask"][k], gain=entries[k].gain,
                              read_noise=entries[k].read_noise)

    out = state.get("out")
    if good and out is not None:  # straight into the output: plane = the frame's index in plan.science
        for k in good:
            out.write_plane("science/images", start + k, buffers["raw"][k])
            if c.uncertainty:
                out.write_plane("science/uncertainty", start + k, buffers["sigma"][k])
            if cleaner is not None:
                out.write_plane("science/mask", start + k, buffers["mask"][k])
        result.written = state["run_id"]
    elif good:
        scratch = Path(state["scratch_dir"])
        scratch.mkdir(parents=True, exist_ok=True)
        result.images = str(_write_scratch(scratch_path(scratch, index), [buffers["raw"][k] for k in good]))
        if c.uncertainty:
            result.sigmas = str(_write_scratch(scratch_path(scratch, index, "sigmas"),
                                               [buffers["sigma"][k] for k in good]))
        if cleaner is not None:
            result.masks = str(_write_scratch(scratch_path(scratch, index, "masks"),
                                              [buffers["mask"][k] for k in good], np.uint8))
    if c.fits_dir:
        for k in good:
            write_fits_copy(Path(c.fits_dir), plan, entries[k], buffers["raw"][k],
                            buffers["sigma"][k] if c.uncertainty else None, buffers["mask"][k], c)
    return result


def _buffers(state: dict[str, Any], n: int, shape: tuple[int, int], uncertainty: bool, mask: bool = False
             ) -> dict[str, np.ndarray]:
    """Per-rank frame buffers, reused by every item (grown when a larger batch arrives)."""
    have = state.get("buffers")
    if have is None or len(have["raw"]) < n:
        have = {"raw": np.empty((n,) + shape, np.float32)}
        if uncertainty:
            have["sigma"] = np.empty((n,) + shape, np.float32)
        if mask:
            have["mask"] = np.empty((n,) + shape, np.uint8)
        state["buffers"] = have
    return have


def _write_scratch(path: Path, frames: list[np.ndarray], dtype: type = np.float32) -> Path:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        for frame in frames:
            np.ascontiguousarray(frame, dtype).tofile(fh)
    os.replace(tmp, path)
    return path


def read_scratch(path: str, first: int, out: np.ndarray) -> np.ndarray:
    """Frames ``first, first + 1, ...`` of a scratch file into ``out`` (k, ny, nx) float32 (uint8 for masks)."""
    with open(path, "rb") as fh:
        fh.seek(first * out[0].nbytes)
        view = memoryview(out.reshape(-1)).cast("B")
        got = fh.readinto(view)
    if got != out.nbytes:
        raise OSError(f"scratch file {path} is short: {got} of {out.nbytes} bytes (removed by another run?)")
    return out
