"""Read a band of image rows of a raw FITS frame, without reading the rest of the frame.

Plain frames: the rows are read with one ``pread`` at the offset found from the header (see ``frames.ImageLayout``)
into a per-thread buffer that is reused from call to call: only the bytes of the requested rows (plus overscan rows)
are read, once, and — unlike page faults of a memory map — through a system call, so ``/proc/self/io`` (``rchar``)
counts them (see ``hpcfit.runtime.iostats``). Compressed frames (``.gz``, ``.fz``: ``ImageLayout.compression``)
cannot be read by offset: their rows come from astropy's ``section`` (see ``fitsforms``; astropy reads the
compressed bytes with ``read`` calls, so they are counted too), already physical; everything after (overscan, trim,
float32) is the same. Values are returned as physical values
``BZERO + BSCALE * stored`` in float32 (default) or float64; integer pixels equal to BLANK become NaN.

Sections use the FITS/IRAF convention ``[x1:x2,y1:y2]``: 1-based, inclusive, x = column (NAXIS1), y = row (NAXIS2);
``*`` means the whole axis. With a ``trim`` section, row numbers ``r0, r1`` and the returned columns are those of the
*trimmed* image, so the engine plans its row bands on :func:`output_shape`.

Overscan (optional): with a section taller than it is wide (columns beside the image), each row's overscan level is
the median (or mean) of that row's overscan pixels, subtracted from the row; with a section wider than tall (rows
above/below the image), each column's level is the median (or mean) over the section's rows, subtracted from the
column. Both are local to the rows read, plus at most the few overscan rows, so row bands stay independent.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np

from hpcfit.calibrate.kernels.fitsforms import copy_physical, open_section, physical_blank
from hpcfit.calibrate.kernels.frames import CorruptFrameError, Frame, ImageLayout, image_layout, read_primary_header

Source = ImageLayout | Frame | str | os.PathLike

_SECTION = re.compile(r"^\[\s*(\*|\d+\s*:\s*\d+)\s*,\s*(\*|\d+\s*:\s*\d+)\s*\]$")


def layout_of(source: Source) -> ImageLayout:
    """The ImageLayout of a planned Frame, or parse it from the file's header."""
    if isinstance(source, ImageLayout):
        return source
    if isinstance(source, Frame):
        if source.layout is None:
            raise ValueError(f"{source.path}: frame has no readable image ({'; '.join(source.problems)})")
        return source.layout
    header, offset = read_primary_header(source)
    return image_layout(source, header, offset)


def parse_section(text: str, shape: tuple[int, int]) -> tuple[slice, slice]:
    """Parse ``[x1:x2,y1:y2]`` (1-based, inclusive) into 0-based (row slice, column slice), validated against
    ``shape`` = (ny, nx). Raises ValueError for bad syntax, reversed or empty ranges, or ranges off the image."""
    m = _SECTION.match(text.strip()) if isinstance(text, str) else None
    if not m:
        raise ValueError(f"section {text!r} is not of the form '[x1:x2,y1:y2]' (1-based, inclusive; '*' = all)")
    out = []
    for part, n, axis in ((m.group(2), shape[0], "y"), (m.group(1), shape[1], "x")):
        if part == "*":
            out.append(slice(0, n))
            continue
        a, b = (int(v) for v in part.split(":"))
        if not 1 <= a <= b <= n:
            raise ValueError(f"section {text!r}: {axis} range {a}:{b} must satisfy 1 <= {axis}1 <= {axis}2 <= {n}")
        out.append(slice(a - 1, b))
    return out[0], out[1]


def output_shape(source: Source, trim: str | None = None) -> tuple[int, int]:
    """Shape (ny, nx) of the image that :func:`read_rows` delivers (after trimming)."""
    shape = layout_of(source).shape
    if trim is None:
        return shape
    ys, xs = parse_section(trim, shape)
    return ys.stop - ys.start, xs.stop - xs.start


_BUFFERS = threading.local()  # each thread's reusable byte buffer (fresh memory would page-fault on every call)


def _stored_rows(layout: ImageLayout, r0: int, r1: int) -> np.ndarray:
    """Raw rows ``[r0, r1)`` of the stored image, full width, in the file's type: one ``pread`` into the thread's
    buffer (valid until the thread's next call)."""
    ny, nx = layout.shape
    itemsize = layout.dtype.itemsize
    nbytes = (r1 - r0) * nx * itemsize
    buffer = getattr(_BUFFERS, "buffer", None)
    if buffer is None or len(buffer) < nbytes:
        buffer = _BUFFERS.buffer = bytearray(nbytes)
    view = memoryview(buffer)[:nbytes]
    fd = os.open(layout.path, os.O_RDONLY)
    try:
        got = 0
        while got < nbytes:  # pread may return fewer bytes than asked (signals, some file systems)
            n = os.preadv(fd, [view[got:]], layout.data_offset + r0 * nx * itemsize + got)
            if n == 0:
                raise OSError(f"{layout.path}: file ends inside the image (rows {r0 + 1}..{r1} of {ny})")
            got += n
    finally:
        os.close(fd)
    return np.frombuffer(buffer, dtype=layout.dtype, count=(r1 - r0) * nx).reshape(r1 - r0, nx)


