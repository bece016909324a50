"""Mergeable per-galaxy results of a grid fit: the best model (MINLOC) and likelihood-weighted moments (log-sum-exp).

Each rank sees a slice of the model grid; each accumulator built from one (galaxy block x model slice) is a partial
result, and ``merge`` combines two partials of the same galaxies into the partial of the union of their models.
``merge`` is commutative and, in exact arithmetic, associative, so any reduction tree gives the global answer: the
best fit bit for bit (a MINLOC is an exact selection), the moments to rounding (~1e-15 relative).

Best fit, per galaxy: (chi2, global model index, scale). Rule: the smaller chi2 wins; equal chi2 -> the lower
index; NaN chi2 counts as +inf; index -1 marks "no model yet" and loses every tie.

Moments, per galaxy, with ln L = -chi2 / 2 (CIGALE's likelihood) over the models seen so far:

* ``log_lmax`` = max ln L, the log-sum-exp shift; ``wsum`` = sum exp(ln L - log_lmax) (so ln sum L =
  log_lmax + ln wsum),
* per quantity q: ``weight`` W_q = sum of those weights over models where q is defined (all of them for grid
  parameters; a log quantity is undefined where the scale is <= 0), ``mean`` mu_q = weighted mean and ``m2``
  M2_q = sum w (x - mu_q)^2, all relative to the same ``log_lmax``.

Keeping (W, mu, M2) instead of raw sums sum w x, sum w x^2 is what keeps the variance exact: the merge of
Chan, Golub & LeVeque (1979) never subtracts two large numbers. Merging a and b:

    m = max(m_a, m_b);  alpha = exp(m_a - m);  beta = exp(m_b - m)
    wsum = alpha wsum_a + beta wsum_b;  W_a' = alpha W_a;  W_b' = beta W_b;  W = W_a' + W_b'
    delta = mu_b - mu_a;  mu = mu_a + delta W_b' / W;  M2 = alpha M2_a + beta M2_b + delta^2 W_a' W_b' / W

(a side with zero weight is simply dropped). Finally mean = mu and std = sqrt(M2 / W), as CIGALE's weighted mean
and standard deviation over all models. Inside a block the moments are computed with matrix products about a fixed
shift (the slice mean of each grid parameter; the best model's value of each scale quantity), M2 = S2 - S1^2 / W,
whose rounding error is ~1e-16 S2. Rows where M2 < 1e-4 S2 (a posterior ~100 times narrower than the grid's
spread, where that error would exceed ~1e-12 of M2) are recomputed exactly in a second, elementwise pass over
their rows, so std is good to ~1e-11 relative whatever the posterior width.

Shipping them with MPI (the engine's job): ``pack()`` gives one contiguous float64 array, one record per galaxy
(``BestFit``: 3 + E doubles [chi2, index, scale, extra_1..E]; ``Moments``: 2 + 3 Q doubles [log_lmax, wsum,
W_1..Q, mu_1..Q, M2_1..Q]). Either Allgather the packed partials and fold them locally with ``merge_best_packed`` /
``merge_moments_packed`` in rank order (deterministic for a given rank count), or build an MPI user-defined op on a
contiguous datatype of one record (so MPI never splits a record) whose body is ``inout[:] = merge_*(in, inout)``.
``BestFit`` alone also maps onto MPI.MINLOC with MPI.DOUBLE_INT (its tie rule is MPI's), the scale then travelling
separately.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from hpcfit.gridfit.chi2 import DEFAULT_TILE_ELEMENTS, TILE_ROWS

BEST_RECORD = 3
# Below this ratio of M2 to the shifted second moment, the one-pass variance is recomputed exactly.
VARIANCE_RECOMPUTE_RATIO = 1e-4


# --------------------------------------------------------------------------------------------------------------
# Best fit (MINLOC)
# --------------------------------------------------------------------------------------------------------------


@dataclass(eq=False)
class BestFit:
    """Best model so far of each galaxy: chi2 (G,), global model index (G,) int64 (-1 = none), scale (G,).

    ``extra`` (G, E) is a payload that travels with the winning record, e.g. the best model's grid parameters and
    band fluxes, so no rank ever needs the whole grid to report the best fit.
    """

    chi2: np.ndarray
    index: np.ndarray
    scale: np.ndarray
    extra: np.ndarray

    @classmethod
    def empty(cls, n_galaxies: int, n_extra: int = 0) -> BestFit:
        return cls(
            np.full(n_galaxies, np.inf),
            np.full(n_galaxies, -1, dtype=np.int64),
            np.zeros(n_galaxies),
            np.full((n_galaxies, n_extra), np.nan),
        )

    @classmethod
    def from_block(
        cls,
        local_index: ArrayLike,
        chi2: ArrayLike,
        scale: ArrayLike,
        first_index: int | ArrayLike = 0,
        extra: ArrayLike | None = None,
    ) -> BestFit:
        """From :func:`~hpcfit.gridfit.chi2.best_in_block` output of a slice.

        ``first_index``: global index of the slice's first model (contiguous slice), or the (N,) ascending global
        indices of the slice's models. Ascending matters: the in-slice argmin breaks ties by lowest local index.
        ``extra``: (G, E) payload of the chosen models (e.g. ``params[local_index]``).
        """
        local = np.asarray(local_index, dtype=np.int64)
        offsets = np.asarray(first_index)
        if offsets.ndim == 0:
            glob = local + int(offsets)
        else:
            glob = offsets.astype(np.int64)[np.maximum(local, 0)]
        glob = np.where(local < 0, -1, glob)
        n = local.shape[0]
        payload = np.zeros((n, 0)) if extra is None else np.asarray(extra, dtype=np.float64).reshape(n, -1)
        return cls(np.asarray(chi2, dtype=np.float64).copy(), glob, np.asarray(scale, dtype=np.float64).copy(),
                   payload.copy())

    @property
    def n_galaxies(self) -> int:
        return self.chi2.shape[0]

    @property
    def n_extra(self) -> int:
        return self.extra.shape[1]

    @property
    def record_size(self) -> int:
        return BEST_RECORD + self.n_extra

    def merge(self, other: BestFit) -> BestFit:
        """MINLOC of two partials of the same galaxies (lowest chi2, then lowest index)."""
        if other.n_extra != self.n_extra:
            raise ValueError(f"cannot merge best fits with {other.n_extra} and {self.n_extra} extra columns")
        return BestFit.unpack(merge_best_packed(self.pack(), other.pack(), self.n_extra), self.n_extra)

    def pack(self) -> np.ndarray:
        """Flat float64 array, record per galaxy [chi2, index, scale, extra...] (indices exact below 2**53)."""
        out = np.empty((self.n_galaxies, self.record_size))
        out[:, 0], out[:, 1], out[:, 2] = self.chi2, self.index, self.scale
        out[:, BEST_RECORD:] = self.extra
        return out.reshape(-1)

    @classmethod
    def unpack(cls, buffer: ArrayLike, n_extra: int = 0) -> BestFit:
        rec = np.asarray(buffer, dtype=np.float64).reshape(-1, BEST_RECORD + n_extra)
        return cls(rec[:, 0].copy(), rec[:, 1].astype(np.int64), rec[:, 2].copy(), rec[:, BEST_RECORD:].copy())


def merge_best_packed(a: ArrayLike, b: ArrayLike, n_extra: int = 0) -> np.ndarray:
    """The MINLOC reduction on packed best-fit buffers (the body of an MPI user op); whole records are selected."""
    rec = BEST_RECORD + int(n_extra)
    ra = np.asarray(a, dtype=np.float64).reshape(-1, rec)
    rb = np.asarray(b, dtype=np.float64).reshape(-1, rec)
    if ra.shape != rb.shape:
        raise ValueError(f"cannot merge best fits of {ra.shape[0]} and {rb.shape[0]} galaxies")
    ca, cb = (np.where(np.isnan(r[:, 0]), np.inf, r[:, 0]) for r in (ra, rb))
    ia, ib = (np.where(r[:, 1] < 0, np.inf, r[:, 1]) for r in (ra, rb))
    take_b = (cb < ca) | ((cb == ca) & (ib < ia))
    return np.where(take_b[:, None], rb, ra).reshape(-1)


# --------------------------------------------------------------------------------------------------------------
# Likelihood-weighted moments (log-sum-exp)
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ScaleQuantity:
    """A per-pair quantity derived from the fitted scale: x = scale * unit, or log10 of it (e.g. log dust mass).

    ``unit`` is a scalar or one value per model of the slice (N,), e.g. the dust mass per unit normalisation.
    """

    name: str
    unit: float | np.ndarray = 1.0
    log10: bool = True


@dataclass(eq=False)
class Moments:
    """Likelihood-weighted moments of named quantities for G galaxies (see the module docstring)."""

    names: tuple[str, ...]
    log_lmax: np.ndarray  # (G,)
    wsum: np.ndarray  # (G,)
    weight: np.ndarray  # (G, Q)
    mean: np.ndarray  # (G, Q)
    m2: np.ndarray  # (G, Q)

    @classmethod
    def empty(cls, n_galaxies: int, names: Sequence[str]) -> Moments:
        q = len(names)
        return cls(
            tuple(names),
            np.full(n_galaxies, -np.inf),
            np.zeros(n_galaxies),
            np.zeros((n_galaxies, q)),
            np.full((n_galaxies, q), np.nan),
            np.zeros((n_galaxies, q)),
        )

    @property
    def n_galaxies(self) -> int:
        return self.log_lmax.shape[0]

    @property
    def record_size(self) -> int:
        return 2 + 3 * len(self.names)

    def merge(self, other: Moments) -> Moments:
        """Moments over the union of the two partials' models (same galaxies, same quantity names)."""
        if other.names != self.names:
            raise ValueError(f"cannot merge moments of {other.names} into {self.names}")
        return Moments.unpack(merge_moments_packed(self.pack(), other.pack(), len(self.names)), self.names)

    def pack(self) -> np.ndarray:
        """Flat float64 array, record per galaxy [log_lmax, wsum, W_1..Q, mu_1..Q, M2_1..Q]."""
        q = len(self.names)
        out = np.empty((self.n_galaxies, self.record_size))
        out[:, 0], out[:, 1] = self.log_lmax, self.wsum
        out[:, 2 : 2 + q], out[:, 2 + q : 2 + 2 * q], out[:, 2 + 2 * q :] = self.weight, self.mean, self.m2
        return out.reshape(-1)

    @classmethod
    def unpack(cls, buffer: ArrayLike, names: Sequence[str]) -> Moments:
        q = len(names)
        rec = np.asarray(buffer, dtype=np.float64).reshape(-1, 2 + 3 * q)
        return cls(
            tuple(names),
            rec[:, 0].copy(),
            rec[:, 1].copy(),
            rec[:, 2 : 2 + q].copy(),
            rec[:, 2 + q : 2 + 2 * q].copy(),
            rec[:, 2 + 2 * q :].copy(),
        )

    def log_likelihood_sum(self) -> np.ndarray:
        """ln sum_models exp(-chi2 / 2) per galaxy (-inf where no model was seen)."""
        with np.errstate(divide="ignore"):
            return self.log_lmax + np.log(self.wsum)

    def finalise(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """{name: (mean, std)} per galaxy; NaN where a quantity had no weight."""
        with np.errstate(divide="ignore", invalid="ignore"):
            std = np.sqrt(np.maximum(self.m2, 0.0) / self.weight)
        mean = np.where(self.weight > 0, self.mean, np.nan)
        std = np.where(self.weight > 0, std, np.nan)
        return {name: (mean[:, i].copy(), std[:, i].copy()) for i, name in enumerate(self.names)}

    @classmethod
    def from_block(
        cls,
        chi2: np.ndarray,
        params: ArrayLike,
        param_names: Sequence[str],
        *,
        scale: np.ndarray | None = None,
        scale_quantities: Sequence[ScaleQuantity] = (),
        best_local: ArrayLike | None = None,
        tile_elements: int = DEFAULT_TILE_ELEMENTS,
    ) -> Moments:
        """Moments of one (galaxy block x model slice): chi2 (G, N), params (N, P) of the slice's models.

        ``scale`` (G, N) is needed for ``scale_quantities``; ``best_local`` (G,) (argmin of chi2 per row, computed
        if absent) fixes their shift.
        """
        return _BlockMoments(chi2, params, param_names, scale, scale_quantities, best_local).run(tile_elements)


def merge_moments_packed(a: ArrayLike, b: ArrayLike, n_quantities: int) -> np.ndarray:
    """The log-sum-exp / Chan merge on packed moment buffers (the body of an MPI user op)."""
    q = int(n_quantities)
    rec = 2 + 3 * q
    ra = np.asarray(a, dtype=np.float64).reshape(-1, rec)
    rb = np.asarray(b, dtype=np.float64).reshape(-1, rec)
    if ra.shape != rb.shape:
        raise ValueError(f"cannot merge moments of {ra.shape[0]} and {rb.shape[0]} galaxies")
    ma, mb = ra[:, 0], rb[:, 0]
    m = np.maximum(ma, mb)
    finite = np.isfinite(m)
    m_safe = np.where(finite, m, 0.0)
    with np.errstate(invalid="ignore", over="ignore"):
        alpha = np.where(finite, np.exp(ma - m_safe), 0.0)[:, None]
        beta = np.where(finite, np.exp(mb - m_safe), 0.0)[:, None]
    out = np.empty_like(ra)
    out[:, 0] = m
    out[:, 1] = alpha[:, 0] * ra[:, 1] + beta[:, 0] * rb[:, 1]
    wa = alpha * ra[:, 2 : 2 + q]
    wb = beta * rb[:, 2 : 2 + q]
    mua, mub = ra[:, 2 + q : 2 + 2 * q], rb[:, 2 + q : 2 + 2 * q]
    m2a, m2b = ra[:, 2 + 2 * q :], rb[:, 2 + 2 * q :]
    w = wa + wb
    both = (wa > 0) & (wb > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        delta = np.where(both, mub - mua, 0.0)
        frac_b = np.where(both, wb / w, 0.0)
        mu = np.where(both, mua + delta * frac_b, np.where(wb > 0, mub, mua))
        m2 = np.where(wa > 0, alpha * m2a, 0.0) + np.where(wb > 0, beta * m2b, 0.0) + delta * delta * wa * frac_b
    out[:, 2 : 2 + q] = w
    out[:, 2 + q : 2 + 2 * q] = mu
    out[:, 2 + 2 * q :] = m2
    return out.reshape(-1)


class _BlockMoments:
    """One pass over a (G, N) chi2 block in cache-sized tiles, accumulating shifted sums, then an exact fix-up."""

    def __init__(
        self,
        chi2: np.ndarray,
        params: ArrayLike,
        param_names: Sequence[str],
        scale: np.ndarray | None,
        scale_quantities: Sequence[ScaleQuantity],
        best_local: ArrayLike | None,
    ):
        self.chi2 = np.asarray(chi2, dtype=np.float64)
        n_gal, n_mod = self.chi2.shape
        x = np.asarray(params, dtype=np.float64).reshape(n_mod, -1) if n_mod else np.zeros((0, len(param_names)))
        if x.shape[1] != len(param_names):
            raise ValueError(f"params have {x.shape[1]} columns for {len(param_names)} names")
        if scale_quantities and (scale is None or np.shape(scale) != self.chi2.shape):
            raise ValueError("scale quantities need the (G, N) scale block")
        self.params = x
        self.names = tuple(param_names) + tuple(q.name for q in scale_quantities)
        if len(set(self.names)) != len(self.names):
            raise ValueError(f"duplicate quantity names: {self.names}")
        self.scale = scale
        self.quantities = tuple(scale_quantities)
        self.n_gal, self.n_mod = n_gal, n_mod
        self.best = (
            np.argmin(self.chi2, axis=1) if best_local is None else np.asarray(best_local, dtype=np.int64)
        ) if n_mod else np.zeros(n_gal, dtype=np.int64)
        rows = np.arange(n_gal)
        self.chi2_min = self.chi2[rows, self.best] if n_mod else np.full(n_gal, np.inf)
        # Grid parameters about their slice mean: [1, x - c, (x - c)^2] so one GEMM per tile gives all sums.
        self.param_shift = x.mean(axis=0) if n_mod else np.zeros(x.shape[1])
        xc = x - self.param_shift
        self.design = np.hstack([np.ones((n_mod, 1)), xc, xc * xc])
        self.log_units = [self._unit_term(q) for q in self.quantities]
        self.unit_is_constant = [np.ndim(q.unit) == 0 for q in self.quantities]
        self.q_shift = np.array([self._quantity_at(i, rows, self.best) for i in range(len(self.quantities))]).T
        self.q_shift = np.where(np.isfinite(self.q_shift), self.q_shift, 0.0).reshape(n_gal, len(self.quantities))

    def _unit_term(self, q: ScaleQuantity) -> np.ndarray:
        u = np.broadcast_to(np.asarray(q.unit, dtype=np.float64), (self.n_mod,))
        if q.log10 and not np.all(u > 0):
            raise ValueError(f"scale quantity {q.name!r}: units must be positive for log10")
        return np.log10(u) if q.log10 else u

    def _transform(self, i: int, s: np.ndarray, cols: slice | np.ndarray) -> np.ndarray:
        """Quantity i for scales s (.., n) at model columns ``cols``; NaN where undefined."""
        q, u = self.quantities[i], self.log_units[i][cols]
        if not q.log10:
            return s * u
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(s > 0, np.log10(np.where(s > 0, s, 1.0)) + u, np.nan)

    def _quantity_at(self, i: int, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        if self.n_mod == 0:
            return np.zeros(rows.size)
        return self._transform(i, self.scale[rows, cols], cols)

    def _weights(self, rows: slice | np.ndarray, cols: slice, out: np.ndarray | None = None) -> np.ndarray:
        """exp(-(chi2 - chi2_min) / 2) of a tile, written into ``out``."""
        c = self.chi2[rows, cols]
        w = np.multiply(c, -0.5, out=out)
        w += 0.5 * self.chi2_min[rows, None]
        return np.exp(w, out=w)

    def run(self, tile_elements: int) -> Moments:
        n_gal, n_mod, p = self.n_gal, self.n_mod, self.params.shape[1]
        nq = len(self.quantities)
        if n_gal == 0 or n_mod == 0:
            return Moments.empty(n_gal, self.names)
        sums = np.zeros((n_gal, 1 + 2 * p))  # [W, S1_p, S2_p]
        qsum = np.zeros((n_gal, 3, nq))  # [W_q, S1_q, S2_q]
        rows_t = min(n_gal, TILE_ROWS)
        cols_t = min(n_mod, max(256, tile_elements // rows_t))
        w_buf = np.empty((rows_t, cols_t))
        for g0 in range(0, n_gal, rows_t):
            g1 = min(g0 + rows_t, n_gal)
            for n0 in range(0, n_mod, cols_t):
                n1 = min(n0 + cols_t, n_mod)
                cols = slice(n0, n1)
                w = self._weights(slice(g0, g1), cols, out=w_buf[: g1 - g0, : n1 - n0])
                sums[g0:g1] += w @ self.design[cols]
                for i in range(nq):
                    qsum[g0:g1, :, i] += self._quantity_tile(i, w, slice(g0, g1), cols)

        wsum = sums[:, 0]
        weight = np.empty((n_gal, p + nq))
        s1 = np.empty_like(weight)
        s2 = np.empty_like(weight)
        weight[:, :p], s1[:, :p], s2[:, :p] = wsum[:, None], sums[:, 1 : 1 + p], sums[:, 1 + p :]
        weight[:, p:], s1[:, p:], s2[:, p:] = qsum[:, 0], qsum[:, 1], qsum[:, 2]
        shift = np.hstack([np.broadcast_to(self.param_shift, (n_gal, p)), self.q_shift])
        with np.errstate(divide="ignore", invalid="ignore"):
            dmean = np.where(weight > 0, s1 / weight, 0.0)
            m2 = np.maximum(s2 - dmean * s1, 0.0)
        mean = np.where(weight > 0, shift + dmean, np.nan)
        unresolved = np.flatnonzero(np.any((weight > 0) & (m2 < VARIANCE_RECOMPUTE_RATIO * s2), axis=1))
        if unresolved.size:
            m2[unresolved] = self._exact_m2(unresolved, mean[unresolved], tile_elements)
        return Moments(self.names, -0.5 * self.chi2_min, wsum, weight, mean, m2)

    def _quantity_tile(self, i: int, w: np.ndarray, rows: slice, cols: slice) -> np.ndarray:
        """[W_q, sum w d, sum w d^2] of scale quantity i over a tile, d = x - shift."""
        s = self.scale[rows, cols]
        q, unit = self.quantities[i], self.log_units[i]
        shift = self.q_shift[rows, i, None]
        defined = None
        if not q.log10:
            d = s * unit[cols]
        elif s.min() > 0:  # the usual case: every scale positive, no masking passes
            d = np.log10(s)
        else:
            defined = s > 0
            d = np.log10(np.where(defined, s, 1.0))
        if q.log10:
            # A per-model unit costs one pass; a constant one is folded into the per-galaxy shift.
            if self.unit_is_constant[i]:
                shift = shift - unit[0]
            else:
                d += unit[cols]
        d -= shift
        wq = w
        if defined is not None:
            wq = np.where(defined, w, 0.0)
            d[~defined] = 0.0
        wd = wq * d
        return np.stack([wq.sum(axis=1), wd.sum(axis=1), np.einsum("ij,ij->i", wd, d)], axis=1)

    def _exact_m2(self, rows: np.ndarray, mean: np.ndarray, tile_elements: int) -> np.ndarray:
        """Two-pass sum w (x - mean)^2 for the given rows, elementwise on cache-sized tiles."""
        p = self.params.shape[1]
        out = np.zeros((rows.size, len(self.names)))
        rows_t = min(rows.size, TILE_ROWS)
        cols_t = min(self.n_mod, max(256, tile_elements // rows_t))
        w_buf = np.empty((rows_t, cols_t))
        for r0 in range(0, rows.size, rows_t):
            sel = rows[r0 : r0 + rows_t]
            mu = mean[r0 : r0 + rows_t]
            acc = out[r0 : r0 + rows_t]
            for n0 in range(0, self.n_mod, cols_t):
                cols = slice(n0, min(n0 + cols_t, self.n_mod))
                w = self._weights(sel, cols, out=w_buf[: sel.size, : cols.stop - n0])
                for j in range(p):
                    d = self.params[None, cols, j] - mu[:, j, None]
                    acc[:, j] += np.einsum("ij,ij->i", w * d, d)
                for i in range(len(self.quantities)):
                    x = self._transform(i, self.scale[sel, cols], cols)
                    d = np.where(np.isfinite(x), x - mu[:, p + i, None], 0.0)
                    acc[:, p + i] += np.einsum("ij,ij->i", w * d, d)
        return out
