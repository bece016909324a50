"""Chi-square of every (galaxy, model) pair of a block, with the best free scale, as two matrix products.

The gridfit job compares a block of G galaxies (fluxes F, errors S in B bands) with a slice of N grid models (band
fluxes M per unit normalisation). For a free scale s and a per-galaxy model factor k_g (e.g. 1/(4 pi D_g^2), which
turns a luminosity per unit mass into a flux), the prediction is  s * k_g * M_n  and, with detection weights
w = 1/sigma^2 (0 for missing bands and for upper limits),

    A_gn = sum_b (w f k)_gb M_nb,     C_gn = sum_b (w k^2)_gb M_nb^2,     Ff_g = sum_b w_gb f_gb^2
    s_gn = A_gn / C_gn,               chi2_gn = Ff_g - A_gn s_gn

so the whole block costs two GEMMs (G x B) @ (B x N) plus three elementwise operations, all done tile by tile so
that the (tile-sized) intermediates stay in cache and only chi2 and s are written to memory. ``k`` is folded into
the (G, B) weights, never into an (G, N) pass. chi2 does not depend on k; s is in units of the model
normalisation (e.g. solar masses of dust when M is L_nu per solar mass and k = 1/(4 pi D^2)).

Precision: ``Ff - A s`` cancels when chi2 << Ff; its absolute error is a few 1e-16 Ff (Ff ~ n_bands x S/N^2, so
~1e-12 at S/N 30 but ~1e-7 at S/N 1e4, where it would blur the likelihood weights exp(-chi2/2)). Rows with
Ff > ``direct_above`` (default 1e6, i.e. S/N above ~400 with no calibration floor) are therefore re-evaluated as
sum_b w (f - s k m)^2, one pass per band, keeping chi2 to ~1e-10 absolute everywhere. :func:`best_in_block`
re-evaluates the best pair of each galaxy the same way, which also makes the reported best fit independent of how
the grid is sliced over ranks.

Upper limits (non-detections) follow CIGALE (Boquien et al. 2019, A&A 622, A103; ``compute_chi2`` and
``_correct_scaling_ul`` of its pdf_analysis module), which uses Sawicki (2012, PASP 124, 1208, eqs. A10-A11):
a band with limit f_u and noise sigma_u adds

    -2 ln Phi(z_u),    z_u = (f_u - s k m_u) / sigma_u,    Phi = standard normal CDF = (1 + erf(z / sqrt 2)) / 2

to chi2: the log-probability that a source with the model's flux would have been measured below the limit. The
scale then has no closed form. chi2(s) is strictly convex (Phi is log-concave), and its derivative

    g(s) = 2 (s C - A) + 2 sum_u (k m_u / sigma_u) lambda(z_u),    lambda = phi / Phi (inverse Mills ratio)

is >= 0 at the detections-only solution s0 = A/C, so the root lies in [lo, s0]. We solve g = 0 by safeguarded
Newton (curvature 2C + 2 sum_u (k m_u/sigma_u)^2 lambda (lambda + z) > 0; bisection whenever a step leaves the
bracket), vectorised over every pair of the galaxies that have upper limits, starting from s0 -- where CIGALE calls
``scipy.optimize.root`` once per model. ln Phi and lambda come from ``scipy.special.log_ndtr``, so a model far
above a limit gives a large finite penalty where ``log(1 + erf)`` would give -inf. Galaxies without upper limits
never enter this path, so the common case stays pure BLAS. No calibration floor is added to upper limits.

Degrees of freedom: ``n_used`` counts detections and upper limits; ``dof = n_used - n_free`` with one free
parameter (the scale) by default, as CIGALE's reduced chi2 does. The (G, N) chi2 and scale blocks are the largest
arrays: size G with :func:`rows_per_block`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from scipy.special import log_ndtr

# Tile of the chi2 loop in elements: A and C tiles (8 bytes each) then fill about one 1-2 MB L2 cache. Few rows and
# many columns measured best here (long contiguous model rows per GEMM call, little per-call overhead).
DEFAULT_TILE_ELEMENTS = 1 << 17
TILE_ROWS = 16
# Largest (rows x models) chunk of the upper-limit solver; it holds ~10 such arrays at once.
UL_CHUNK_ELEMENTS = 1 << 20
# Stand-in z for bands that are not upper limits of a row: Phi(z) == 1 and lambda(z) == 0 exactly in float64.
_Z_INACTIVE = 1.0e3
_LOG_SQRT_2PI = 0.5 * np.log(2.0 * np.pi)


@dataclass(frozen=True, eq=False)
class Photometry:
    """A block of G galaxies x B bands prepared for :func:`chi2_block` (build it with :func:`prepare_photometry`)."""

    flux: np.ndarray  # (G, B) detected flux or upper-limit value; 0 where the band is missing
    det_weight: np.ndarray  # (G, B) 1/sigma_eff^2 on detections, 0 on missing bands and upper limits
    ul_sigma: np.ndarray  # (G, B) sigma of upper limits, 1 elsewhere
    upper: np.ndarray  # (G, B) bool, band is an upper limit
    factor: np.ndarray  # (G,) model factor k_g
    fwk: np.ndarray  # (G, B) w f k, left operand of the A product
    wk2: np.ndarray  # (G, B) w k^2, left operand of the C product
    ff: np.ndarray  # (G,) sum_b w f^2
    n_detected: np.ndarray  # (G,) int
    n_upper: np.ndarray  # (G,) int
    nonnegative: bool

    @property
    def n_galaxies(self) -> int:
        return self.flux.shape[0]

    @property
    def n_bands(self) -> int:
        return self.flux.shape[1]

    @property
    def n_used(self) -> np.ndarray:
        """Bands that enter chi2 per galaxy (detections + upper limits)."""
        return self.n_detected + self.n_upper

    def dof(self, n_free: int = 1) -> np.ndarray:
        """Degrees of freedom per galaxy: bands used minus free parameters (the scale)."""
        return self.n_used - n_free

    def reduced_chi2(self, chi2: ArrayLike, n_free: int = 1) -> np.ndarray:
        """chi2 / dof per galaxy, NaN where dof <= 0."""
        dof = self.dof(n_free)
        out = np.full(dof.shape, np.nan)
        np.divide(np.asarray(chi2, dtype=float), dof, out=out, where=dof > 0)
        return out


@dataclass(frozen=True, eq=False)
class ModelSlice:
    """One rank's models as band fluxes per unit normalisation, transposed once for the GEMMs."""

    fluxes: np.ndarray  # (N, B)
    mt: np.ndarray  # (B, N)
    m2t: np.ndarray  # (B, N)
    nonnegative: bool  # every model flux >= 0
    zero_band_models: np.ndarray  # local indices of models with a zero flux in some band (C may vanish there)

    @classmethod
    def from_fluxes(cls, fluxes: ArrayLike) -> ModelSlice:
        m = np.ascontiguousarray(fluxes, dtype=np.float64)
        if m.ndim != 2:
            raise ValueError(f"model fluxes must be (n_models, n_bands), got shape {m.shape}")
        if not np.all(np.isfinite(m)):
            raise ValueError("model fluxes contain NaN or inf")
        mt = np.ascontiguousarray(m.T)
        return cls(
            fluxes=m,
            mt=mt,
            m2t=mt * mt,
            nonnegative=bool(np.all(m >= 0)),
            zero_band_models=np.flatnonzero(np.any(m == 0, axis=1)),
        )

    @property
    def n_models(self) -> int:
        return self.fluxes.shape[0]

    @property
    def n_bands(self) -> int:
        return self.fluxes.shape[1]


