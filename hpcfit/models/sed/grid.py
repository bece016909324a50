"""Rest-frame wavelength grid and exact integrals of tabulated functions over bins.

All components are evaluated on one log-spaced rest-frame grid (Angstrom): fine (R = 1000 by default) from the
far UV to the mid-IR where stellar features and filter edges matter, coarser (R = 200) in the far-IR/sub-mm where
only smooth dust continua live. Rebinning a finer tabulation onto it (or a coarse one onto finer bins) uses the
exact integral of the piecewise-linear interpolant, so bolometric luminosities are preserved.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from hpcfit.models.sed.constants import C_LIGHT_AA_S


def log_grid(start: float, stop: float, resolution: float) -> np.ndarray:
    """Log-spaced points from ``start`` to ``stop`` with lambda / d(lambda) = ``resolution``."""
    n = int(np.ceil(np.log(stop / start) * resolution)) + 1
    return np.geomspace(start, stop, n)


def default_wavelength_grid(
    lo: float = 50.0, split: float = 5e4, hi: float = 1e8, r_fine: float = 1000.0, r_coarse: float = 200.0
) -> np.ndarray:
    """Default rest-frame grid (Angstrom): R = r_fine on [lo, split], R = r_coarse on (split, hi]."""
    fine = log_grid(lo, split, r_fine)
    coarse = log_grid(split, hi, r_coarse)[1:]
    return np.concatenate([fine, coarse])


def bin_edges(centres: ArrayLike) -> np.ndarray:
    """Edges halfway (geometrically) between log-spaced centres; the outer edges mirror the first/last step."""
    x = np.asarray(centres, dtype=float)
    mid = np.sqrt(x[1:] * x[:-1])
    first = x[0] ** 2 / mid[0]
    last = x[-1] ** 2 / mid[-1]
    return np.concatenate([[first], mid, [last]])


def cumulative_linear(x: np.ndarray, y: np.ndarray, at: np.ndarray) -> np.ndarray:
    """Integral from x[0] to each point of ``at`` of the piecewise-linear interpolant of y(x) (along the last axis).

    ``y`` may have leading axes. Outside [x[0], x[-1]] the integrand is zero (no extrapolation).
    """
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    at = np.clip(np.asarray(at, dtype=float), x[0], x[-1])
    dx = np.diff(x)
    steps = 0.5 * (y[..., 1:] + y[..., :-1]) * dx
    cum = np.concatenate([np.zeros(y.shape[:-1] + (1,)), np.cumsum(steps, axis=-1)], axis=-1)
    i = np.clip(np.searchsorted(x, at, side="right") - 1, 0, x.size - 2)
    h = at - x[i]
    slope = (y[..., i + 1] - y[..., i]) / dx[i]
    return cum[..., i] + y[..., i] * h + 0.5 * slope * h * h


def bin_average(x: np.ndarray, y: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Average of the piecewise-linear interpolant of y(x) over each [edges[j], edges[j+1]] (last axis).

    The part of a bin outside the tabulated range counts as zero, so a bin half outside gets half the mean.
    """
    edges = np.asarray(edges, dtype=float)
    integral = np.diff(cumulative_linear(x, y, edges), axis=-1)
    return integral / np.diff(edges)


def frequency_weights(wave: np.ndarray) -> np.ndarray:
    """Quadrature weights w such that sum(L_nu * w) = integral of L_nu d(nu) on this wavelength grid (Hz).

    Trapezoid rule in nu; every bolometric luminosity in the model uses these same weights, so that the energy
    absorbed by dust and the energy it re-emits are computed with one rule and balance to round-off.
    """
    nu = C_LIGHT_AA_S / np.asarray(wave, dtype=float)
    dnu = -np.diff(nu)  # nu decreases with wavelength
    w = np.zeros_like(nu)
    w[:-1] += 0.5 * dnu
    w[1:] += 0.5 * dnu
    return w
