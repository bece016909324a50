"""Dust attenuation and extinction curves: Calzetti (2000), Charlot & Fall (2000), Pei (1992) SMC / Milky Way.

Every curve is returned as an optical-depth *shape* tau(lambda) / tau_ref, so that a model scales it by one
parameter and the transmission is exp(-scale * shape). Wavelengths are rest-frame Angstrom.

* Galaxy attenuation, ``dust2`` = optical depth at 5500 A (the FSPS convention):
  - ``calzetti``: tau(lambda) = dust2 k(lambda) / k(5500 A), Calzetti et al. (2000, ApJ 533, 682) eq. 4 with
    R_V = 4.05. Outside its fitted range (0.12 - 2.2 um) k is continued linearly in 1/lambda below 0.12 um (the
    slope at 0.12 um) and follows the red formula until it reaches zero (~3.1 um) above 2.2 um.
  - ``charlot_fall``: diffuse ISM tau = dust2 (lambda / 5500 A)^-0.7 for all stars, plus birth clouds
    tau_BC = ratio * dust2 (lambda / 5500 A)^-0.7 for stars younger than 10 Myr (Charlot & Fall 2000, ApJ 539, 718;
    ``ratio`` = birth-cloud to diffuse V-band optical depth, an option).
* AGN reddening and torus opacity: Pei (1992, ApJ 395, 130) analytic fits (six Drude-like terms, Table 4) to the SMC
  and Milky-Way extinction curves, normalised here so that A(lambda) / E(B-V) uses the fit's own E(B-V) =
  A(4400 A) - A(5500 A). The SMC curve (no 2175 A bump) is the usual choice for quasar reddening.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


V_BAND_AA = 5500.0
B_BAND_AA = 4400.0
MAGNITUDE_PER_TAU = 2.5 / np.log(10.0)  # A = 1.086 tau
ATTENUATION_LAWS = ("calzetti", "charlot_fall")
BIRTH_CLOUD_AGE_YR = 1e7
CALZETTI_RV = 4.05


def calzetti_k(wave_aa: np.ndarray) -> np.ndarray:
    """Calzetti (2000) k(lambda) = A(lambda) / E(B-V)_stars (R_V = 4.05), extended as the module docstring says."""
    lam = np.asarray(wave_aa, dtype=float) / 1e4  # micron
    blue = 2.659 * (-2.156 + 1.509 / lam - 0.198 / lam**2 + 0.011 / lam**3) + CALZETTI_RV
    red = 2.659 * (-1.857 + 1.040 / lam) + CALZETTI_RV
    k = np.where(lam < 0.63, blue, red)
    # Below 0.12 um: continue linearly in x = 1/lambda with the derivative at 0.12 um.
    x0 = 1.0 / 0.12
    k0 = 2.659 * (-2.156 + 1.509 * x0 - 0.198 * x0**2 + 0.011 * x0**3) + CALZETTI_RV
    dk_dx = 2.659 * (1.509 - 2 * 0.198 * x0 + 3 * 0.011 * x0**2)
    k = np.where(lam < 0.12, k0 + dk_dx * (1.0 / lam - x0), k)
    return np.maximum(k, 0.0)


def calzetti_shape(wave_aa: np.ndarray) -> np.ndarray:
    """tau(lambda) / tau(5500 A) for the Calzetti law."""
    return calzetti_k(wave_aa) / calzetti_k(np.array([V_BAND_AA]))[0]


def power_law_shape(wave_aa: np.ndarray, index: float = -0.7) -> np.ndarray:
    """tau(lambda) / tau(5500 A) = (lambda / 5500 A)^index (Charlot & Fall 2000 use -0.7)."""
    return (np.asarray(wave_aa, dtype=float) / V_BAND_AA) ** index


# Pei (1992) Table 4: (a_i, lambda_i [um], b_i, n_i) for BKG, FUV, 2175 A, 9.7 um, 18 um and FIR terms.
_PEI92 = {
    "smc": ((185.0, 0.042, 90.0, 2.0), (27.0, 0.08, 5.50, 4.0), (0.005, 0.22, -1.95, 2.0),
            (0.010, 9.7, -1.95, 2.0), (0.012, 18.0, -1.80, 2.0), (0.030, 25.0, 0.0, 2.0)),
    "mw": ((165.0, 0.047, 90.0, 2.0), (14.0, 0.08, 4.00, 6.5), (0.045, 0.22, -1.95, 2.0),
           (0.002, 9.7, -1.95, 2.0), (0.002, 18.0, -1.80, 2.0), (0.012, 25.0, 0.0, 2.0)),
}


def _pei_xi(wave_aa: np.ndarray, which: str) -> np.ndarray:
    lam = np.asarray(wave_aa, dtype=float) / 1e4
    total = np.zeros_like(lam)
    for a, lam_i, b, n in _PEI92[which]:
        total += a / ((lam / lam_i) ** n + (lam_i / lam) ** n + b)
    return total


def pei92_a_over_ebv(wave_aa: np.ndarray, which: str = "smc") -> np.ndarray:
    """A(lambda) / E(B-V) of the Pei (1992) ``smc`` or ``mw`` fit."""
    if which not in _PEI92:
        raise ValueError(f"unknown Pei (1992) curve {which!r}; choose 'smc' or 'mw'")
    ref = _pei_xi(np.array([B_BAND_AA, V_BAND_AA]), which)
    return _pei_xi(wave_aa, which) / (ref[0] - ref[1])


def pei92_shape_v(wave_aa: np.ndarray, which: str = "mw") -> np.ndarray:
    """tau(lambda) / tau(5500 A) of a Pei (1992) curve."""
    return _pei_xi(wave_aa, which) / _pei_xi(np.array([V_BAND_AA]), which)[0]


@dataclass(frozen=True)
class AttenuationParts:
    """Attenuation of an SSP library as a sum of parts, each exp(-dust2 * shape(lambda)) on a fraction of each bin.

    ``fractions[p, k]`` is the fraction of age bin k's light attenuated with ``shapes[p]`` (lambda,); fractions sum
    to 1 over parts. Calzetti has one part; Charlot & Fall two (birth-cloud stars and the rest).
    """

    shapes: tuple[np.ndarray, ...]
    fractions: np.ndarray

    def transmission(self, dust2: float) -> np.ndarray:
        """exp(-tau) averaged over the parts, shape (n_age_bins, n_lambda), for one dust2 value."""
        out = 0.0
        for shape, frac in zip(self.shapes, self.fractions):
            out = out + frac[:, None] * np.exp(-dust2 * shape)[None, :]
        return out


def attenuation_parts(
    wave_aa: np.ndarray, age_edges_yr: np.ndarray, law: str = "calzetti", *, birth_cloud_ratio: float = 1.0
) -> AttenuationParts:
    """The attenuation of a library with age bins ``age_edges_yr`` under ``law`` (see the module docstring)."""
    n_bins = age_edges_yr.size - 1
    if law == "calzetti":
        return AttenuationParts((calzetti_shape(wave_aa),), np.ones((1, n_bins)))
    if law == "charlot_fall":
        diffuse = power_law_shape(wave_aa, -0.7)
        lo, hi = age_edges_yr[:-1], age_edges_yr[1:]
        young = np.clip((BIRTH_CLOUD_AGE_YR - lo) / (hi - lo), 0.0, 1.0)  # fraction of each bin younger than 10 Myr
        return AttenuationParts((diffuse * (1.0 + birth_cloud_ratio), diffuse), np.stack([young, 1.0 - young]))
    raise ValueError(f"unknown attenuation law {law!r}; choose one of {ATTENUATION_LAWS}")


__all__ = [
    "ATTENUATION_LAWS", "AttenuationParts", "attenuation_parts", "calzetti_k", "calzetti_shape",
    "pei92_a_over_ebv", "pei92_shape_v", "power_law_shape", "MAGNITUDE_PER_TAU",
]
