"""Luminosity distance and cosmic age from ``astropy.cosmology``, tabulated once for fast batch lookup.

A cosmology is named by any of astropy's built-in realisations (``Planck18`` default, ``Planck15``, ``WMAP9``, ...).
Distances are tabulated on a fine redshift grid (astropy integrates numerically, ~20 us per redshift for Planck18
with massive neutrinos, far too slow per sample) and interpolated: the table holds D_L / z, which is smooth and
finite down to z = 0 (c / H0 there), so linear interpolation of it stays accurate to ~1e-7 relative at every z with
20 000 nodes up to z = 20 (interpolating D_L itself would be 4e-4 off near z = 0). D_L is floored at 10 pc (see
``constants``), so z = 0 is finite.

Both tables sit on fixed lattices (multiples of a step) and astropy computes every node on its own, so they are kept
in the disk cache (``hpcfit.disk_cache``) as one growing entry per cosmology, step and astropy version: a run needing
nodes beyond the stored ones computes only those and stores the longer table; a shorter range is a slice. A warm
cache spares every rank the ~0.7 s import of astropy.cosmology as well as the integrals.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np

from hpcfit import disk_cache
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
        self.name = cosmology_name
        self.z_max = float(z_max)
        n_nodes = int(np.ceil(self.z_max / dz)) + 2
        self.z_nodes = dz * np.arange(n_nodes)
        self.d_l_over_z = lattice_table("cosmology-distance", cosmology_name, dz, n_nodes, _distance_over_z)

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
    n_nodes = int(np.ceil(z_max / dz)) + 2
    return dz * np.arange(n_nodes), lattice_table("cosmology-age", cosmology_name, dz, n_nodes, _age_gyr)


def _distance_over_z(cosmo, dz: float, start: int, stop: int) -> np.ndarray:
    """D_L / z in metres at lattice nodes start..stop-1 (node 0: the limit c / H0)."""
    z = dz * np.arange(max(start, 1), stop)
    values = np.asarray(cosmo.luminosity_distance(z).to_value("Mpc")) * MPC_M / z
    if start == 0:
        hubble_distance = C_LIGHT_M_S / (cosmo.H0.to_value("km/(s Mpc)") * 1e3) * MPC_M  # D_L / z as z -> 0
        values = np.concatenate([[hubble_distance], values])
    return values


def _age_gyr(cosmo, dz: float, start: int, stop: int) -> np.ndarray:
    return np.asarray(cosmo.age(dz * np.arange(start, stop)).to_value("Gyr"))


def lattice_table(kind: str, cosmology_name: str, dz: float, n_nodes: int,
                  compute: Callable[[object, float, int, int], np.ndarray]) -> np.ndarray:
    """Values at lattice nodes 0..n_nodes-1 (z = k dz): the cached prefix, extended by ``compute(cosmology, dz,
    start, stop)`` for the nodes it lacks (and stored longer). astropy evaluates each node independently, so the
    values do not depend on how the range was split (tested)."""
    inputs = (cosmology_name, float(dz), disk_cache.package_version("astropy"), disk_cache.code_signature(__file__))
    have = _stored(kind, inputs)
    if have.size >= n_nodes:
        return have[:n_nodes].copy()
    values = np.concatenate([have, compute(get_cosmology(cosmology_name), dz, have.size, n_nodes)])
    # Ranks of one job need different ranges and write at the same time: never replace a longer table.
    if _stored(kind, inputs).size < values.size:
        disk_cache.store(kind, inputs, {"values": values})
    return values


def _stored(kind: str, inputs: tuple) -> np.ndarray:
    entry = disk_cache.load(kind, inputs)
    values = entry.get("values") if entry is not None else None
    return values if values is not None and values.ndim == 1 else np.empty(0)
