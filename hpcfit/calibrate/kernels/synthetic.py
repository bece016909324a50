"""A synthetic observing night of raw CCD frames on disk, with the truth, for tests and demos of ``calibrate``.

Layout written under ``root`` (the eloy reference's folders): ``Bias/``, ``Darks/``, ``Flats/``, ``ScienceImages/``.
Every frame is uint16 stored as int16 with BZERO = 32768 (like the real M13 frames), with IMAGETYP ('Bias Frame',
'Dark Frame', 'Flat Field', 'Light Frame'), EXPTIME, DATE-OBS (the night crosses midnight UTC), FILTER (flats and
science), GAIN and RDNOISE.

The signal model, in ADU (``g`` = gain e-/ADU, ``r`` = read noise e-)::

    raw = round(bias + dark_rate * t + flat * scene_rate * t + cosmic rays + noise), clipped to 0..65535
    noise: Poisson on the electrons (dark_rate * t + flat * scene * t) * g, divided by g, plus N(0, r / g)

- ``bias``: offset + a fixed column pattern + a gentle row ramp;
- ``dark_rate`` (ADU/s): a low floor plus hot pixels up to tens of ADU/s;
- ``flat`` (per filter, median 1): radial vignetting times dust-ring shadows (annuli a few % deep);
- ``scene_rate`` (ADU/s, per filter): sky plus Gaussian stars; flats see a uniform lamp/twilight instead;
- cosmic rays: a few single pixels and short tracks of hundreds to thousands of ADU in darks, flats and science
  frames, which the sigma clipping / median must remove.

So a correct calibration gives ``scene_rate * t`` up to noise: :class:`NightTruth` holds every term.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from astropy.io import fits

FOLDERS = {"bias": "Bias", "dark": "Darks", "flat": "Flats", "science": "ScienceImages"}
IMAGETYP = {"bias": "Bias Frame", "dark": "Dark Frame", "flat": "Flat Field", "science": "Light Frame"}


@dataclass
class NightTruth:
    """What the synthetic night was made of (float32 arrays of the frame shape)."""

    root: Path
    shape: tuple[int, int]
    gain: float
    read_noise: float  # e-
    bias: np.ndarray  # ADU
    dark_rate: np.ndarray  # ADU/s
    flats: dict[str, np.ndarray]  # per filter, median 1
    scene_rates: dict[str, np.ndarray]  # per filter, ADU/s, as seen above the flat
    hot_pixels: np.ndarray  # bool
    paths: dict[str, list[Path]] = field(default_factory=dict)  # kind -> files
    # keyed by absolute path string (see key()):
    exptimes: dict[str, float] = field(default_factory=dict)
    filters: dict[str, str] = field(default_factory=dict)
    cosmic_rays: dict[str, np.ndarray] = field(default_factory=dict)  # bool mask of CR-hit pixels per file

    @staticmethod
    def key(path: str | os.PathLike) -> str:
        return os.path.abspath(os.fspath(path))

    @property
    def read_noise_adu(self) -> float:
        return self.read_noise / self.gain

    def science_truth(self, path: Path) -> np.ndarray:
        """The calibrated image a perfect reduction of this science frame gives (no noise): scene_rate * t."""
        key = self.key(path)
        return self.scene_rates[self.filters[key]] * np.float32(self.exptimes[key])


def write_raw_frame(path: str | os.PathLike, data: np.ndarray, **cards) -> Path:
    """Write a uint16 frame the way cameras do (int16 + BZERO 32768) with the given header cards."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    values = np.clip(np.rint(data), 0, 65535).astype(np.uint16)
    hdu = fits.PrimaryHDU(values)  # astropy stores uint16 as int16 with BZERO = 32768, BSCALE = 1
    for key, value in cards.items():  # DATE_OBS is accepted for DATE-OBS, which is not a Python identifier
        hdu.header["DATE-OBS" if key == "DATE_OBS" else key] = value
    hdu.writeto(path, overwrite=True)
    return path


