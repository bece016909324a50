"""Build the masters collectively (the calibrate job's ``setup``): every rank combines one row band of every stack.

For each group, in build order (bias, dark, flat), with rank r owning rows ``bands[r]`` of the (trimmed) image:

1. read rows [r0, r1) of every frame of the group (one pread per frame, BZERO/BSCALE, overscan, trim), in row
   blocks under the ``memory_mb`` budget: if the whole band of the stack fits, it is read once and kept; otherwise each pass
   re-reads its blocks, so memory stays O(budget) whatever the number of frames;
2. pixel checks (:func:`hpcfit.calibrate.kernels.reading.band_stats`, summed / min / max over ranks): empty, constant or mostly
   saturated frames are rejected by every rank alike;
3. darks: ``(raw - bias) / t_exp``; flats: ``raw - bias - dark_rate * t_exp``, then each flat divided by its
   whole-frame median, found exactly from the row bands by three reductions (MIN/MAX, SUM of histograms, gather of
   the values in the median's bins: ``hpcfit.calibrate.kernels.combine``);
4. the sigma-clipped median/mean of the band goes straight into this rank's rows of the node-shared master;
   a master flat is then divided by its own whole-image median (three reductions again).

Then each rank computes its rows of ``1 / flat`` (NaN at bad pixels) and of the offsets ``bias + dark_rate * t``
for every exposure time the science frames use, and the node copies are completed (``NodeShared.assemble_rows``).
Every pixel's arithmetic is independent of the band split, so the masters are bit-identical for any rank count.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hpcfit.calibrate.kernels import combine as C
from hpcfit.calibrate.kernels.calibrate import exposure_offset, inverse_flat
from hpcfit.calibrate.kernels.frames import Frame
from hpcfit.calibrate.kernels.reading import (
    band_stats,
    read_master_rows,
    read_stack,
    row_bands,
    stats_problems,
)
from hpcfit.runtime.comm import Comm
from hpcfit.runtime.shared_array import NodeShared
from hpcfit.calibrate.planning import CalibPlan, Group, Rejection

Step = Callable[[int, int, np.ndarray], None]  # in-place transform of the rows [a, b) of a stack


# ------------------------------------------------------------------------------------------------ stack bands
class StackBand:
    """Rows [r0, r1) of every frame of a group, delivered in row blocks that fit a memory budget.

    ``blocks(steps)`` yields ``(a, b, stack)`` with the in-place ``steps`` applied in order. When the whole band
    fits the budget it is read once and kept, and steps already applied (a prefix of ``steps``) are not redone.
    """

    def __init__(self, frames: Sequence[Frame], r0: int, r1: int, nx: int, read_kwargs: dict[str, Any],
                 budget_bytes: int):
        self.frames = list(frames)
        self.r0, self.r1, self.nx = r0, r1, nx
        self.read_kwargs = read_kwargs
        self.budget = budget_bytes
        self._cache: np.ndarray | None = None
        self._applied: list[Step] = []

    @property
    def block_rows(self) -> int:
        return max(1, self.budget // max(1, len(self.frames) * self.nx * 4))

    @property
    def cached(self) -> bool:
        return self.r1 - self.r0 <= self.block_rows

    def keep(self, mask: np.ndarray) -> None:
        """Drop the frames where ``mask`` is False."""
        self.frames = [f for f, k in zip(self.frames, mask) if k]
        if self._cache is not None:
            self._cache = np.ascontiguousarray(self._cache[np.asarray(mask, bool)])

    def blocks(self, steps: Sequence[Step] = ()) -> Iterator[tuple[int, int, np.ndarray]]:
        if self.r1 <= self.r0 or not self.frames:
            return
        if self.cached:
            if self._cache is None:
                self._cache = read_stack(self.frames, self.r0, self.r1, **self.read_kwargs)
                self._applied = []
            if list(steps[:len(self._applied)]) != self._applied:
                raise RuntimeError("cached stack band was prepared with other steps")
            for step in steps[len(self._applied):]:
                step(self.r0, self.r1, self._cache)
                self._applied.append(step)
            yield self.r0, self.r1, self._cache
            return
        n, rows = len(self.frames), self.block_rows
        buffer = np.empty(n * rows * self.nx, np.float32)
        for a in range(self.r0, self.r1, rows):
            b = min(self.r1, a + rows)
            block = buffer[: n * (b - a) * self.nx].reshape(n, b - a, self.nx)  # contiguous planes
            read_stack(self.frames, a, b, out=block, **self.read_kwargs)
            for step in steps:
                step(a, b, block)
            yield a, b, block

    def release(self) -> None:
        self._cache = None
        self._applied = []


def saturation_level(frame: Frame, setting: Any) -> float | None:
    """The saturation level of a frame: a number, None (no check), or 'auto' = the largest value its integer
    pixels can hold (BZERO + BSCALE * max stored; e.g. 65535 for uint16 data); floating-point frames: none."""
    if setting is None or not isinstance(setting, str):
        return setting
    layout = frame.layout
    if layout is None or layout.bitpix < 0:
        return None
    stored_max = {8: 255, 16: 32767, 32: 2**31 - 1, 64: 2**63 - 1}[layout.bitpix]
    return layout.bzero + layout.bscale * stored_max


# ------------------------------------------------------------------------------------ collective reductions
def frame_stats(comm: Comm, band: StackBand, saturations: Sequence[float | None]) -> np.ndarray:
    """(N, 4) [finite, saturated, min, max] of each whole frame, from every rank's band of the raw stack."""
    n = len(band.frames)
    local = np.tile(np.array([0.0, 0.0, np.inf, -np.inf]), (n, 1))
    for _, _, block in band.blocks():
        for i, sat in enumerate(saturations):
            s = band_stats(block[i:i + 1], sat)[0]
            local[i, :2] += s[:2]
            local[i, 2] = min(local[i, 2], s[2])
            local[i, 3] = max(local[i, 3], s[3])
    counts = comm.allreduce_array(local[:, :2], "sum")
    lo = comm.allreduce_array(local[:, 2].copy(), "min")
    hi = comm.allreduce_array(local[:, 3].copy(), "max")
    return np.column_stack([counts, lo, hi])


