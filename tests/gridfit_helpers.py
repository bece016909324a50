"""Shared inputs of the gridfit tests: a small modified-blackbody problem (top-hat filters, a catalogue made from
grid models with noise, an upper limit, a missing band), its config, and a brute-force reference fit."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy.optimize import brentq
from scipy.special import log_ndtr

from hpcfit.gridfit.grid import BandProjector, modified_blackbody_spec, spectral_model
from hpcfit.gridfit.synthetic import synthetic_catalog, write_box_filters
from hpcfit.models.filters import FilterSet, read_filter_file

TEMPERATURES = list(np.linspace(12.0, 40.0, 29))
BETAS = [1.5, 1.8, 2.1]
ERROR_FLOOR = 0.05

CONFIG = """\
job: gridfit
output: {output}
gridfit:
  catalog:
    path: {catalog}
    id_column: id
    distance_column: distance
  bands:
{bands}
  grid:
    model: modified_blackbody
    modified_blackbody:
      temperature: {{linspace: [12, 40, 29]}}
      beta: [1.5, 1.8, 2.1]
  fit:
    error_floor: {floor}
    chi2: {chi2}
    estimate: [temperature, beta, dust_mass, log_dust_mass, log_dust_luminosity]
    models_per_chunk: 17
    galaxies_per_block: 8
{extra}"""


def mbb_problem(directory: Path):
    """Filters, spec, model and projector of the test grid (87 models, 6 top-hat bands)."""
    paths = write_box_filters(directory / "filters")
    filters = FilterSet(tuple(read_filter_file(p) for p in paths.values()))
    spec = modified_blackbody_spec({"temperature": TEMPERATURES, "beta": BETAS}, {})
    model = spectral_model(spec, filters)
    projector = BandProjector(filters, model.wavelength, [True] * len(filters))
    return paths, filters, spec, model, projector


def write_inputs(directory: Path, *, n_galaxies: int = 30, seed: int = 3, snr: float = 20.0) -> dict:
    """Catalogue with special rows: galaxy 3 has a non-detection (NaN flux with an error = upper limit), galaxy 5 a
    missing band, galaxy 7 a negative flux (upper limit), galaxy 11 a copy of galaxy 10 (equal answers)."""
    paths, filters, spec, model, projector = mbb_problem(directory)
    table = synthetic_catalog(spec, model, projector, list(paths), n_galaxies=n_galaxies, seed=seed, snr=snr)
    names = list(paths)
    # a genuine non-detection: the noise is as large as the flux, which is not reported
    table[f"{names[0]}_err"][3] = abs(table[f"{names[0]}_flux"][3])
    table[f"{names[0]}_flux"][3] = np.nan
    table[f"{names[2]}_flux"][5] = np.nan
    table[f"{names[2]}_err"][5] = np.nan
    table[f"{names[1]}_flux"][7] = -abs(table[f"{names[1]}_err"][7])
    for col in table.colnames:
        if col != "id":
            table[col][11] = table[col][10]
    table.write(directory / "catalog.ecsv", overwrite=True)
    return {"paths": paths, "table": table, "spec": spec, "model": model, "projector": projector,
            "filters": filters}


def band_lines(paths: dict[str, Path]) -> str:
    return "\n".join(f"  - {{name: {n}, filter_file: filters/{p.name}, flux_column: {n}_flux, error_column: {n}_err}}"
                     for n, p in paths.items())


def write_config(directory: Path, name: str, output: str, *, chi2: str = "full", floor: float = ERROR_FLOOR,
                 catalog: str = "catalog.ecsv", extra: str = "") -> Path:
    paths = {p.stem: p for p in sorted((directory / "filters").glob("*.dat"), key=lambda p: int(p.stem[3:]))}
    path = directory / name
    path.write_text(CONFIG.format(catalog=catalog, bands=band_lines(paths), output=output, floor=floor, chi2=chi2,
                                  extra=extra))
    return path


# --------------------------------------------------------------------------------------------------------------
# Brute force: one (galaxy, model) pair at a time
# --------------------------------------------------------------------------------------------------------------


def pair_fit(f, sigma, upper, q, floor):
    """Best scale s >= 0 and chi2 of one pair; q = k m are the model's fluxes at unit scale.

    chi2(s) = sum_det (f - s q)^2 / (sigma^2 + (floor f)^2) - 2 sum_ul ln Phi((f_ul - s q) / sigma), minimised by
    bracketing the root of its derivative (CIGALE's rule for upper limits)."""
    det = ~upper
    w = 1.0 / (sigma[det] ** 2 + (floor * f[det]) ** 2)

    def chi2(s):
        return np.sum(w * (f[det] - s * q[det]) ** 2) - 2.0 * np.sum(log_ndtr((f[upper] - s * q[upper]) / sigma[upper]))

    def slope(s):
        z = (f[upper] - s * q[upper]) / sigma[upper]
        mills = np.exp(-0.5 * z * z - log_ndtr(z)) / np.sqrt(2 * np.pi)
        return -2.0 * np.sum(w * (f[det] - s * q[det]) * q[det]) + 2.0 * np.sum(q[upper] / sigma[upper] * mills)

    s0 = max(np.sum(w * f[det] * q[det]) / np.sum(w * q[det] ** 2), 0.0)
    if upper.any() and s0 > 0 and slope(0.0) < 0 < slope(s0):
        s = brentq(slope, 0.0, s0, xtol=1e-15 * s0, rtol=4 * np.finfo(float).eps, maxiter=500)
    elif upper.any() and slope(0.0) >= 0:
        s = 0.0
    else:
        s = s0
    return s, chi2(s)


def brute_force(catalog, fluxes, factor, floor, params, names, luminosity):
    """chi2, scale (G, N) pair by pair; the best model by a scan; likelihood-weighted moments by plain sums."""
    n_gal, n_mod = catalog.n_galaxies, fluxes.shape[0]
    chi2 = np.zeros((n_gal, n_mod))
    scale = np.zeros((n_gal, n_mod))
    for g in range(n_gal):
        use = catalog.valid[g]
        for n in range(n_mod):
            scale[g, n], chi2[g, n] = pair_fit(catalog.flux[g, use], catalog.error[g, use], catalog.upper[g, use],
                                               factor[g] * fluxes[n, use], floor)
    best = np.argmin(chi2, axis=1)
    bayes = {}
    for g in range(n_gal):
        w = np.exp(-0.5 * (chi2[g] - chi2[g].min()))
        values = {name: params[:, j] for j, name in enumerate(names)}
        values["dust_mass"] = scale[g]
        pos = scale[g] > 0
        values["log_dust_mass"] = np.where(pos, np.log10(np.where(pos, scale[g], 1.0)), np.nan)
        values["log_dust_luminosity"] = np.where(pos, np.log10(np.where(pos, scale[g] * luminosity, 1.0)), np.nan)
        for name, x in values.items():
            ok = np.isfinite(x)
            mean = np.sum(w[ok] * x[ok]) / np.sum(w[ok])
            std = np.sqrt(np.sum(w[ok] * (x[ok] - mean) ** 2) / np.sum(w[ok]))
            bayes.setdefault(name, (np.zeros(n_gal), np.zeros(n_gal)))
            bayes[name][0][g], bayes[name][1][g] = mean, std
    return chi2, scale, best, bayes


def mbb_luminosity_numeric(temperature: float, beta: float) -> float:
    """L_sun per M_sun of a modified blackbody by numerical integration over frequency (independent check)."""
    from scipy.integrate import quad

    from hpcfit.models.blackbody import C_LIGHT, modified_blackbody_lnu

    def lnu_of_nu(nu):
        return modified_blackbody_lnu(np.array([C_LIGHT / nu * 1e10]), temperature, beta)[0]

    peak = 5.0e10 * temperature  # Hz, near the peak of nu^(3+beta) / (e^x - 1)
    total = sum(quad(lnu_of_nu, a, b, limit=200, epsrel=1e-12)[0]
                for a, b in ((1e6, peak / 10), (peak / 10, peak), (peak, 10 * peak), (10 * peak, 100 * peak)))
    return total / 3.828e26


__all__ = ["brute_force", "mbb_problem", "write_inputs", "write_config", "pair_fit", "mbb_luminosity_numeric"]
