"""Cosmic rays of calibrated science frames: L.A.Cosmic (van Dokkum 2001) through astroscrappy, and the frame mask.

Where ccdproc users clean (``ccdproc.cosmicray_lacosmic``): on each science frame after bias, dark and flat, with
the sky still in (L.A.Cosmic's noise model needs it), in electrons. astroscrappy's ``detect_cosmics`` multiplies the
frame by ``gain`` (e-/ADU) itself, takes ``readnoise`` and ``satlevel`` in electrons, and returns the cleaned frame
in the units it was given (ADU here), so the ADU frame and the gain give what ccdproc gives on the gain-corrected
frame with ``gain=1`` (tested). The gain and read noise default to ``calibrate.gain`` / ``calibrate.read_noise``
(numbers or header keywords, per frame); ``cosmic_rays.gain`` / ``readnoise`` override them.

The per-frame mask (``/science/mask``, the FITS copies' ``MASK``) is uint8 bits: 1 bad pixel (NaN in the image:
bad in the masters, or BLANK), 2 saturated in the raw frame, 4 cosmic ray. Bad pixels are hidden from astroscrappy
(``inmask``) and filled with the frame's median for it, since its median filters do not skip NaNs.

``replace``: ``clean`` (astroscrappy's cleaned values, ``cleantype`` says how), ``nan`` or ``none`` (flag only).
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

BAD, SATURATED, COSMIC_RAY = 1, 2, 4
MASK_BITS = "1 = bad pixel (NaN), 2 = saturated in the raw frame, 4 = cosmic ray"
REPLACE = ("clean", "nan", "none")
METHODS = ("lacosmic",)
# Arguments hpcfit passes itself (the frame, its mask) or that only print
_NOT_SETTINGS = ("indat", "inmask", "inbkg", "invar", "verbose")
_CHOICES = {"cleantype": ("median", "medmask", "meanmask", "idw"), "fsmode": ("median", "convolve"),
            "psfmodel": ("gauss", "gaussx", "gaussy", "moffat")}


def detect_parameters() -> dict[str, Any]:
    """astroscrappy ``detect_cosmics``'s settable parameters and their defaults (ImportError without it)."""
    from astroscrappy import detect_cosmics

    return {name: p.default for name, p in inspect.signature(detect_cosmics).parameters.items()
            if name not in _NOT_SETTINGS}


def check_settings(spec: Mapping[str, Any]) -> Iterator[tuple[str | None, str, str | None]]:
    """Problems of a ``cosmic_rays`` mapping as (key or None, message, allowed values)."""
    method = spec.get("method")
    if method not in METHODS:
        yield "method", f"{method!r} is not a cosmic-ray method" if method else "missing: method", " | ".join(METHODS)
    replace = spec.get("replace", "clean")
    if replace not in REPLACE:
        yield "replace", f"{replace!r} is not a replacement", " | ".join(REPLACE)
    try:
        params = detect_parameters()
    except ImportError:
        yield None, "cosmic_rays needs astroscrappy: pip install 'hpcfit[cosmics]' (or astroscrappy)", None
        return
    for key, value in spec.items():
        if key in ("method", "replace"):
            continue
        if key not in params:
            yield key, "not a parameter of astroscrappy's detect_cosmics", ", ".join(("method", "replace", *params))
            continue
        default = params[key]
        if key in _CHOICES:
            if value not in _CHOICES[key]:
                yield key, f"{value!r} is not allowed", " | ".join(_CHOICES[key])
        elif isinstance(default, bool):
            if not isinstance(value, bool):
                yield key, f"expected true or false, got {value!r}", "true | false"
        elif isinstance(default, (int, float)) or default is None:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and np.isfinite(value)
            if key in ("niter", "psfsize"):
                ok = ok and float(value).is_integer() and value >= 1
            elif key == "psfk":
                ok = value is None
            elif ok and key not in ("satlevel",):
                ok = value > 0 or (key == "readnoise" and value >= 0)
            if not ok:
                what = "null (a kernel array cannot be given in YAML)" if key == "psfk" else (
                    "a whole number >= 1" if key in ("niter", "psfsize") else "a positive number")
                yield key, f"expected {what}, got {value!r}", None


class CosmicRayCleaner:
    """L.A.Cosmic with the settings of ``calibrate.cosmic_rays`` (checked with :func:`check_settings`)."""

    def __init__(self, spec: Mapping[str, Any]):
        self.replace = spec.get("replace", "clean")
        self.settings = {k: v for k, v in spec.items() if k not in ("method", "replace")}
        if "niter" in self.settings:
            self.settings["niter"] = int(self.settings["niter"])
        if "psfsize" in self.settings:
            self.settings["psfsize"] = int(self.settings["psfsize"])

    def clean(self, image: np.ndarray, mask: np.ndarray, *, gain: float | None = None,
              read_noise: float | None = None) -> int:
        """Flag the cosmic rays of ``image`` (ADU, calibrated; cleaned in place as configured) in ``mask`` (bit 4);
        pixels already flagged bad are left alone. ``gain`` (e-/ADU) and ``read_noise`` (e-) are used unless the
        settings give them. Returns the number of cosmic-ray pixels."""
        from astroscrappy import detect_cosmics

        kwargs = dict(self.settings)
        if gain is not None:
            kwargs.setdefault("gain", float(gain))
        if read_noise is not None:
            kwargs.setdefault("readnoise", float(read_noise))
        bad = (mask & BAD) != 0
        data = image
        if bad.any():
            data = np.where(bad, np.float32(np.nanmedian(image[~bad])) if (~bad).any() else 0.0, image)
        found, cleaned = detect_cosmics(np.asarray(data, np.float32), inmask=bad if bad.any() else None, **kwargs)
        found &= ~bad
        mask[found] |= COSMIC_RAY
        if self.replace == "clean":
            image[found] = cleaned[found]
        elif self.replace == "nan":
            image[found] = np.nan
        return int(np.count_nonzero(found))


def frame_mask(raw: np.ndarray, saturation: float | None, out: np.ndarray) -> np.ndarray:
    """Bit 2 where the raw frame (before calibration) is at or above ``saturation``; the other bits cleared."""
    if saturation is None:
        out[...] = 0
    else:
        np.greater_equal(raw, saturation, out=out.view(bool))  # 0/1 bytes
        out <<= 1
    return out


def flag_bad(image: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Bit 1 where the calibrated image is not finite (bad pixels of the masters, BLANK pixels)."""
    out[~np.isfinite(image)] |= BAD
    return out