def _as_slice(models: ModelSlice | ArrayLike) -> ModelSlice:
    return models if isinstance(models, ModelSlice) else ModelSlice.from_fluxes(models)


def prepare_photometry(
    flux: ArrayLike,
    error: ArrayLike,
    valid: ArrayLike | None = None,
    upper: ArrayLike | None = None,
    *,
    error_floor: float = 0.0,
    model_factor: ArrayLike | None = None,
    nonnegative: bool = True,
) -> Photometry:
    """Weights and folded operands for a block of galaxies.

    flux, error: (G, B); for upper limits ``flux`` is the limit value and ``error`` its sigma.
    valid: (G, B) bool, band used (default: flux and error finite). upper: (G, B) bool, band is an upper limit.
    error_floor: calibration error added in quadrature to detections, sigma^2 + (error_floor * f)^2.
    model_factor: (G,) k_g > 0 multiplying the model fluxes of galaxy g (default 1).
    nonnegative: constrain the scale to s >= 0 (a mass); the constrained optimum is then max(s, 0).
    """
    f = np.array(flux, dtype=np.float64, ndmin=2)
    e = np.array(error, dtype=np.float64, ndmin=2)
    if f.shape != e.shape or f.ndim != 2:
        raise ValueError(f"flux and error must both be (n_galaxies, n_bands); got {f.shape} and {e.shape}")
    use = np.isfinite(f) & np.isfinite(e) if valid is None else np.asarray(valid, dtype=bool)
    ul = np.zeros(f.shape, dtype=bool) if upper is None else np.asarray(upper, dtype=bool)
    if use.shape != f.shape or ul.shape != f.shape:
        raise ValueError(f"valid and upper must have the flux shape {f.shape}")
    ul = ul & use
    bad_err = use & ~(e > 0)
    bad_flux = use & ~np.isfinite(f)
    for bad, what in ((bad_err, "errors must be positive and finite"), (bad_flux, "fluxes must be finite")):
        if bad.any():
            g, b = np.argwhere(bad)[0]
            raise ValueError(f"{what} on used bands: {int(bad.sum())} entries, first at galaxy {g}, band {b}")
    if not error_floor >= 0:
        raise ValueError(f"error_floor must be >= 0, got {error_floor}")
    k = np.ones(f.shape[0]) if model_factor is None else np.asarray(model_factor, dtype=np.float64).reshape(-1)
    if k.shape != (f.shape[0],) or not np.all(np.isfinite(k) & (k > 0)):
        raise ValueError(f"model_factor must be {f.shape[0]} positive finite values")

    det = use & ~ul
    f0 = np.where(use, f, 0.0)
    var = e * e + (error_floor * f0) ** 2
    w = np.where(det, 1.0 / np.where(det, var, 1.0), 0.0)
    return Photometry(
        flux=f0,
        det_weight=w,
        ul_sigma=np.where(ul, e, 1.0),
        upper=ul,
        factor=k,
        fwk=w * f0 * k[:, None],
        wk2=w * (k * k)[:, None],
        ff=np.einsum("gb,gb,gb->g", w, f0, f0),
        n_detected=det.sum(axis=1),
        n_upper=ul.sum(axis=1),
        nonnegative=bool(nonnegative),
    )


