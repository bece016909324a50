"""Luminosity distance and cosmic age from ``astropy.cosmology``, tabulated once for fast batch lookup.

A cosmology is named by any of astropy's built-in realisations (``Planck18`` default, ``Planck15``, ``WMAP9``, ...).
Distances are tabulated on a fine redshift grid (astropy integrates numerically, ~20 us per redshift for Planck18
with massive neutrinos, far too slow per sample) and interpolated: the table holds D_L / z, which is smooth and
finite down to z = 0 (c / H0 there), so linear interpolation of it stays accurate to ~1e-7 relative at every z with
20 000 nodes up to z = 20 (interpolating D_L itself would be 4e-4 off near z = 0). D_L is floored at 10 pc (see
``constants``), so z = 0 is finite.
"""

from __future__ import annotations

import functools

import numpy as np

from hpcfit.models.sed.constants import C_LIGHT_M_S, MIN_LUMINOSITY_DISTANCE_M, MPC_M


def available_cosmologies() -> tuple[str, ...]:
    """Names accepted by :func:`get_cosmology`."""
    from astropy.cosmology import realizations

    return tuple(realizations.available)


def get_cosmology(name: str = "Planck18"):
    """The astropy cosmology realisation called ``name``; ValueError listing the allowed names otherwise."""
    import astropy.cosmology

    allowed = available_cosmologies()
    if name not in allowed:
        raise ValueError(f"unknown cosmology {name!r}; allowed: {', '.join(allowed)}")
    return getattr(astropy.cosmology, name)


class DistanceTable:
    """D_L(z) in metres on [0, z_max], interpolated from a fine astropy tabulation.

    The nodes sit on a fixed lattice (multiples of ``dz``) whatever z_max is, so tables built for different
    ranges interpolate identically where they overlap.
    """

    def __init__(self, cosmology_name: str = "Planck18", z_max: float = 20.0, dz: float = 1e-3):
        cosmo = get_cosmology(cosmology_name)
        self.name = cosmology_name
        self.z_max = float(z_max)
        self.z_nodes = dz * np.arange(int(np.ceil(self.z_max / dz)) + 2)
        d_l = np.asarray(cosmo.luminosity_distance(self.z_nodes[1:]).to_value("Mpc")) * MPC_M
        hubble_distance = C_LIGHT_M_S / (cosmo.H0.to_value("km/(s Mpc)") * 1e3) * MPC_M  # D_L / z as z -> 0
        self.d_l_over_z = np.concatenate([[hubble_distance], d_l / self.z_nodes[1:]])

    def luminosity_distance_m(self, z: np.ndarray) -> np.ndarray:
        """D_L (m), floored at 10 pc; raises for z outside [0, z_max]."""
        z = np.asarray(z, dtype=float)
        if z.size and (z.min() < 0.0 or z.max() > self.z_max):
            raise ValueError(f"redshift outside [0, {self.z_max}]: {z.min()} .. {z.max()}")
        return np.maximum(z * np.interp(z, self.z_nodes, self.d_l_over_z), MIN_LUMINOSITY_DISTANCE_M)


@functools.lru_cache(maxsize=8)
def age_of_universe_gyr(cosmology_name: str = "Planck18", z: float = 0.0) -> float:
    """Cosmic age (Gyr) at redshift z."""
    return float(get_cosmology(cosmology_name).age(z).to_value("Gyr"))


def age_table(cosmology_name: str, z_max: float, dz: float = 0.02) -> tuple[np.ndarray, np.ndarray]:
    """(z nodes, cosmic age in Gyr) for linear interpolation, nodes on a fixed lattice of step dz (age varies
    smoothly; dz = 0.02 gives < 1e-4)."""
    z = dz * np.arange(int(np.ceil(z_max / dz)) + 2)
    return z, np.asarray(get_cosmology(cosmology_name).age(z).to_value("Gyr"))
