"""A synthetic spectral cube with known answers, for the demo and the tests.

Spectral axis first (numpy order (n_chan, ny, nx)), a FITS header with a real WCS (RA/Dec tangent projection
and an optical-velocity axis in m/s, like the L1448 cube), one Gaussian line per spectrum whose amplitude,
mean and width vary smoothly across the map, Gaussian noise, a few blank (all-NaN) spectra and scattered NaN
samples. The true parameter maps come back with the cube.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def make_cube(shape: tuple[int, int, int] = (48, 40, 50), *, noise: float = 0.05, seed: int = 1,
              n_blank: int = 3, nan_fraction: float = 0.002) -> tuple[np.ndarray, dict[str, np.ndarray], "object"]:
    """Return (cube, truth maps in m/s and K, astropy Header)."""
    from astropy.io import fits

    rng = np.random.default_rng(seed)
    n_chan, ny, nx = shape
    v0, dv = 2500.0, 80.0  # m/s
    velocity = v0 + dv * np.arange(n_chan)
    yy, xx = np.mgrid[0:ny, 0:nx]
    amplitude = 1.0 + 2.0 * np.exp(-(((xx - nx / 2) / (nx / 3)) ** 2 + ((yy - ny / 2) / (ny / 3)) ** 2))
    mean = velocity.mean() + 600.0 * (xx - nx / 2) / nx + 300.0 * (yy - ny / 2) / ny
    stddev = 250.0 + 100.0 * (yy / max(ny - 1, 1))
    cube = amplitude[None] * np.exp(-0.5 * ((velocity[:, None, None] - mean[None]) / stddev[None]) ** 2)
    cube = cube + rng.normal(0.0, noise, cube.shape)
    blank = rng.choice(ny * nx, size=n_blank, replace=False)
    cube.reshape(n_chan, -1)[:, blank] = np.nan
    holes = rng.random(cube.shape) < nan_fraction
    cube[holes] = np.nan
    header = fits.Header()
    header.update({
        "CTYPE1": "RA---TAN", "CRVAL1": 51.0, "CDELT1": -0.002, "CRPIX1": nx / 2, "CUNIT1": "deg",
        "CTYPE2": "DEC--TAN", "CRVAL2": 30.5, "CDELT2": 0.002, "CRPIX2": ny / 2, "CUNIT2": "deg",
        "CTYPE3": "VOPT", "CRVAL3": v0, "CDELT3": dv, "CRPIX3": 1.0, "CUNIT3": "m/s",
        "BUNIT": "K", "OBJECT": "hpcfit synthetic cube",
    })
    truth = {"amplitude": amplitude, "mean": mean, "stddev": stddev,
             "blank": np.isin(np.arange(ny * nx), blank).reshape(ny, nx)}
    return cube.astype(np.float32), truth, header


def write_cube(path: str | Path, **kwargs) -> dict[str, np.ndarray]:
    """Write the synthetic cube as a FITS file; return the truth maps."""
    from astropy.io import fits

    cube, truth, header = make_cube(**kwargs)
    fits.PrimaryHDU(cube, header=header).writeto(path, overwrite=True)
    return truth
