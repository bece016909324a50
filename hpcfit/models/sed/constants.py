"""Physical constants and unit conversions shared by the SED components (SI units throughout).

Luminosity densities are L_nu in W Hz^-1, wavelengths in Angstrom, distances in metres, fluxes in maggies
(f_nu / 3631 Jy). The solar luminosity used to convert BC03's native L_sun/Angstrom is the one BC03 itself
adopts (3.826e33 erg/s), so the library is reproduced exactly; it differs from the IAU nominal value by 0.05 %.
"""

from __future__ import annotations

C_LIGHT_M_S = 2.99792458e8
C_LIGHT_AA_S = C_LIGHT_M_S * 1e10
L_SUN_W = 3.826e26
PARSEC_M = 3.0856775814913673e16
MPC_M = PARSEC_M * 1e6
JANSKY_SI = 1e-26  # W m^-2 Hz^-1
AB_ZERO_POINT_SI = 3631.0 * JANSKY_SI  # f_nu of a 0-mag AB source, W m^-2 Hz^-1
YEAR_S = 3.15576e7  # Julian year
GYR_YR = 1e9

# Below this the luminosity distance is floored: a source "at z = 0" is placed at 10 pc, the absolute-magnitude
# convention (the same choice FSPS/Prospector make for zred = 0), so fluxes stay finite over [0, z_max].
MIN_LUMINOSITY_DISTANCE_M = 10.0 * PARSEC_M