def whole_frame_medians(comm: Comm, n: int, blocks: Callable[[], Iterator[tuple[int, int, np.ndarray]]]
                        ) -> np.ndarray:
    """Exact ``nanmedian`` of each of the n whole frames split in row bands over the ranks: three reductions
    (MIN/MAX of the extrema, SUM of the histograms, gather of the values in the median's bins)."""
    pieces = [C.band_extrema(block) for _, _, block in blocks()]
    local = C.merge_extrema(pieces) if pieces else np.tile(np.array([np.inf, -np.inf]), (n, 1))
    extrema = np.column_stack([comm.allreduce_array(local[:, 0].copy(), "min"),
                               comm.allreduce_array(local[:, 1].copy(), "max")])
    counts = np.zeros((n, C.MEDIAN_BINS), np.int64)
    for _, _, block in blocks():
        counts += C.band_histogram(block, extrema)
    targets = C.median_targets(comm.allreduce_array(counts, "sum"))
    mine: list[list[np.ndarray]] = [[] for _ in range(n)]
    for _, _, block in blocks():
        for i, values in enumerate(C.band_values_in_targets(block, extrema, targets)):
            mine[i].append(values)
    gathered = comm.allgather([np.concatenate(v) if v else np.empty(0) for v in mine])
    values = [np.concatenate([rank_values[i] for rank_values in gathered]) for i in range(n)]
    return C.median_from_pieces(values, targets)


# ----------------------------------------------------------------------------------------------- the masters
@dataclass
class Masters:
    """The node-shared masters and what was derived from them, on every rank."""

    shared: NodeShared
    bands: list[tuple[int, int]]
    arrays: list[np.ndarray]  # per group (index into CalibPlan.groups)
    inv_flat: dict[int, np.ndarray]  # per flat group
    offsets: dict[tuple[int, int, float], np.ndarray]  # (bias group, dark group, t) -> bias + dark_rate * t
    used: dict[int, list[int]] = field(default_factory=dict)  # group -> frame indices actually combined
    rejected: list[Rejection] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def band(self) -> tuple[int, int]:
        return self.bands[self.shared.comm.rank]


class MasterError(RuntimeError):
    """A master cannot be built (e.g. too few frames left after the pixel checks)."""


def build_masters(comm: Comm, plan: CalibPlan, c: Any, log: Callable[[str], None]) -> Masters:
    """Combine every group collectively into node-shared masters (see the module docstring)."""
    t0 = time.monotonic()
    bands = row_bands(plan.shape[0], comm.size)
    r0, r1 = bands[comm.rank]
    shared = NodeShared(comm)
    masters = Masters(shared, bands, [], {}, {})
    read_kwargs = {"trim": c.trim, "overscan": c.overscan, "overscan_method": c.overscan_method}
    budget = int(c.memory_mb) << 20
    clip = _sigma_clip(c.combine.sigma_clip)
    for gi, group in enumerate(plan.groups):
        t_group = time.monotonic()
        master = shared.array(plan.shape, np.float32)
        masters.arrays.append(master)
        rows = master[r0:r1]
        if group.file:
            rows[:] = read_master_rows(group.file, r0, r1, trim=c.trim, raw_shape=plan.raw_shape)
            if group.kind == "dark" and group.file_exptime:
                rows /= np.float32(group.file_exptime)
            what = f"read from {Path(group.file).name}"
        else:
            used = _combine_group(comm, plan, gi, masters, rows, read_kwargs, budget, clip, c)
            masters.used[gi] = used
            what = f"{len(used)} frames combined"
        if group.kind == "flat":
            own = [(r0, r1, rows[None])] if r1 > r0 else []
            median = whole_frame_medians(comm, 1, lambda own=own: iter(own))[0]
            try:
                C.normalise(rows, median)
            except ValueError as exc:
                raise MasterError(f"master {group.label}: {exc}") from exc
        log(f"master {group.label}: {what} in {time.monotonic() - t_group:.2f} s")
    for gi, group in enumerate(plan.groups):
        if group.kind == "flat":
            inv = shared.array(plan.shape, np.float32)
            inverse_flat(masters.arrays[gi][r0:r1], out=inv[r0:r1])
            masters.inv_flat[gi] = inv
    for b, d, t in plan.offsets:
        offset = shared.array(plan.shape, np.float32)
        exposure_offset(masters.arrays[b][r0:r1] if b >= 0 else None, masters.arrays[d][r0:r1], t, out=offset[r0:r1])
        masters.offsets[(b, d, t)] = offset
    for array in masters.arrays + list(masters.inv_flat.values()) + list(masters.offsets.values()):
        shared.assemble_rows(array, bands)
    masters.seconds = time.monotonic() - t0
    return masters