def _vignetted_flat(rng: np.random.Generator, shape: tuple[int, int], tilt: float) -> np.ndarray:
    ny, nx = shape
    y, x = np.mgrid[0:ny, 0:nx].astype(np.float64)
    cy, cx = (ny - 1) / 2, (nx - 1) / 2
    r2 = ((y - cy) ** 2 + (x - cx) ** 2) / (cy ** 2 + cx ** 2)
    flat = (1.0 - 0.35 * r2) * (1.0 + tilt * (x - cx) / nx)
    for _ in range(int(np.clip(ny * nx // 8000, 2, 12))):  # dust donuts: shadows of particles on the window
        dy, dx = rng.uniform(0.1, 0.9) * ny, rng.uniform(0.1, 0.9) * nx
        radius = rng.uniform(4, 10) * max(ny, nx) / 160
        box = (slice(max(0, int(dy - 2 * radius)), int(dy + 2 * radius) + 1),
               slice(max(0, int(dx - 2 * radius)), int(dx + 2 * radius) + 1))
        d = np.hypot(y[box] - dy, x[box] - dx)
        flat[box] *= 1.0 - rng.uniform(0.03, 0.08) * np.exp(-0.5 * ((d - radius) / (0.25 * radius)) ** 2)
    flat *= 1.0 + rng.normal(0.0, 0.005, shape)  # pixel-to-pixel response
    return (flat / np.median(flat)).astype(np.float32)


def _scene(rng: np.random.Generator, shape: tuple[int, int], sky: float, n_stars: int) -> np.ndarray:
    ny, nx = shape
    y, x = np.mgrid[0:ny, 0:nx]
    scene = np.full(shape, sky, dtype=np.float64)
    for _ in range(n_stars):
        sy, sx = rng.uniform(3, ny - 3), rng.uniform(3, nx - 3)
        peak = 10 ** rng.uniform(0.5, 2.5)  # ADU/s at the centre
        sigma = rng.uniform(1.0, 1.8)
        scene += peak * np.exp(-0.5 * ((y - sy) ** 2 + (x - sx) ** 2) / sigma ** 2)
    return scene.astype(np.float32)


def _cosmic_rays(rng: np.random.Generator, shape: tuple[int, int], count: int) -> tuple[np.ndarray, np.ndarray]:
    """Additive CR image (ADU) and its hit mask: single pixels and short straight tracks."""
    ny, nx = shape
    image = np.zeros(shape, dtype=np.float64)
    for _ in range(count):
        y, x = int(rng.integers(0, ny)), int(rng.integers(0, nx))
        length = int(rng.integers(1, 6))
        angle = rng.uniform(0, np.pi)
        for step in range(length):
            yy, xx = round(y + step * np.sin(angle)), round(x + step * np.cos(angle))
            if 0 <= yy < ny and 0 <= xx < nx:
                image[yy, xx] += rng.uniform(300, 5000)
    return image, image > 0


def _bias_and_dark(rng: np.random.Generator, shape: tuple[int, int], level: float
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    ny, nx = shape
    bias = level + rng.normal(0, 3.0, nx)[None, :] + np.linspace(0, 2.0, ny)[:, None]  # column pattern + ramp
    dark_rate = np.full(shape, 0.02, dtype=np.float32)
    hot = rng.random(shape) < 0.004
    dark_rate[hot] = rng.uniform(2.0, 40.0, hot.sum())
    return bias.astype(np.float32), dark_rate, hot


def make_masters(shape: tuple[int, int], *, bias_level: float = 1000.0, seed: int = 7
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Noise-free (bias, dark_rate, flat) of the synthetic model for any frame shape, without writing files
    (e.g. to calibrate real frames that came without calibration frames)."""
    rng = np.random.default_rng(seed)
    bias, dark_rate, _ = _bias_and_dark(rng, shape, bias_level)
    return bias, dark_rate, _vignetted_flat(rng, shape, tilt=0.04)


def make_night(
    root: str | os.PathLike,
    *,
    shape: tuple[int, int] = (128, 160),
    n_bias: int = 9,
    n_dark: int = 7,
    n_flat: int = 7,
    n_science: int = 4,
    filters: Sequence[str] = ("V",),
    dark_exptimes: Sequence[float] = (60.0, 120.0),
    flat_exptime: float = 2.0,
    science_exptime: float = 30.0,
    gain: float = 1.5,
    read_noise: float = 9.0,
    bias_level: float = 1000.0,
    flat_level: float = 20000.0,
    sky_rate: float = 15.0,
    n_stars: int = 25,
    cosmic_rays_per_frame: int = 12,
    start: dt.datetime = dt.datetime(2024, 3, 10, 22, 30, 0),
    seed: int = 2024,
) -> NightTruth:
    """Write a synthetic night under ``root`` and return its truth. Frames are taken in order bias, darks, flats,
    science, with science frames running past midnight UTC, so the whole night is one ``night`` (offset 10 h)."""
    rng = np.random.default_rng(seed)
    root = Path(root)
    bias, dark_rate, hot = _bias_and_dark(rng, shape, bias_level)
    flats = {f: _vignetted_flat(rng, shape, tilt=0.04 * (i + 1)) for i, f in enumerate(filters)}
    base_scene = _scene(rng, shape, sky_rate, n_stars)
    scene_rates = {f: (base_scene * (1.0 + 0.2 * i)).astype(np.float32) for i, f in enumerate(filters)}
    truth = NightTruth(root=root, shape=shape, gain=gain, read_noise=read_noise, bias=bias, dark_rate=dark_rate,
                       flats=flats, scene_rates=scene_rates, hot_pixels=hot)
    clock = start

    def expose(kind: str, index: int, t: float, light: np.ndarray | None, filt: str | None, crs: int) -> None:
        nonlocal clock
        electrons = dark_rate * t * gain
        if light is not None:
            electrons = electrons + light * t * gain
        signal = rng.poisson(np.maximum(electrons, 0)) / gain
        raw = bias + signal + rng.normal(0.0, read_noise / gain, shape)
        cr_image, cr_mask = _cosmic_rays(rng, shape, crs)
        raw = raw + cr_image
        name = f"{FOLDERS[kind].lower()}_{index:03d}" + (f"_{filt}" if filt else "") + ".fits"
        cards = {"IMAGETYP": IMAGETYP[kind], "EXPTIME": float(t), "DATE-OBS": clock.isoformat(timespec="seconds"),
                 "GAIN": gain, "RDNOISE": read_noise, "INSTRUME": "hpcfit synthetic CCD"}
        if filt:
            cards["FILTER"] = filt
        path = write_raw_frame(root / FOLDERS[kind] / name, raw, **cards)
        truth.paths.setdefault(kind, []).append(path)
        key = truth.key(path)
        truth.exptimes[key] = float(t)
        if filt:
            truth.filters[key] = filt
        truth.cosmic_rays[key] = cr_mask
        clock += dt.timedelta(seconds=t + 20)

    for i in range(n_bias):
        expose("bias", i, 0.0, None, None, 0)
    for i in range(n_dark):
        expose("dark", i, dark_exptimes[i % len(dark_exptimes)], None, None, cosmic_rays_per_frame)
    for f in filters:
        for i in range(n_flat):
            lamp = flat_level / flat_exptime * flats[f] * rng.uniform(0.8, 1.2)  # the lamp drifts between flats
            expose("flat", i, flat_exptime, lamp, f, cosmic_rays_per_frame)
    clock = max(clock, start.replace(hour=23, minute=40))
    for f in filters:
        for i in range(n_science):
            expose("science", i, science_exptime, flats[f] * scene_rates[f], f, cosmic_rays_per_frame)
            clock += dt.timedelta(minutes=10)  # dithers, refocus: the science run crosses midnight
    return truth