def chi2_flops(n_galaxies: int, n_models: int, n_bands: int) -> float:
    """FLOPs of the two products of a block (2 G N B each), the figure the benchmark rates."""
    return 4.0 * n_galaxies * n_models * n_bands


def rows_per_block(n_models: int, memory_bytes: float, n_arrays: int = 2) -> int:
    """Galaxies per block so that ``n_arrays`` float64 (G, n_models) arrays (chi2 and scale) fit ``memory_bytes``."""
    return max(1, int(memory_bytes // (8 * n_arrays * max(n_models, 1))))


def chi2_block(
    phot: Photometry,
    models: ModelSlice | ArrayLike,
    *,
    out: tuple[np.ndarray, np.ndarray] | None = None,
    tile_elements: int = DEFAULT_TILE_ELEMENTS,
    ul_rtol: float = 1e-13,
    ul_maxiter: int = 100,
    direct_above: float = 1e6,
) -> tuple[np.ndarray, np.ndarray]:
    """chi2 and best scale of every (galaxy, model) pair: two (G, N) float64 arrays.

    ``out`` = (chi2, scale) buffers of shape (G, N) (views allowed) to reuse across blocks. Galaxies with upper
    limits are then solved by :func:`_solve_upper_limits`; galaxies with no used band get chi2 = 0, scale = 0;
    galaxies with sum w f^2 > ``direct_above`` get chi2 from their residuals (see the module docstring).
    """
    bank = _as_slice(models)
    if bank.n_bands != phot.n_bands:
        raise ValueError(f"models have {bank.n_bands} bands, photometry has {phot.n_bands}")
    n_gal, n_mod = phot.n_galaxies, bank.n_models
    if out is None:
        chi2, scale = np.empty((n_gal, n_mod)), np.empty((n_gal, n_mod))
    else:
        chi2, scale = out
        if chi2.shape != (n_gal, n_mod) or scale.shape != (n_gal, n_mod):
            raise ValueError(f"out arrays must have shape {(n_gal, n_mod)}")
    if n_gal == 0 or n_mod == 0:
        return chi2, scale

    rows = min(n_gal, TILE_ROWS)
    cols = min(n_mod, max(256, tile_elements // rows))
    a_buf, c_buf = np.empty((rows, cols)), np.empty((rows, cols))
    # A >= 0 whenever data and models are, so the clamp s = max(s, 0) is only paid for when it can act.
    clamp = phot.nonnegative and not (bank.nonnegative and np.all(phot.fwk >= 0))
    with np.errstate(divide="ignore", invalid="ignore"):
        for g0 in range(0, n_gal, rows):
            g1 = min(g0 + rows, n_gal)
            fwk, wk2, ff = phot.fwk[g0:g1], phot.wk2[g0:g1], phot.ff[g0:g1, None]
            for n0 in range(0, n_mod, cols):
                n1 = min(n0 + cols, n_mod)
                a = a_buf[: g1 - g0, : n1 - n0]
                c = c_buf[: g1 - g0, : n1 - n0]
                s = scale[g0:g1, n0:n1]
                np.matmul(fwk, bank.mt[:, n0:n1], out=a)
                np.matmul(wk2, bank.m2t[:, n0:n1], out=c)
                np.divide(a, c, out=s)
                if clamp:
                    np.maximum(s, 0.0, out=s)
                np.multiply(a, s, out=a)
                np.subtract(ff, a, out=chi2[g0:g1, n0:n1])

    if bank.zero_band_models.size:
        _fix_vanishing_c(phot, bank, chi2, scale)
    empty = np.flatnonzero(phot.n_used == 0)
    chi2[empty] = 0.0
    scale[empty] = 0.0
    step = max(1, UL_CHUNK_ELEMENTS // n_mod)
    ul_rows = np.flatnonzero(phot.n_upper > 0)
    for r0 in range(0, ul_rows.size, step):
        sel = ul_rows[r0 : r0 + step]
        chi2[sel], scale[sel] = _solve_upper_limits(phot, bank, sel, ul_rtol, ul_maxiter)
    bright = np.flatnonzero((phot.ff > direct_above) & (phot.n_upper == 0))
    for r0 in range(0, bright.size, step):
        sel = bright[r0 : r0 + step]
        chi2[sel] = _detection_chi2(phot, bank, sel, scale[sel])
    return chi2, scale


def _detection_chi2(phot: Photometry, bank: ModelSlice, rows: np.ndarray, s: np.ndarray) -> np.ndarray:
    """sum over detected bands of w (f - s k m)^2 for rows x all models, accumulated band by band."""
    out = np.zeros(s.shape)
    k = phot.factor[rows, None]
    for b in np.flatnonzero(phot.det_weight[rows].any(axis=0)):
        resid = phot.flux[rows, b, None] - s * (k * bank.mt[b][None, :])
        out += phot.det_weight[rows, b, None] * resid * resid
    return out


def _fix_vanishing_c(phot: Photometry, bank: ModelSlice, chi2: np.ndarray, scale: np.ndarray) -> None:
    """Redo the columns of models with zero bands, where C = 0 (no overlap with the detections) gives s = 0."""
    idx = bank.zero_band_models
    a = phot.fwk @ bank.mt[:, idx]
    c = phot.wk2 @ bank.m2t[:, idx]
    s = _scale_from(a, c, phot.nonnegative)
    scale[:, idx] = s
    chi2[:, idx] = phot.ff[:, None] - a * s


def _scale_from(a: np.ndarray, c: np.ndarray, nonnegative: bool) -> np.ndarray:
    s = np.zeros(np.broadcast(a, c).shape)
    np.divide(a, c, out=s, where=c > 0)
    return np.maximum(s, 0.0) if nonnegative else s


def _inverse_mills(z: np.ndarray, log_cdf: np.ndarray) -> np.ndarray:
    """phi(z) / Phi(z), stable for very negative z (both tails underflow separately, the ratio does not)."""
    return np.exp(-0.5 * z * z - _LOG_SQRT_2PI - log_cdf)


class _UpperLimitTerms:
    """The upper-limit bands of a set of galaxies, flattened over (row, model) pairs for the Newton solver."""

    def __init__(self, phot: Photometry, bank: ModelSlice, rows: np.ndarray):
        bands = np.flatnonzero(phot.upper[rows].any(axis=0))
        ul = phot.upper[np.ix_(rows, bands)]  # (R, U)
        sigma = phot.ul_sigma[np.ix_(rows, bands)]
        # q/sigma = k m_u / sigma_u per pair; rows without that limit get q = 0 and z = _Z_INACTIVE (no term).
        q_over_sigma = np.where(ul, phot.factor[rows, None] / sigma, 0.0)  # (R, U)
        self.qs = q_over_sigma[:, :, None] * bank.mt[bands][None, :, :]  # (R, U, N)
        self.z0 = np.where(ul, phot.flux[np.ix_(rows, bands)] / sigma, _Z_INACTIVE)[:, :, None]  # (R, U, 1)

    def gradient_curvature(self, s: np.ndarray, pairs: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Upper-limit parts of dchi2/ds and d2chi2/ds2 at flat pairs."""
        r, n = pairs
        qs = self.qs[r, :, n].T  # (U, P)
        z = self.z0[r, :, 0].T - s[None, :] * qs
        lam = _inverse_mills(z, log_ndtr(z))
        grad = 2.0 * np.sum(qs * lam, axis=0)
        curv = 2.0 * np.sum(qs * qs * lam * (lam + z), axis=0)
        return grad, curv

    def chi2(self, s: np.ndarray) -> np.ndarray:
        """sum_u -2 ln Phi(z_u) for a full (R, N) scale array."""
        return -2.0 * np.sum(log_ndtr(self.z0 - s[:, None, :] * self.qs), axis=1)


def _solve_upper_limits(
    phot: Photometry, bank: ModelSlice, rows: np.ndarray, rtol: float, maxiter: int
) -> tuple[np.ndarray, np.ndarray]:
    """chi2 and scale of rows that have upper limits: safeguarded Newton on dchi2/ds, vectorised over all pairs."""
    a = phot.fwk[rows] @ bank.mt  # (R, N)
    c = phot.wk2[rows] @ bank.m2t
    terms = _UpperLimitTerms(phot, bank, rows)
    nonneg = phot.nonnegative
    s0 = _scale_from(a, c, nonneg)
    s = s0.copy()
    # Rows with no detection: unbounded below without the s >= 0 constraint; s = 0 is reported (documented).
    solve = (c > 0) | nonneg
    r_idx, n_idx = np.nonzero(solve)

    def grad_curv(sv: np.ndarray, r: np.ndarray, n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        g_ul, h_ul = terms.gradient_curvature(sv, (r, n))
        return 2.0 * (sv * c[r, n] - a[r, n]) + g_ul, 2.0 * c[r, n] + h_ul

    sv = s0[r_idx, n_idx]
    hi = sv.copy()  # g(s0) >= 0: the limits only pull the scale down
    g, h = grad_curv(sv, r_idx, n_idx)
    # Natural size of a scale step: |s0| plus its 1-sigma uncertainty from the detections, 1/sqrt(C).
    with np.errstate(divide="ignore"):
        ref = np.abs(sv) + np.where(c[r_idx, n_idx] > 0, 1.0 / np.sqrt(c[r_idx, n_idx]), 0.0)
    if nonneg:
        at_zero = grad_curv(np.zeros_like(sv), r_idx, n_idx)[0] >= 0  # optimum on the boundary s = 0
        sv[at_zero] = 0.0
        s[r_idx, n_idx] = sv
        keep = ~at_zero & (g > 0)
        r_idx, n_idx, sv, hi, g, h, ref = (x[keep] for x in (r_idx, n_idx, sv, hi, g, h, ref))
        lo = np.zeros_like(sv)
    else:
        keep = g > 0  # g <= 0 at s0 only by rounding: the limits do not act, s0 stands
        r_idx, n_idx, sv, hi, g, h, ref = (x[keep] for x in (r_idx, n_idx, sv, hi, g, h, ref))
        lo = _lower_bracket(sv, ref, grad_curv, r_idx, n_idx)
    for _ in range(maxiter):
        if sv.size == 0:
            break
        hi = np.where(g > 0, sv, hi)
        lo = np.where(g <= 0, sv, lo)
        with np.errstate(divide="ignore", invalid="ignore"):
            new = sv - g / h
        outside = ~((new > lo) & (new < hi))
        new = np.where(outside, 0.5 * (lo + hi), new)
        done = (np.abs(new - sv) <= rtol * np.maximum(np.abs(new), ref)) | (hi - lo <= rtol * ref)
        s[r_idx, n_idx] = new
        active = ~done
        r_idx, n_idx, sv, lo, hi, ref = (x[active] for x in (r_idx, n_idx, new, lo, hi, ref))
        g, h = grad_curv(sv, r_idx, n_idx)

    # chi2 evaluated directly (no Ff - A s cancellation) on the detections, plus the upper-limit penalties.
    return _detection_chi2(phot, bank, rows, s) + terms.chi2(s), s


def _lower_bracket(
    s0: np.ndarray, width: np.ndarray, grad_curv, r: np.ndarray, n: np.ndarray, max_doublings: int = 64
) -> np.ndarray:
    """A point below each root where the gradient is negative (unconstrained scale): step down, doubling."""
    width = width.copy()
    lo = s0 - width
    todo = np.arange(s0.size)
    for _ in range(max_doublings):
        g = grad_curv(lo[todo], r[todo], n[todo])[0]
        todo = todo[g > 0]
        if todo.size == 0:
            break
        width[todo] *= 2.0
        lo[todo] = s0[todo] - width[todo]
    return lo


def pair_chi2(phot: Photometry, model_rows: ArrayLike, scale: ArrayLike) -> np.ndarray:
    """chi2 of one model per galaxy, evaluated directly: sum_det w (f - s k m)^2 - 2 sum_ul ln Phi(z).

    model_rows: (G, B) band fluxes per unit normalisation; scale: (G,). Used to polish the best fit and to draw it.
    """
    m = np.asarray(model_rows, dtype=np.float64)
    s = np.asarray(scale, dtype=np.float64)
    pred = (s * phot.factor)[:, None] * m
    resid = phot.flux - pred
    chi2 = np.sum(phot.det_weight * resid * resid, axis=1)
    z = np.where(phot.upper, (phot.flux - pred) / phot.ul_sigma, _Z_INACTIVE)
    return chi2 - 2.0 * np.sum(log_ndtr(z), axis=1)


def best_in_block(
    phot: Photometry, models: ModelSlice | ArrayLike, chi2: np.ndarray, scale: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Best model of each galaxy in a block: (local index, chi2, scale), the pair re-evaluated exactly.

    The argmin is taken on the block (ties -> lowest index); the scale of galaxies without upper limits is
    recomputed from its closed form and chi2 by :func:`pair_chi2`, so the result does not depend on the tiling or on
    how the grid was sliced. Galaxies with upper limits keep the Newton scale of the block.
    """
    bank = _as_slice(models)
    n_gal = phot.n_galaxies
    local = np.argmin(chi2, axis=1) if chi2.shape[1] else np.full(n_gal, -1)
    if chi2.shape[1] == 0:
        return local, np.full(n_gal, np.inf), np.zeros(n_gal)
    rows = bank.fluxes[local]
    a = np.sum(phot.fwk * rows, axis=1)
    c = np.sum(phot.wk2 * rows * rows, axis=1)
    s = _scale_from(a, c, phot.nonnegative)
    has_ul = phot.n_upper > 0
    s[has_ul] = scale[has_ul, local[has_ul]]
    return local, pair_chi2(phot, rows, s), s