def _sigma_clip(spec: Any) -> C.SigmaClip | None:
    if spec is None or spec == "none":
        return None
    return C.SigmaClip(low=spec["low"], high=spec["high"], iters=spec["iters"], center=spec["center"], dev=spec["dev"])


def _combine_group(comm: Comm, plan: CalibPlan, gi: int, masters: Masters, rows: np.ndarray,
                   read_kwargs: dict[str, Any], budget: int, clip: C.SigmaClip | None, c: Any) -> list[int]:
    """Combine this rank's band of group ``gi`` into ``rows``; return the frame indices used."""
    group: Group = plan.groups[gi]
    r0, r1 = masters.band
    indices = list(group.frames)
    frames = [plan.frames[i] for i in indices]
    band = StackBand(frames, r0, r1, plan.shape[1], read_kwargs, budget)

    stats = frame_stats(comm, band, [saturation_level(f, c.saturation) for f in frames])
    problems = stats_problems(stats, plan.shape[0] * plan.shape[1],
                              max_saturated_fraction=c.max_saturated_fraction)
    keep = np.array([not p for p in problems])
    for f, p in zip(frames, problems):
        if p:
            masters.rejected.append(Rejection(f.name, f.path, group.kind, "combine", "; ".join(p)))
    if not keep.all():
        if c.on_bad_frame == "fail":
            bad = [f"{f.name}: {'; '.join(p)}" for f, p in zip(frames, problems) if p]
            raise MasterError(f"master {group.label}: bad frame(s) with on_bad_frame: fail: {'; '.join(bad)}")
        band.keep(keep)
        indices = [i for i, k in zip(indices, keep) if k]
        frames = band.frames
    if len(frames) < max(1, c.combine.min_frames):
        raise MasterError(f"master {group.label}: only {len(frames)} usable frame(s) after rejecting "
                          f"{int((~keep).sum())} by their pixels, fewer than combine.min_frames = "
                          f"{c.combine.min_frames}")

    steps: list[Step] = []
    exptimes = [f.exptime for f in frames]
    bias = masters.arrays[group.bias] if group.bias >= 0 else None
    if group.kind == "dark":
        steps.append(lambda a, b, s: C.prepare_darks(s, None if bias is None else bias[a:b], exptimes))
    elif group.kind == "flat":
        dark = masters.arrays[group.dark] if group.dark >= 0 else None
        steps.append(lambda a, b, s: C.prepare_flats(s, None if bias is None else bias[a:b],
                                                     None if dark is None else dark[a:b],
                                                     exptimes if dark is not None else None))
        medians = whole_frame_medians(comm, len(frames), lambda: band.blocks(steps))
        lit = np.isfinite(medians) & (medians > 0)
        if not lit.all():  # e.g. a dark frame filed and labelled as a flat: no light left after subtraction
            for f, m in zip(frames, medians):
                if not (np.isfinite(m) and m > 0):
                    masters.rejected.append(Rejection(f.name, f.path, "flat", "combine", f"no light: median "
                                                      f"{m:.4g} ADU after bias and dark subtraction"))
            if c.on_bad_frame == "fail" or lit.sum() < max(1, c.combine.min_frames):
                raise MasterError(f"master {group.label}: flat frame(s) without light after bias/dark subtraction: "
                                  f"{', '.join(f.name for f, k in zip(frames, lit) if not k)}"
                                  f" ({int(lit.sum())} usable, combine.min_frames = {c.combine.min_frames})")
            band.keep(lit)
            indices = [i for i, k in zip(indices, lit) if k]
            frames = band.frames
            exptimes[:] = [f.exptime for f in frames]  # the prepare step re-reads them when streaming
            medians = medians[lit]
        steps.append(lambda a, b, s: C.scale_frames(s, medians))
    count = np.empty(rows.shape, np.min_scalar_type(len(frames)))
    for a, b, block in band.blocks(steps):
        C.combine(block, c.combine.method, clip, out=rows[a - r0:b - r0], count_out=count[a - r0:b - r0])
    band.release()
    return indices
