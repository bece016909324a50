"""Points of the unit hypercube for a block of global sample indices, by design ``method``.

Column 0 is the *partition axis* (redshift): it is stratified by index, u_i0 = (i + r_i) / N with r_i uniform,
so samples [a, b) are exactly those with u_0 in [a/N, b/N). A contiguous index range is therefore a contiguous
redshift band holding exactly b - a samples, whatever the number of ranks — which is how ranks get equal shares
of contiguous bands. The marginal of column 0 is still exactly uniform.

The other columns:
* ``uniform``          independent uniforms from a counter-based generator (seed, index);
* ``latin_hypercube``  column j is stratified through a keyed permutation π_j of the indices:
                       u_ij = (π_j(i) + r_ij) / N, so every column has exactly one point per 1/N stratum;
* ``sobol``            a scrambled Sobol' sequence (scipy) of dimension D-1, jumped to index a with
                       ``fast_forward``: low discrepancy in the non-partition columns.
"""

from __future__ import annotations

import warnings

import numpy as np

from hpcfit.sample.counter_rng import uniform_block
from hpcfit.sample.permutation import KeyedPermutation

METHODS = ("uniform", "latin_hypercube", "sobol")
_STREAM_JITTER, _STREAM_OTHER, _PERM_BASE = 1, 2, 1000


def unit_points(method: str, seed: int, start: int, stop: int, n_total: int, dim: int) -> np.ndarray:
    """(stop - start, dim) points in [0, 1)^dim for global indices start..stop-1 of n_total."""
    if method not in METHODS:
        raise ValueError(f"unknown sampling method '{method}' (allowed: {', '.join(METHODS)})")
    index = np.arange(start, stop, dtype=np.int64)
    jitter = uniform_block(seed, _STREAM_JITTER, start, stop, dim)
    out = np.empty((stop - start, dim))
    out[:, 0] = (index + jitter[:, 0]) / n_total
    if dim == 1:
        return out
    if method == "uniform":
        out[:, 1:] = uniform_block(seed, _STREAM_OTHER, start, stop, dim - 1)
    elif method == "latin_hypercube":
        for j in range(1, dim):
            strata = KeyedPermutation(n_total, seed * 7919 + _PERM_BASE + j)(index)
            out[:, j] = (strata + jitter[:, j]) / n_total
    else:
        from scipy.stats import qmc

        sobol = qmc.Sobol(d=dim - 1, scramble=True, seed=seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # balance warnings for non-power-of-two blocks
            if start:
                sobol.fast_forward(start)
            out[:, 1:] = sobol.random(stop - start)
    return out
