"""The FITS file forms calibrate reads, and where each keeps its image: plain, gzip-compressed, tile-compressed.

calibrate reads what astropy reads:

- plain ``.fits``, ``.fit``, ``.fts``: the image is read by ``pread`` at its byte offset (``reading.read_rows``), so a
  rank reads only the bytes of its rows. The image is the primary HDU, or (primary without data) the first image
  extension with data;
- gzip-compressed ``.fits.gz``, ``.fit.gz``, ``.fts.gz``: one gzip stream, which cannot be mapped or read by offset;
- tile-compressed ``.fz`` (fpack; ``.fits.fz``): the first image HDU with data, a ``CompImageHDU`` (a binary table of
  compressed tiles).

Compressed images are read through astropy (``hdu.section``): a tile-compressed file decompresses only the tiles
holding the rows asked for, a gzip file the stream up to them. The science stage reads whole frames, so each
compressed frame is decompressed once, on the rank that calibrates it; no rank decompresses the others' frames.
Only the headers are read while planning (lazily, HDU by HDU).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

PLAIN = (".fits", ".fit", ".fts")
GZIP = tuple(f"{e}.gz" for e in PLAIN)
TILE = (".fz",)  # .fits.fz, and fpack's bare .fz
FITS_NAMES = PLAIN + GZIP + TILE

Form = Literal["plain", "gzip", "tile"]


class NoImageError(ValueError):
    """A readable FITS file that holds no image data (e.g. only tables, or headers without data)."""


def file_form(path: str | os.PathLike) -> Form | None:
    """``plain``, ``gzip`` or ``tile`` from the file name; None when the name is not one calibrate reads."""
    low = os.fspath(path).lower()
    if low.endswith(TILE):
        return "tile"
    if low.endswith(GZIP):
        return "gzip"
    if low.endswith(PLAIN):
        return "plain"
    return None


@dataclass
class LocatedImage:
    """The first image HDU with data of a file: its header (the image's, for a CompImageHDU) and where it is."""

    header: Any  # astropy.io.fits.Header
    hdu: int  # index in the file
    data_loc: int  # byte offset of the HDU's data in the (decompressed, for gzip) file
    data_span: int  # bytes of data (for a CompImageHDU: its compressed table)
    compressed: bool  # a CompImageHDU


def _has_image(hdu: Any) -> bool:
    header = hdu.header
    naxis = header.get("NAXIS", 0) or 0
    return bool(hdu.is_image and naxis > 0 and all((header.get(f"NAXIS{i}") or 0) > 0 for i in range(1, naxis + 1)))


def locate_image(path: str | os.PathLike) -> LocatedImage:
    """Find the first image HDU with data, reading headers only. Raises NoImageError when there is none, or
    ValueError/OSError (from astropy) for a file astropy cannot parse."""
    from astropy.io import fits
    from astropy.utils.exceptions import AstropyWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AstropyWarning)
        with fits.open(path, memmap=False, lazy_load_hdus=True) as hdul:
            n = 0
            for k, hdu in enumerate(hdul):
                n = k + 1
                if _has_image(hdu):
                    info = hdu.fileinfo()
                    return LocatedImage(hdu.header.copy(), k, int(info["datLoc"]), int(info["datSpan"]),
                                        isinstance(hdu, fits.CompImageHDU))
    raise NoImageError(f"no image data ({n} HDU(s), none holds an image with pixels)")


@contextmanager
def open_section(path: str, hdu: int) -> Iterator[Any]:
    """``hdu.section`` of a compressed file, open for the duration: indexing it gives physical values
    (BZERO/BSCALE applied by astropy) and decompresses only what is needed."""
    from astropy.io import fits

    with fits.open(path, memmap=False, lazy_load_hdus=True) as hdul:
        yield hdul[hdu].section


def physical_blank(bzero: float, bscale: float, blank: int | None) -> float | None:
    """The physical value of an integer image's BLANK (astropy's sections give physical values)."""
    return None if blank is None else bzero + bscale * blank


def copy_physical(values: np.ndarray, out: np.ndarray, blank_value: float | None) -> np.ndarray:
    """out = values (already physical), with BLANK pixels as NaN."""
    np.copyto(out, values, casting="unsafe")
    if blank_value is not None:
        out[values == blank_value] = np.nan
    return out
