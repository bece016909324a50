"""Planck function and optically thin modified blackbody dust emission, vectorised over parameter arrays.

Units (SI throughout):

* ``planck_nu(wavelength_angstrom, temperature)`` -> B_nu in W m^-2 Hz^-1 sr^-1.
* ``modified_blackbody_lnu(wavelength_angstrom, temperature, beta)`` -> L_nu in W Hz^-1 per solar mass of dust,
  for optically thin emission  L_nu = 4 pi M_dust kappa_nu B_nu(T),  kappa_nu = kappa_0 (nu / nu_0)^beta.

Default opacity: kappa(350 um) = 0.192 m^2 kg^-1 (Draine 2003, ARA&A 41, 241, the value tabulated for Milky-Way
dust and the one adopted by e.g. the Herschel Reference Survey and DustPedia MBB fits), beta = 2. Both are
keyword arguments; any (kappa_0, lambda_0) pair can be passed.

Parameters broadcast: ``temperature`` and ``beta`` may be arrays of any (mutually broadcastable) shape ``S``;
the result has shape ``S + (n_lambda,)``. The Planck function is written with ``exp(-x) / (1 - exp(-x))`` so that
it neither overflows in the Wien tail (large x) nor loses precision in the Rayleigh-Jeans limit (small x).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

H_PLANCK = 6.62607015e-34  # J s
K_BOLTZMANN = 1.380649e-23  # J / K
C_LIGHT = 2.99792458e8  # m / s
M_SUN_KG = 1.98840987e30  # IAU 2015 nominal solar mass (G M_sun / G)

KAPPA_350UM_M2_PER_KG = 0.192
KAPPA_REFERENCE_WAVELENGTH_UM = 350.0
DEFAULT_BETA = 2.0


def _frequency_hz(wavelength_angstrom: ArrayLike) -> np.ndarray:
    wavelength = np.asarray(wavelength_angstrom, dtype=float)
    if np.any(wavelength <= 0):
        raise ValueError("wavelengths must be positive (Angstrom)")
    return C_LIGHT / (wavelength * 1e-10)


def planck_nu(wavelength_angstrom: ArrayLike, temperature: ArrayLike) -> np.ndarray:
    """Planck B_nu(T) in W m^-2 Hz^-1 sr^-1 at the given wavelengths (Angstrom).

    ``temperature`` (K) of shape S gives a result of shape S + wavelength.shape.
    """
    nu = _frequency_hz(wavelength_angstrom)
    temp = np.asarray(temperature, dtype=float)
    if np.any(temp <= 0):
        raise ValueError("temperature must be positive (K)")
    x = H_PLANCK * nu / (K_BOLTZMANN * temp[..., np.newaxis])
    # exp(-x) / -expm1(-x) == 1 / (exp(x) - 1) without overflow for large x and accurate for small x.
    occupation = np.exp(-x) / -np.expm1(-x)
    return 2.0 * H_PLANCK * nu**3 / C_LIGHT**2 * occupation


def dust_opacity(
    wavelength_angstrom: ArrayLike,
    beta: ArrayLike = DEFAULT_BETA,
    *,
    kappa0: float = KAPPA_350UM_M2_PER_KG,
    reference_wavelength_um: float = KAPPA_REFERENCE_WAVELENGTH_UM,
) -> np.ndarray:
    """Power-law mass absorption coefficient kappa_nu = kappa0 (lambda0 / lambda)^beta in m^2 kg^-1.

    ``beta`` of shape S gives a result of shape S + wavelength.shape.
    """
    wavelength = np.asarray(wavelength_angstrom, dtype=float)
    ratio = (reference_wavelength_um * 1e4) / wavelength
    return kappa0 * ratio ** np.asarray(beta, dtype=float)[..., np.newaxis]


def modified_blackbody_lnu(
    wavelength_angstrom: ArrayLike,
    temperature: ArrayLike,
    beta: ArrayLike = DEFAULT_BETA,
    *,
    kappa0: float = KAPPA_350UM_M2_PER_KG,
    reference_wavelength_um: float = KAPPA_REFERENCE_WAVELENGTH_UM,
) -> np.ndarray:
    """Optically thin modified blackbody: L_nu = 4 pi kappa_nu B_nu(T) per solar mass of dust, in W Hz^-1 Msun^-1.

    ``temperature`` and ``beta`` broadcast together to shape S; the result has shape S + (n_lambda,). Multiply by
    a dust mass in Msun for the luminosity density of that mass; divide by 4 pi D^2 (m) for a flux density.
    """
    temp, slope = np.broadcast_arrays(np.asarray(temperature, float), np.asarray(beta, float))
    kappa = dust_opacity(
        wavelength_angstrom, slope, kappa0=kappa0, reference_wavelength_um=reference_wavelength_um
    )
    return 4.0 * np.pi * kappa * planck_nu(wavelength_angstrom, temp) * M_SUN_KG
