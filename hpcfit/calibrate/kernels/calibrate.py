"""Calibrate science frames with read-only masters: science = (raw - bias - dark_rate * t_exp) / flat.

What is computed, per pixel (float32 output):

- ``image = (raw - offset_t) * inv_flat`` with ``offset_t = bias + dark_rate * t_exp`` (the dark master is a rate in
  ADU/s, so it is *scaled by the science exposure time*: the classic pitfall, ccdproc's ``subtract_dark`` does not
  scale unless asked) and ``inv_flat = 1 / flat``. ``offset_t`` is built once per distinct exposure time and cached,
  ``inv_flat`` once per master set: each frame then costs one subtraction and one multiplication streamed over the
  frame in cache-sized row blocks, which is what lets the kernel run near memory bandwidth;
  :meth:`ScienceCalibrator.calibrate_batch` applies each cached block of the masters to several frames, so the
  masters' memory traffic is shared. The result equals ``(raw - bias - dark_rate * t) / flat`` to float32 rounding.
- Bad pixels: where the flat is <= 0 or not finite (or the bias/dark is not finite) ``inv_flat`` is NaN, so the
  calibrated pixel is NaN (never -1 or inf) and ``bad_pixels`` is True.
- Optional uncertainty (off unless a :class:`NoiseModel` is given), in ADU of the calibrated image, with
  ``g`` = gain (e-/ADU), ``r`` = read noise (e-), ``s = max(raw - bias, 0)`` (all collected signal in ADU, dark
  current included)::

      var_raw = (r / g)**2 + s / g                               # read noise + Poisson, in ADU^2
      sigma^2 = (var_raw + bias_err**2 + (t * dark_err)**2) * inv_flat**2 + (image * flat_err * inv_flat)**2

  ``bias_err``, ``dark_err`` (ADU/s) and ``flat_err`` are optional per-pixel uncertainties of the masters (default
  0: masters taken as noiseless, which holds when they average many frames). Terms are independent (no covariance).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

ROW_BLOCK_BYTES = 1 << 18  # rows per block so that a block of each stream stays in L2 between the two passes


@dataclass(frozen=True)
class NoiseModel:
    """CCD noise: ``gain`` in e-/ADU and ``read_noise`` in e- (RMS per pixel)."""

    gain: float
    read_noise: float

    def __post_init__(self) -> None:
        if not (np.isfinite(self.gain) and self.gain > 0):
            raise ValueError(f"gain must be > 0 e-/ADU, not {self.gain!r}")
        if not (np.isfinite(self.read_noise) and self.read_noise >= 0):
            raise ValueError(f"read_noise must be >= 0 e-, not {self.read_noise!r}")


def bad_pixel_mask(
    flat: np.ndarray | None, *, bias: np.ndarray | None = None, dark_rate: np.ndarray | None = None
) -> np.ndarray:
    """True where the flat is <= 0 or not finite, or where the bias or dark master is not finite."""
    arrays = [a for a in (flat, bias, dark_rate) if a is not None]
    if not arrays:
        raise ValueError("need at least one master to build a bad-pixel mask")
    bad = np.zeros(arrays[0].shape, dtype=bool)
    if flat is not None:
        with np.errstate(invalid="ignore"):
            bad |= ~(flat > 0) | ~np.isfinite(flat)  # NaN > 0 is False, so NaN is caught by the first term too
    for a in (bias, dark_rate):
        if a is not None:
            bad |= ~np.isfinite(a)
    return bad


def inverse_flat(flat: np.ndarray, *, bad_pixels: np.ndarray | None = None, out: np.ndarray | None = None
                 ) -> np.ndarray:
    """float32 ``1 / flat`` with NaN at bad pixels (default: where the flat is <= 0 or not finite).

    ``out`` may be a buffer in node-shared memory, so the ranks of a node share one copy.
    """
    if bad_pixels is None:
        bad_pixels = bad_pixel_mask(flat)
    out = np.empty(flat.shape, np.float32) if out is None else out
    with np.errstate(divide="ignore", invalid="ignore"):
        np.divide(np.float32(1), flat, out=out, casting="unsafe")
    out[bad_pixels] = np.nan
    return out


def exposure_offset(bias: np.ndarray | None, dark_rate: np.ndarray | None, exptime: float,
                    *, out: np.ndarray | None = None) -> np.ndarray | None:
    """float32 ``bias + dark_rate * exptime`` (what is subtracted from a raw frame of that exposure), or None when
    both masters are None. The one definition used by :class:`ScienceCalibrator` and by callers that precompute
    offsets, e.g. row band by row band into node-shared memory (the result is the same bits either way)."""
    if dark_rate is None:
        if bias is None:
            return None
        if out is None:
            return np.asarray(bias, dtype=np.float32)
        np.copyto(out, bias, casting="unsafe")
        return out
    out = np.multiply(dark_rate, np.float32(exptime), dtype=np.float32, out=out)
    if bias is not None:
        out += bias
    return out


def _rows_per_block(shape: tuple[int, ...], itemsize: int = 4) -> int:
    row = int(np.prod(shape[1:], dtype=np.int64)) * itemsize if len(shape) > 1 else itemsize
    return max(1, ROW_BLOCK_BYTES // max(row, 1))


class ScienceCalibrator:
    """Calibrates frames of one shape against one set of masters (each may be None: that step is skipped).

    The masters are only read, so they can live in node-shared memory; the calibrator keeps ``inv_flat`` (pass
    ``inv_flat=`` to share it too), the bad-pixel mask and up to ``cache_size`` exposure-time offsets. ``offsets``
    maps exposure times to ready offsets (:func:`exposure_offset`, e.g. in node-shared memory): used as given and
    never evicted.
    """

    def __init__(
        self,
        bias: np.ndarray | None = None,
        dark_rate: np.ndarray | None = None,
        flat: np.ndarray | None = None,
        *,
        inv_flat: np.ndarray | None = None,
        noise: NoiseModel | None = None,
        bias_err: np.ndarray | None = None,
        dark_err: np.ndarray | None = None,
        flat_err: np.ndarray | None = None,
        cache_size: int = 4,
        offsets: dict[float, np.ndarray] | None = None,
    ) -> None:
        shapes = {a.shape for a in (bias, dark_rate, flat, inv_flat, bias_err, dark_err, flat_err) if a is not None}
        if len(shapes) > 1:
            raise ValueError(f"masters disagree in shape: {sorted(shapes)}")
        self.shape = shapes.pop() if shapes else None
        self.bias, self.dark_rate, self.flat = bias, dark_rate, flat
        self.noise = noise
        self.bias_err, self.dark_err, self.flat_err = bias_err, dark_err, flat_err
        has_master = any(a is not None for a in (bias, dark_rate, flat))
        self.bad_pixels = (bad_pixel_mask(flat, bias=bias, dark_rate=dark_rate) if has_master
                           else None)
        if inv_flat is None and flat is not None:
            inv_flat = inverse_flat(flat, bad_pixels=self.bad_pixels)
        elif inv_flat is not None and self.bad_pixels is not None:
            self.bad_pixels |= ~np.isfinite(inv_flat)
        elif inv_flat is not None:
            self.bad_pixels = ~np.isfinite(inv_flat)
        self.inv_flat = inv_flat
        self._offsets: OrderedDict[float, np.ndarray | None] = OrderedDict()
        self._cache_size = max(1, int(cache_size))
        self._pinned: dict[float, np.ndarray] = {float(t): a for t, a in (offsets or {}).items()}
        for a in self._pinned.values():
            if self.shape is not None and a.shape != self.shape:
                raise ValueError(f"offset shape {a.shape} differs from the masters' {self.shape}")

    def offset(self, exptime: float | None) -> np.ndarray | None:
        """``bias + dark_rate * exptime`` (float32, cached per exposure time); None when there is nothing to
        subtract."""
        if self.dark_rate is not None and (exptime is None or not np.isfinite(exptime) or exptime < 0):
            raise ValueError(f"a valid exposure time is needed to scale the dark rate, got {exptime!r}")
        key = float(exptime) if self.dark_rate is not None else 0.0  # without a dark, t does not matter
        if key in self._pinned:
            return self._pinned[key]
        if key in self._offsets:
            self._offsets.move_to_end(key)
            return self._offsets[key]
        value = exposure_offset(self.bias, self.dark_rate, key)
        self._offsets[key] = value
        if len(self._offsets) > self._cache_size:
            self._offsets.popitem(last=False)
        return value

    def _check(self, raw: np.ndarray) -> None:
        if self.shape is not None and raw.shape != self.shape:
            raise ValueError(f"frame shape {raw.shape} differs from the masters' {self.shape}")

    def calibrate(self, raw: np.ndarray, exptime: float | None, *, out: np.ndarray | None = None) -> np.ndarray:
        """``(raw - bias - dark_rate * exptime) / flat`` as float32; ``out=raw`` (float32) works in place."""
        return self.calibrate_batch([raw], [exptime], None if out is None else [out])[0]

    def calibrate_batch(
        self, raws: Sequence[np.ndarray], exptimes: Sequence[float | None], outs: Sequence[np.ndarray] | None = None
    ) -> list[np.ndarray]:
        """Calibrate several frames in one sweep over the masters: each row block of the masters is loaded once
        (it stays in cache) and applied to every frame, so the masters' memory traffic is shared by the batch.
        ``outs[i]`` may be ``raws[i]`` (in place)."""
        raws = [np.asarray(r) for r in raws]
        if outs is None:
            outs = [np.empty(r.shape, np.float32) for r in raws]
        if len(exptimes) != len(raws) or len(outs) != len(raws):
            raise ValueError(f"{len(raws)} frames, {len(exptimes)} exposure times, {len(outs)} outputs")
        for raw, out in zip(raws, outs):
            self._check(raw)
            if out.shape != raw.shape or out.dtype != np.float32:
                raise ValueError(f"out must be float32 of shape {raw.shape}, got {out.dtype} {out.shape}")
        offsets = [self.offset(t) for t in exptimes]
        gain = self.inv_flat
        if not raws:
            return []
        step = _rows_per_block(raws[0].shape)
        for r0 in range(0, raws[0].shape[0] if raws[0].ndim else 1, step):
            rows = slice(r0, r0 + step)
            g = None if gain is None else gain[rows]
            for raw, out, offset in zip(raws, outs, offsets):
                o = out[rows]
                if offset is not None:
                    np.subtract(raw[rows], offset[rows], out=o, casting="unsafe")
                elif out is not raw:
                    np.copyto(o, raw[rows], casting="unsafe")
                if g is not None:
                    o *= g
        return list(outs)

    def uncertainty(
        self, raw: np.ndarray, exptime: float | None, image: np.ndarray, *, out: np.ndarray | None = None
    ) -> np.ndarray:
        """Per-pixel 1-sigma uncertainty of ``image = calibrate(raw, exptime)`` (formula in the module docstring).
        ``raw`` must be the uncalibrated frame (not overwritten by an in-place calibration)."""
        if self.noise is None:
            raise ValueError("no NoiseModel(gain, read_noise) was given: uncertainties are off")
        raw = np.asarray(raw)
        self._check(raw)
        g, r = np.float32(self.noise.gain), np.float32(self.noise.read_noise)
        var = np.subtract(raw, self.bias, dtype=np.float32) if self.bias is not None else raw.astype(np.float32)
        np.maximum(var, 0, out=var)
        var /= g
        var += (r / g) ** 2
        if self.bias_err is not None:
            var += np.square(self.bias_err, dtype=np.float32)
        if self.dark_err is not None and exptime:
            var += np.square(np.float32(exptime) * self.dark_err, dtype=np.float32)
        if self.inv_flat is not None:
            var *= np.square(self.inv_flat)
            if self.flat_err is not None:
                var += np.square(image * self.flat_err * self.inv_flat, dtype=np.float32)
        out = np.empty(raw.shape, np.float32) if out is None else out
        return np.sqrt(var, out=out)


def calibrate_frame(
    raw: np.ndarray,
    exptime: float | None = None,
    *,
    bias: np.ndarray | None = None,
    dark_rate: np.ndarray | None = None,
    flat: np.ndarray | None = None,
    noise: NoiseModel | None = None,
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """One-shot convenience: (image, bad_pixels, uncertainty or None). Use ScienceCalibrator for many frames."""
    cal = ScienceCalibrator(bias, dark_rate, flat, noise=noise)
    image = cal.calibrate(raw, exptime)
    sigma = cal.uncertainty(raw, exptime, image) if noise is not None else None
    return image, cal.bad_pixels, sigma