def _to_physical(stored: np.ndarray, layout: ImageLayout, out: np.ndarray) -> np.ndarray:
    """out = BZERO + BSCALE * stored, BLANK -> NaN; the cast is where the byte swap happens."""
    np.copyto(out, stored, casting="unsafe")
    if layout.bscale != 1.0:
        out *= layout.bscale
    if layout.bzero != 0.0:
        out += layout.bzero
    if layout.blank is not None:
        out[stored == layout.blank] = np.nan
    return out


def _level(values: np.ndarray, axis: int, method: str) -> np.ndarray:
    return np.nanmedian(values, axis=axis) if method == "median" else np.nanmean(values, axis=axis)


def read_rows(
    source: Source,
    r0: int,
    r1: int,
    *,
    dtype: type | np.dtype = np.float32,
    trim: str | None = None,
    overscan: str | None = None,
    overscan_method: Literal["median", "mean"] = "median",
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Rows ``[r0, r1)`` of the (trimmed) image as physical values, overscan-subtracted if asked.

    ``out`` (shape (r1 - r0, nx_trimmed), float dtype) receives the result without an extra allocation, e.g. one
    plane of a stack being filled. Raises ValueError for bad rows or sections, OSError if the file cannot be read.
    """
    layout = layout_of(source)
    ys, xs = parse_section(trim, layout.shape) if trim else (slice(0, layout.shape[0]), slice(0, layout.shape[1]))
    ny, nx = ys.stop - ys.start, xs.stop - xs.start
    if not 0 <= r0 <= r1 <= ny:
        raise ValueError(f"row band [{r0}, {r1}) outside the {'trimmed ' if trim else ''}image of {ny} rows")
    if out is None:
        out = np.empty((r1 - r0, nx), dtype=dtype)
    elif out.shape != (r1 - r0, nx) or out.dtype.kind != "f":
        raise ValueError(f"out must be a float array of shape {(r1 - r0, nx)}, got {out.dtype} {out.shape}")
    if overscan_method not in ("median", "mean"):
        raise ValueError(f"overscan_method must be 'median' or 'mean', not {overscan_method!r}")
    raw_rows = slice(ys.start + r0, ys.start + r1)
    oys = oxs = None
    if overscan and r1 > r0:  # checked before reading: a bad section is a ValueError whatever the file holds
        oys, oxs = parse_section(overscan, layout.shape)
        if oys.stop - oys.start >= oxs.stop - oxs.start:
            if not (oys.start <= raw_rows.start and raw_rows.stop <= oys.stop):
                raise ValueError(f"overscan {overscan} does not cover image rows {raw_rows.start + 1}.."
                                 f"{raw_rows.stop}")
        elif not (oxs.start <= xs.start and xs.stop <= oxs.stop):
            raise ValueError(f"overscan {overscan} does not cover image columns {xs.start + 1}..{xs.stop}")
    if r1 == r0:
        return out
    if layout.compression:
        blank = physical_blank(layout.bzero, layout.bscale, layout.blank)
        try:
            with open_section(layout.path, layout.hdu) as section:
                return _read_band(lambda a, b: section[a:b, :], lambda v, o: copy_physical(v, o, blank),
                                  raw_rows, xs, oys, oxs, overscan_method, out)
        except (OSError, EOFError, IndexError, KeyError, TypeError, ZeroDivisionError) as exc:  # short or damaged
            raise OSError(f"{layout.compression}-compressed data cannot be read (truncated?): {exc}") from exc
    return _read_band(lambda a, b: _stored_rows(layout, a, b), lambda v, o: _to_physical(v, layout, o),
                      raw_rows, xs, oys, oxs, overscan_method, out)


def _read_band(rows: Callable[[int, int], np.ndarray], physical: Callable[[np.ndarray, np.ndarray], np.ndarray],
               raw_rows: slice, xs: slice, oys: slice | None, oxs: slice | None, overscan_method: str,
               out: np.ndarray) -> np.ndarray:
    """Stored rows ``raw_rows`` (``rows(a, b)``: full-width rows ``[a, b)`` of the stored image, from a ``pread``
    or a compressed HDU's section) as physical values in ``out``, overscan (already checked) subtracted."""
    n, nx = raw_rows.stop - raw_rows.start, xs.stop - xs.start
    stored = rows(raw_rows.start, raw_rows.stop)
    physical(stored[:, xs], out)
    if oys is not None:
        if oys.stop - oys.start >= oxs.stop - oxs.start:  # columns beside the image: one level per row
            strip = physical(stored[:, oxs], np.empty((n, oxs.stop - oxs.start), out.dtype))
            out -= _level(strip, 1, overscan_method)[:, None]
        else:  # rows above/below the image: one level per column (a second read: ``stored`` is not used after)
            strip = physical(rows(oys.start, oys.stop)[:, xs], np.empty((oys.stop - oys.start, nx), out.dtype))
            out -= _level(strip, 0, overscan_method)[None, :]
    return out


def read_image(source: Source, **kwargs) -> np.ndarray:
    """The whole (trimmed) image; same keywords as :func:`read_rows`."""
    ny, _ = output_shape(source, kwargs.get("trim"))
    return read_rows(source, 0, ny, **kwargs)


def read_stack(
    sources: Sequence[Source], r0: int, r1: int, *, out: np.ndarray | None = None, **kwargs
) -> np.ndarray:
    """Rows ``[r0, r1)`` of every frame, as a (N, r1 - r0, nx) stack (filled in place when ``out`` is given)."""
    layouts = [layout_of(s) for s in sources]
    if out is None:
        nx = output_shape(layouts[0], kwargs.get("trim"))[1] if layouts else 0
        out = np.empty((len(layouts), r1 - r0, nx), dtype=kwargs.pop("dtype", np.float32))
    elif len(out) != len(layouts):
        raise ValueError(f"out has {len(out)} planes for {len(layouts)} frames")
    kwargs.pop("dtype", None)
    for i, layout in enumerate(layouts):
        read_rows(layout, r0, r1, out=out[i], **kwargs)
    return out


def row_bands(ny: int, parts: int) -> list[tuple[int, int]]:
    """Split ``ny`` rows into ``parts`` contiguous bands [r0, r1) as equal as possible (the first get one more)."""
    if parts < 1:
        raise ValueError("parts must be >= 1")
    q, r = divmod(ny, parts)
    starts = [i * q + min(i, r) for i in range(parts + 1)]
    return [(starts[i], starts[i + 1]) for i in range(parts)]


# --------------------------------------------------------------------------------------------- data-level frame checks
def band_stats(stack: np.ndarray, saturation: float | None = None) -> np.ndarray:
    """Per plane of a (N, rows, nx) band: [finite pixels, pixels >= saturation, min, max] (N, 4), to be merged
    over bands with :func:`merge_band_stats` and judged with :func:`stats_problems`."""
    planes = np.asarray(stack).reshape(len(stack), -1)
    out = np.empty((len(planes), 4))
    for i, plane in enumerate(planes):
        finite = np.isfinite(plane)
        v = plane if finite.all() else plane[finite]
        out[i, 0] = v.size
        out[i, 1] = np.count_nonzero(v >= saturation) if saturation is not None else 0
        out[i, 2:] = (v.min(), v.max()) if v.size else (np.inf, -np.inf)
    return out


def merge_band_stats(pieces: Sequence[np.ndarray]) -> np.ndarray:
    """Combine per-band :func:`band_stats`: counts add up, min of minima, max of maxima."""
    arr = np.stack(pieces)
    return np.column_stack([arr[:, :, 0].sum(0), arr[:, :, 1].sum(0), arr[:, :, 2].min(0), arr[:, :, 3].max(0)])


def stats_problems(stats: np.ndarray, n_pixels: int, *, max_saturated_fraction: float = 0.5) -> list[list[str]]:
    """Reasons to reject each frame from its merged stats: no finite pixel, constant image, mostly saturated."""
    out = []
    for finite, saturated, lo, hi in np.asarray(stats):
        reasons = []
        if finite == 0:
            reasons.append("empty: no finite pixel")
        elif lo == hi:
            reasons.append(f"empty: every pixel equals {lo:g}")
        if n_pixels and saturated / n_pixels > max_saturated_fraction:
            reasons.append(f"saturated: {100 * saturated / n_pixels:.0f} % of pixels at or above saturation")
        out.append(reasons)
    return out


# ------------------------------------------------------------------------------------------- ready master files
class MasterFileError(ValueError):
    """A ready master file that cannot be used."""


def master_file_shape(path: str) -> tuple[int, int]:
    """(ny, nx) of a ready master: the primary image of a FITS file, or a 2-D .npy array."""
    if str(path).lower().endswith(".npy"):
        try:
            arr = np.load(path, mmap_mode="r")
        except (OSError, ValueError) as exc:
            raise MasterFileError(f"cannot read {path}: {exc}") from exc
        if arr.ndim != 2:
            raise MasterFileError(f"{path}: expected a 2-D array, got shape {arr.shape}")
        return tuple(int(s) for s in arr.shape)  # type: ignore[return-value]
    try:
        header, offset = read_primary_header(path)
        return image_layout(path, header, offset).shape
    except (OSError, CorruptFrameError) as exc:
        raise MasterFileError(f"cannot use {path} as a master: {exc}") from exc


def read_master_rows(path: str, r0: int, r1: int, *, trim: str | None, raw_shape: tuple[int, int]) -> np.ndarray:
    """Rows [r0, r1) of a ready master as float32, trimmed like the frames when it has the raw frame shape."""
    shape = master_file_shape(path)
    cut = trim if (trim and shape == raw_shape) else None
    if str(path).lower().endswith(".npy"):
        arr = np.load(path, mmap_mode="r")
        ys, xs = parse_section(cut, shape) if cut else (slice(0, shape[0]), slice(0, shape[1]))
        return np.array(arr[ys.start + r0:ys.start + r1, xs], dtype=np.float32)
    return read_rows(path, r0, r1, trim=cut)
