"""AGN emission: an accretion-disk power law and a dusty torus whose appearance depends on inclination.

Both shapes are returned as L_nu per unit bolometric luminosity (Hz^-1, integrating to 1 over the model grid with
``grid.frequency_weights``); the model multiplies them by a luminosity.

* Accretion disk: a broken power law in lambda L_lambda ~ lambda^s, continuous at the breaks, with
  s = +1.2 below 100 A (EUV turn-over), 0 for 100 A - 0.1 um, -0.5 for 0.1 - 5 um (f_nu ~ nu^-0.5, the mean
  optical/UV quasar slope, cf. Vanden Berk et al. 2001), and -3 beyond 5 um (Rayleigh-Jeans tail of the disk,
  f_nu ~ nu^2). Reddened by E(B-V) = ``agn_eb_v`` with the Pei (1992) SMC curve, the usual one for quasars.
* Torus (face-on): hot dust from the sublimation temperature (1500 K) down to 100 K, modelled as a sum of
  optically thin modified blackbodies (emissivity index beta = 1) with equal luminosity per logarithmic
  temperature interval, which gives the roughly flat nu L_nu from ~2 to ~30 um of type-1 AGN.
* Inclination i (degrees, 0 = face-on, 90 = edge-on): a line of sight within ``half_width`` degrees of the equatorial
  plane passes through the torus. The fraction of torus light seen through it rises smoothly,
  c(i) = sin^2(90 deg (i - (90 - half_width)) / half_width) for i > 90 - half_width (0 below), and that light is
  extincted by the torus's own dust, tau(lambda) = tau_V * [Milky-Way Pei (1992) curve], so an edge-on torus shows
  suppressed near-IR hot dust and 9.7 um silicate absorption:  L(i) = L_face [1 - c(i) + c(i) exp(-tau(lambda))].
  The torus luminosity parameter is the face-on (unobscured) bolometric luminosity. The disk is not obscured by the
  torus here: as in the reference (agnfinder), disk reddening is the separate ``agn_eb_v`` parameter.
"""

from __future__ import annotations

import numpy as np

from hpcfit.models.sed.attenuation import MAGNITUDE_PER_TAU, pei92_a_over_ebv, pei92_shape_v
from hpcfit.models.sed.grid import frequency_weights

DISK_BREAKS_AA = (100.0, 1000.0, 5.0e4)
DISK_SLOPES = (1.2, 0.0, -0.5, -3.0)  # of lambda L_lambda, between the breaks
TORUS_T_MAX_K = 1500.0
TORUS_T_MIN_K = 100.0
TORUS_BETA = 1.0
TORUS_N_TEMPERATURES = 24


def _unit_luminosity(wave: np.ndarray, lnu: np.ndarray) -> np.ndarray:
    return lnu / (lnu @ frequency_weights(wave))


def disk_shape(wave: np.ndarray) -> np.ndarray:
    """Accretion-disk L_nu per unit bolometric luminosity on ``wave`` (Angstrom)."""
    wave = np.asarray(wave, dtype=float)
    log_nu_lnu = np.zeros_like(wave)
    # Piecewise power law in lambda L_lambda, anchored to 1 at the 1000 A break and continuous at every break.
    edges = (0.0,) + DISK_BREAKS_AA + (np.inf,)
    anchor = {0: DISK_BREAKS_AA[0], 1: DISK_BREAKS_AA[1], 2: DISK_BREAKS_AA[1], 3: DISK_BREAKS_AA[2]}
    level = {1: 0.0, 2: 0.0}
    level[0] = level[1] + DISK_SLOPES[1] * np.log(DISK_BREAKS_AA[0] / DISK_BREAKS_AA[1])
    level[3] = level[2] + DISK_SLOPES[2] * np.log(DISK_BREAKS_AA[2] / DISK_BREAKS_AA[1])
    for seg, slope in enumerate(DISK_SLOPES):
        inside = (wave >= edges[seg]) & (wave < edges[seg + 1])
        log_nu_lnu[inside] = level[seg] + slope * np.log(wave[inside] / anchor[seg])
    lnu = np.exp(log_nu_lnu) * wave  # L_nu = (nu L_nu) / nu, nu ~ 1 / lambda
    return _unit_luminosity(wave, lnu)


def disk_reddening_shape(wave: np.ndarray) -> np.ndarray:
    """Optical depth per unit E(B-V) of the SMC curve: the disk is multiplied by exp(-agn_eb_v * this)."""
    return pei92_a_over_ebv(wave, "smc") / MAGNITUDE_PER_TAU


def torus_face_on_shape(wave: np.ndarray) -> np.ndarray:
    """Face-on torus L_nu per unit bolometric luminosity on ``wave`` (Angstrom)."""
    from hpcfit.models.blackbody import modified_blackbody_lnu

    wave = np.asarray(wave, dtype=float)
    temperatures = np.geomspace(TORUS_T_MIN_K, TORUS_T_MAX_K, TORUS_N_TEMPERATURES)
    components = modified_blackbody_lnu(wave, temperatures, TORUS_BETA)  # (n_T, n_wave), arbitrary scale
    fw = frequency_weights(wave)
    components = components / (components @ fw)[:, None]
    return _unit_luminosity(wave, components.mean(axis=0))


def torus_obscured_shape(wave: np.ndarray, tau_v: float) -> np.ndarray:
    """The face-on torus shape seen fully through the torus: times exp(-tau_v * Milky-Way curve)."""
    return torus_face_on_shape(wave) * np.exp(-tau_v * pei92_shape_v(wave, "mw"))


def torus_covering(inclination_deg: np.ndarray, half_width_deg: float) -> np.ndarray:
    """c(i): the fraction of torus light seen through the torus (0 face-on, 1 edge-on), see the module docstring."""
    inc = np.asarray(inclination_deg, dtype=float)
    start = 90.0 - half_width_deg
    phase = np.clip((inc - start) / half_width_deg, 0.0, 1.0)
    return np.sin(0.5 * np.pi * phase) ** 2
