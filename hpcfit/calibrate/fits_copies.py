"""The calibrated FITS copies (``calibrate.fits_dir``): one file per science frame, ready for ``CCDData.read(path)``.

Layout (astropy's CCDData FITS convention, so ``CCDData.read(path)`` needs no argument and ccdproc's functions take
the frames as they are):

- primary HDU: the calibrated image (float32, NaN at bad pixels) with every card of the raw frame's image header
  except the integer scaling (``BZERO``, ``BSCALE``, ``BLANK``), ``CRPIX1/2`` shifted by the trim, ``BUNIT`` = the
  image's unit (``adu``, as ``/science/images``), and HISTORY cards saying what was done;
- ``UNCERT`` (with ``calibrate.uncertainty``): the 1-sigma, ``UTYPE = 'StdDevUncertainty'``, ``BUNIT`` as the image;
- ``MASK``: uint8 bits (1 bad pixel, 2 saturated in the raw frame, 4 cosmic ray); CCDData reads any non-zero
  value as masked.

A copy is written to a temporary name and renamed, so a crash never leaves half a file under the final name.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import Any

import numpy as np

from hpcfit._version import __version__
from hpcfit.calibrate.kernels.cosmics import MASK_BITS
from hpcfit.calibrate.kernels.frames import read_image_header
from hpcfit.calibrate.kernels.reading import parse_section
from hpcfit.calibrate.planning import CalibPlan, ScienceEntry

IMAGE_UNIT = "adu"  # the unit of /science/images and of the copies (BUNIT)
_SCALING_CARDS = ("BZERO", "BSCALE", "BLANK")
# Cards of an extension or compressed-image header that a primary HDU must not carry
_STRUCTURE_CARDS = ("XTENSION", "PCOUNT", "GCOUNT", "EXTNAME", "CHECKSUM", "DATASUM")


def history_lines(plan: CalibPlan, entry: ScienceEntry, c: Any) -> list[str]:
    """HISTORY cards saying what was done to a calibrated frame."""
    frame = plan.frames[entry.frame]
    when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")
    lines = [f"hpcfit {__version__} calibrate {when} UTC",
             f"image = (raw - bias - dark_rate * {frame.exptime:g} s) / flat  (ADU; NaN: bad pixel)"]
    if c.overscan:
        lines.append(f"overscan {c.overscan} subtracted ({c.overscan_method} per line)")
    if c.trim:
        lines.append(f"trimmed to {c.trim}")
    spec = c.get("cosmic_rays")
    if isinstance(spec, dict):
        settings = ", ".join(f"{k}={v}" for k, v in spec.items() if k not in ("method", "replace"))
        lines.append(f"cosmic rays: L.A.Cosmic (astroscrappy{', ' + settings if settings else ''}); "
                     f"replaced: {spec.get('replace', 'clean')}")
    lines += [f"{part.strip()}" for part in entry.notes.split(";")]
    return lines


def copy_header(plan: CalibPlan, entry: ScienceEntry, c: Any) -> Any:
    """The raw frame's image header, made fit for the calibrated float32 image."""
    frame = plan.frames[entry.frame]
    header = read_image_header(frame.path)
    for key in _SCALING_CARDS + _STRUCTURE_CARDS:
        header.remove(key, ignore_missing=True, remove_all=True)
    if c.trim:  # pixel coordinates shift with the trim: keep a WCS pointing at the same sky
        ys, xs = parse_section(c.trim, plan.raw_shape)
        for key, shift in (("CRPIX1", xs.start), ("CRPIX2", ys.start)):
            if isinstance(header.get(key), (int, float)):
                header[key] = header[key] - shift
    header["BUNIT"] = (IMAGE_UNIT, "unit of the calibrated image")
    for line in history_lines(plan, entry, c):
        header.add_history(line)
    return header


def write_fits_copy(directory: Path, plan: CalibPlan, entry: ScienceEntry, image: np.ndarray,
                    sigma: np.ndarray | None, mask: np.ndarray | None, c: Any) -> Path:
    """Write ``directory / entry.fits_name``: image, optional UNCERT, MASK (see the module docstring)."""
    from astropy.io import fits

    hdus: list[Any] = [fits.PrimaryHDU(image, header=copy_header(plan, entry, c))]
    if sigma is not None:
        uncert = fits.ImageHDU(sigma, name="UNCERT")
        uncert.header["UTYPE"] = ("StdDevUncertainty", "astropy.nddata uncertainty class")
        uncert.header["BUNIT"] = (IMAGE_UNIT, "1-sigma, read noise + Poisson")
        hdus.append(uncert)
    if mask is not None:
        masked = fits.ImageHDU(np.asarray(mask, np.uint8), name="MASK")
        masked.header["COMMENT"] = f"bits: {MASK_BITS}"
        hdus.append(masked)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / entry.fits_name
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fits.HDUList(hdus).writeto(tmp, overwrite=True, output_verify="silentfix")
    os.replace(tmp, path)
    return path
