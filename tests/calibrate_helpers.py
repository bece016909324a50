"""Shared pieces of the calibrate tests: nights with a frame that is rejected only while calibrating."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
from astropy.io import fits

from hpcfit.calibrate.kernels.synthetic import write_raw_frame


def add_saturated_frame(night: Path, after: Path, shape: tuple[int, int]) -> Path:
    """Write ScienceImages/saturated.fits one second after the science frame ``after`` (same exposure, filter, gain
    and read noise): it passes planning (headers only) and is rejected by the pixel checks while calibrating, so
    the frames after it must move down one plane of the output."""
    header = fits.getheader(after)
    when = dt.datetime.fromisoformat(header["DATE-OBS"]) + dt.timedelta(seconds=1)
    return write_raw_frame(night / "ScienceImages" / "saturated.fits", np.full(shape, 65535.0),
                           IMAGETYP="Light Frame", EXPTIME=header["EXPTIME"], FILTER=header["FILTER"],
                           GAIN=header["GAIN"], RDNOISE=header["RDNOISE"], DATE_OBS=when.isoformat())
