"""Batched non-linear least squares: many small independent problems solved together with numpy.

Two algorithms, each following step for step the one astropy's fitters call in scipy, so that a batched
fit lands where astropy's would -- on poorly constrained spectra as well as on good ones:

- ``method="trf"``: the trust-region-reflective method of ``scipy.optimize.least_squares`` (astropy's
  ``TRFLSQFitter``): Coleman-Li scaling for bounds, reflected and gradient steps when the trust-region
  step leaves the box, the same radius updates and ftol / xtol / gtol tests;
- ``method="lm"``: MINPACK's ``lmder`` Levenberg-Marquardt (astropy's ``LevMarLSQFitter`` through
  ``scipy.optimize.leastsq`` and ``LMLSQFitter`` through ``least_squares(method='lm')``): column-norm
  scaling, More's ``lmpar`` for the damping parameter, MINPACK's step-bound updates and tests. No bounds.

Every operation acts on a whole batch: arrays carry a leading batch axis, each problem keeps its own
radius, counters and termination state, and problems that have stopped leave the active set so that
later iterations only evaluate the others. The small p x p systems are solved together: an LU solve
gives the Gauss-Newton step (the usual case), and a batched eigen-decomposition of the scaled normal
matrix, made only where a damped step is needed, gives every damped step of that outer iteration in
closed form. J^T J and J^T f come from per-parameter derivative rows, never a stacked (B, p, n) array.

A problem is ``minimise 0.5 * sum((weights * (model(params) - y))**2)`` over its free parameters,
within ``lower <= params <= upper`` (trf); ``weights == 0`` masks a sample. The model is any function
of a (B', p) parameter array and the batch rows it is evaluated for; this module knows nothing of astropy.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import IntEnum

import numpy as np

EPS = float(np.finfo(float).eps)

#: ``model_fn(params (B', p), rows (B',)) -> (B', n)`` model values for those batch rows.
ModelFn = Callable[[np.ndarray, np.ndarray], np.ndarray]
#: ``jac_fn(params (B', p), rows (B',))`` -> derivatives of the model (not of the residual): a sequence of
#: p arrays broadcastable to (B', n), one per parameter, or one (B', p, n) array. Kept per parameter
#: because J^T J and J^T f then come from p(p+3)/2 row-wise dot products, several times cheaper than
#: stacking a (B', p, n) array and multiplying it.
JacFn = Callable[[np.ndarray, np.ndarray], "Sequence[np.ndarray] | np.ndarray"]

STATUS_CONVERGED, STATUS_WARNING, STATUS_FAILED = 0, 1, 2


class Termination(IntEnum):
    """Why one problem stopped: > 0 converged, 0 ran out of evaluations, < 0 failed."""

    MAX_NFEV = 0
    GTOL = 1
    FTOL = 2
    XTOL = 3
    FTOL_XTOL = 4
    # MINPACK's info 6-8: a tolerance below machine precision stopped the fit (a warning in astropy)
    FTOL_TOO_SMALL = 6
    XTOL_TOO_SMALL = 7
    GTOL_TOO_SMALL = 8
    ALL_MASKED = -1
    NONFINITE_START = -2
    OUTSIDE_BOUNDS = -3
    NONFINITE = -4


MESSAGES = {
    Termination.MAX_NFEV: "The maximum number of function evaluations is exceeded; the fit may be unsuccessful.",
    Termination.GTOL: "`gtol` termination condition is satisfied.",
    Termination.FTOL: "`ftol` termination condition is satisfied.",
    Termination.XTOL: "`xtol` termination condition is satisfied.",
    Termination.FTOL_XTOL: "Both `ftol` and `xtol` termination conditions are satisfied.",
    Termination.FTOL_TOO_SMALL: "ftol is too small: no further reduction in the sum of squares is possible.",
    Termination.XTOL_TOO_SMALL: "xtol is too small: no further improvement in the approximate solution is possible.",
    Termination.GTOL_TOO_SMALL: "gtol is too small: the residuals are orthogonal to the Jacobian to machine precision.",
    Termination.ALL_MASKED: "All samples are masked (zero weight); nothing to fit.",
    Termination.NONFINITE_START: "Residuals are not finite at the initial parameters.",
    Termination.OUTSIDE_BOUNDS: "Initial parameters are outside the bounds.",
    Termination.NONFINITE: "The model, its derivatives or the parameters became non-finite during the fit.",
}

_RUNNING = -128  # termination code of a problem that has not stopped yet


def _failed(code: np.ndarray) -> np.ndarray:
    return (code < 0) & (code != _RUNNING)


@dataclass(frozen=True)
class SolverOptions:
    """Algorithm, tolerances and limits; the defaults are what astropy's TRFLSQFitter passes to scipy."""

    method: str = "trf"  # "trf" (least_squares' trust-region reflective) or "lm" (MINPACK's lmder)
    max_nfev: int = 100  # astropy's DEFAULT_MAXITER, passed as max_nfev
    xtol: float = 1e-7  # astropy's DEFAULT_ACC, passed as xtol
    ftol: float = 1e-8  # scipy's default
    gtol: float = 1e-8  # scipy's default
    diff_step: float = float(np.sqrt(EPS))  # astropy's DEFAULT_EPS: relative forward-difference step
    # astropy's objective raises on a non-finite residual, which ends the fit as failed; False uses TRF's
    # own remedy instead (shrink the trust region and try again).
    fail_on_nonfinite: bool = True
    compute_covariance: bool = True
    factor: float = 100.0  # lm: initial step bound, factor * ||diag * x0|| (MINPACK's default)

    def __post_init__(self):
        if self.method not in ("trf", "lm"):
            raise ValueError(f"method must be 'trf' or 'lm', got {self.method!r}")


@dataclass
class BatchResult:
    """Per-problem results of :func:`solve_batch`; failed problems have NaN parameters."""

    params: np.ndarray  # (B, p) fitted free parameters
    status: np.ndarray  # (B,) int8: 0 converged, 1 converged with warning, 2 failed
    code: np.ndarray  # (B,) int8 Termination value
    nfev: np.ndarray  # (B,) residual evaluations, the initial one included
    njev: np.ndarray  # (B,) Jacobian evaluations
    cost: np.ndarray  # (B,) 0.5 * sum(residual**2) at the result
    optimality: np.ndarray  # (B,) infinity norm of the gradient at the result (Coleman-Li scaled for trf)
    covariance: np.ndarray | None  # (B, p, p) as astropy's fit_info['param_cov'], NaN where unavailable

    def message(self, index: int) -> str:
        """Human-readable reason why problem ``index`` stopped."""
        return MESSAGES[Termination(int(self.code[index]))]


_WARNING_CODES = (Termination.MAX_NFEV, Termination.FTOL_TOO_SMALL, Termination.XTOL_TOO_SMALL,
                  Termination.GTOL_TOO_SMALL)


def status_from_code(code: np.ndarray) -> np.ndarray:
    """Map Termination codes to the 0 converged / 1 converged with warning / 2 failed convention."""
    code = np.asarray(code)
    status = np.where(code < 0, STATUS_FAILED, STATUS_CONVERGED)
    status[np.isin(code, _WARNING_CODES)] = STATUS_WARNING
    return status.astype(np.int8)


# ---------------------------------------------------------------------------------------------------------
# Vectorised building blocks. Every array has a leading batch axis k; vectors are (k, p), matrices (k, p, p).


def _matvec(a: np.ndarray, v: np.ndarray) -> np.ndarray:
    return (a @ v[..., None])[..., 0]


def _dot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.einsum("ki,ki->k", a, b)


def _norm(v: np.ndarray) -> np.ndarray:
    return np.sqrt(_dot(v, v))


def _coleman_li(x, g, lb, ub):
    """Coleman-Li scaling vector v and its derivative dv: distance to the bound the gradient points at."""
    v = np.ones_like(x)
    dv = np.zeros_like(x)
    to_upper = (g < 0) & np.isfinite(ub)
    v[to_upper] = (ub - x)[to_upper]
    dv[to_upper] = -1.0
    to_lower = (g > 0) & np.isfinite(lb)
    v[to_lower] = (x - lb)[to_lower]
    dv[to_lower] = 1.0
    return v, dv


def _step_to_bound(x, s, lb, ub):
    """Largest t >= 0 keeping x + t*s inside the box, and which components hit (-1 lower, +1 upper)."""
    steps = np.where(s != 0, np.maximum((lb - x) / s, (ub - x) / s), np.inf)
    t = steps.min(axis=1)
    hits = (steps == t[:, None]) * np.sign(s)
    return t, hits


def _quadratic(ah, diag_h, g_h, s):
    """0.5 s^T (Ah + diag) s + g^T s, the model of the cost change along step s."""
    return 0.5 * (_dot(s, _matvec(ah, s)) + _dot(s * diag_h, s)) + _dot(g_h, s)


def _line_quadratic(ah, diag_h, g_h, s, s0=None):
    """Coefficients a, b, c of the model cost along s0 + t*s as a*t^2 + b*t + c."""
    ahs = _matvec(ah, s)
    a = 0.5 * (_dot(s, ahs) + _dot(s * diag_h, s))
    b = _dot(g_h, s)
    if s0 is None:
        return a, b, np.zeros_like(a)
    b = b + _dot(s0, ahs) + _dot(s0 * diag_h, s)
    c = 0.5 * (_dot(s0, _matvec(ah, s0)) + _dot(s0 * diag_h, s0)) + _dot(g_h, s0)
    return a, b, c


def _minimise_line_quadratic(a, b, c, lo, hi):
    """Minimum of a*t^2 + b*t + c over [lo, hi]: (t, value); ties go to lo, then hi, as in scipy."""
    ext = -0.5 * b / a
    ext_ok = (a != 0) & (lo < ext) & (ext < hi)
    t = np.stack([lo, hi, np.where(ext_ok, ext, lo)], axis=1)
    val = t * (a[:, None] * t + b[:, None]) + c[:, None]
    val[:, 2] = np.where(ext_ok, val[:, 2], np.inf)
    best = np.argmin(val, axis=1)
    pick = np.arange(a.size)
    return t[pick, best], val[pick, best]


def _trust_region_exit(p_h, r_h, delta):
    """Positive t with ||p_h + t*r_h|| = delta (p_h inside the region)."""
    a = _dot(r_h, r_h)
    b = _dot(p_h, r_h)
    c = _dot(p_h, p_h) - delta**2
    # Rounding can put p_h a hair outside the region (c > 0); clamp rather than fail.
    d = np.sqrt(np.maximum(b * b - a * c, 0.0))
    q = -(b + np.copysign(d, b))
    t1 = q / a
    t2 = c / q
    return np.maximum(t1, t2)


def _gauss_newton(a, g_h, n_valid):
    """Gauss-Newton step -a^-1 g_h of the scaled system and its norm (NaN where it cannot be trusted).

    Solved by LU, which is much cheaper than the eigen-decomposition; most trial steps are Gauss-Newton
    steps inside the trust region, and only the others need the decomposition (see ``_decompose``).
    """
    try:
        step = -np.linalg.solve(a, g_h[..., None])[..., 0]
    except np.linalg.LinAlgError:  # an exactly singular system somewhere: leave them all to the eigen path
        return np.zeros_like(g_h), np.full(g_h.shape[0], np.nan)
    norm = _norm(step)
    usable = np.isfinite(norm) & (n_valid >= a.shape[1])
    return np.where(usable[:, None], step, 0.0), np.where(usable, norm, np.nan)


def _decompose(a, g_h, n_valid):
    """Eigen-decomposition of the scaled normal matrix and the Gauss-Newton step it gives.

    ``a = J_aug^T J_aug`` for scipy's augmented scaled Jacobian, so its eigenvalues are the squared
    singular values s^2 and its eigenvectors the right singular vectors V; ``suf = V^T g_h`` is
    scipy's ``s * U^T f``. J counts as full rank when s_min > eps * m * s_max, scipy's test.
    """
    s2, vecs = np.linalg.eigh(a)
    s2 = np.maximum(s2, 0.0)
    suf = _matvec(vecs.transpose(0, 2, 1), g_h)
    s = np.sqrt(s2)
    full_rank = (n_valid >= a.shape[1]) & (s[:, 0] > EPS * n_valid * s[:, -1])
    coef = np.where(full_rank[:, None], suf / np.where(s2 > 0, s2, 1.0), 0.0)
    gn_norm = _norm(coef)  # V is orthogonal
    return s2, vecs, suf, full_rank, coef, gn_norm


def _solve_trust_region(s2, vecs, suf, full_rank, gn_coef, gn_norm, delta, alpha, rtol=0.01, max_iter=10):
    """Minimise the scaled quadratic model within ||p|| <= delta; returns (step, Levenberg-Marquardt alpha).

    Takes the Gauss-Newton step when it is inside the region; otherwise finds alpha with ||p(alpha)||
    close to delta by More's safeguarded Newton iteration on phi(alpha) = ||p(alpha)|| - delta,
    warm-started from the previous alpha, and rescales p onto the boundary (as scipy does).
    """
    coef = gn_coef.copy()
    new_alpha = np.zeros(delta.size)
    rest = np.flatnonzero(~(full_rank & (gn_norm <= delta)))
    if rest.size:
        s2r, sufr, dr, fr = s2[rest], suf[rest], delta[rest], full_rank[rest]
        upper = _norm(sufr) / dr
        gn = gn_norm[rest]
        dphi0 = -np.sum(np.where(s2r > 0, sufr**2 / s2r**3, 0.0), axis=1) / gn
        lower = np.where(fr, -(gn - dr) / dphi0, 0.0)
        lam = alpha[rest]
        lam = np.where(~fr & (lam == 0), np.maximum(0.001 * upper, np.sqrt(lower * upper)), lam)
        run = np.arange(rest.size)  # positions in rest still iterating
        for _ in range(max_iter):
            lo, up, lr, d, s2i, sufi = lower[run], upper[run], lam[run], dr[run], s2r[run], sufr[run]
            lr = np.where((lr < lo) | (lr > up), np.maximum(0.001 * up, np.sqrt(lo * up)), lr)
            denom = s2i + lr[:, None]
            pn = _norm(sufi / denom)
            phi = pn - d
            ratio = phi / (-np.sum(sufi**2 / denom**3, axis=1) / pn)
            upper[run] = np.where(phi < 0, lr, up)
            lower[run] = np.maximum(lo, lr - ratio)
            lam[run] = lr - (phi + d) * ratio / d
            run = run[~(np.abs(phi) < rtol * d)]
            if run.size == 0:
                break
        c = sufr / (s2r + lam[:, None])
        c *= (dr / _norm(c))[:, None]  # land exactly on the boundary, as scipy does
        coef[rest] = c
        new_alpha[rest] = lam
    return -_matvec(vecs, coef), new_alpha


def _select_step(x, ah, diag_h, g_h, p, p_h, d, delta, lb, ub, theta):
    """Choose among the (truncated) trust-region step, its reflection and the scaled gradient step.

    Returns (step, step in scaled variables, predicted cost reduction), following the
    trust-region-reflective rules of Branch, Coleman & Li (1999) as scipy applies them.
    """
    step, step_h = p.copy(), p_h.copy()
    inside = np.all((x + p >= lb) & (x + p <= ub), axis=1)
    predicted = np.empty(x.shape[0])
    predicted[inside] = -_quadratic(ah[inside], diag_h[inside], g_h[inside], p_h[inside])
    out = np.flatnonzero(~inside)
    if out.size == 0:
        return step, step_h, predicted

    x, ah, diag_h, g_h, p, p_h = x[out], ah[out], diag_h[out], g_h[out], p[out], p_h[out]
    d, delta, lb, ub, theta = d[out], delta[out], lb[out], ub[out], theta[out]

    p_stride, hits = _step_to_bound(x, p, lb, ub)
    r_h = np.where(hits != 0, -p_h, p_h)  # reflect the components that hit a bound
    r = d * r_h
    p = p * p_stride[:, None]
    p_h = p_h * p_stride[:, None]
    to_tr = _trust_region_exit(p_h, r_h, delta)
    to_bound, _ = _step_to_bound(x + p, r, lb, ub)
    r_stride = np.minimum(to_bound, to_tr)
    positive = r_stride > 0
    r_lo = np.where(positive, (1 - theta) * p_stride / r_stride, 0.0)
    r_hi = np.where(positive, np.where(r_stride == to_bound, theta * to_bound, to_tr), -1.0)
    reflect_ok = r_lo <= r_hi
    a, b, c = _line_quadratic(ah, diag_h, g_h, r_h, s0=p_h)
    t_r, r_value = _minimise_line_quadratic(a, b, c, r_lo, np.where(reflect_ok, r_hi, r_lo))
    r_value = np.where(reflect_ok, r_value, np.inf)
    r_h = p_h + t_r[:, None] * r_h
    r = d * r_h

    # Pull the truncated step back into the strict interior.
    p = p * theta[:, None]
    p_h = p_h * theta[:, None]
    p_value = _quadratic(ah, diag_h, g_h, p_h)

    ag_h = -g_h
    ag = d * ag_h
    to_tr = delta / _norm(ag_h)
    to_bound, _ = _step_to_bound(x, ag, lb, ub)
    ag_hi = np.where(to_bound < to_tr, theta * to_bound, to_tr)
    a, b, c = _line_quadratic(ah, diag_h, g_h, ag_h)
    t_ag, ag_value = _minimise_line_quadratic(a, b, c, np.zeros_like(ag_hi), ag_hi)
    ag_h = ag_h * t_ag[:, None]
    ag = ag * t_ag[:, None]

    use_p = (p_value < r_value) & (p_value < ag_value)
    use_r = ~use_p & (r_value < p_value) & (r_value < ag_value)  # otherwise the gradient step
    chosen = np.where(use_p[:, None], p, np.where(use_r[:, None], r, ag))
    chosen_h = np.where(use_p[:, None], p_h, np.where(use_r[:, None], r_h, ag_h))
    value = np.where(use_p, p_value, np.where(use_r, r_value, ag_value))
    step[out], step_h[out], predicted[out] = chosen, chosen_h, -value
    return step, step_h, predicted


def _strictly_feasible(x, lb, ub, rstep):
    """Move points that sit on (or beyond) a bound just inside it; rstep=0 means one ulp."""
    if rstep == 0:
        on_lower, on_upper = x <= lb, x >= ub
        if not (on_lower.any() or on_upper.any()):  # the usual case: nothing to move
            return x
        x = x.copy()
        on_lower &= ~on_upper
        x[on_lower] = np.nextafter(lb[on_lower], ub[on_lower])
        x[on_upper] = np.nextafter(ub[on_upper], lb[on_upper])
    else:
        x = x.copy()
        lower_dist, upper_dist = x - lb, ub - x
        lower_thr = rstep * np.maximum(1.0, np.abs(lb))
        upper_thr = rstep * np.maximum(1.0, np.abs(ub))
        on_lower = np.isfinite(lb) & (lower_dist <= np.minimum(upper_dist, lower_thr))
        on_upper = np.isfinite(ub) & (upper_dist <= np.minimum(lower_dist, upper_thr))
        on_lower &= ~on_upper
        x[on_lower] = lb[on_lower] + lower_thr[on_lower]
        x[on_upper] = ub[on_upper] - upper_thr[on_upper]
    tight = (x < lb) | (x > ub)
    x[tight] = 0.5 * (lb[tight] + ub[tight])
    return x


def _forward_difference(model_fn, x, rows, m0, lb, ub, rel_step):
    """Batched 2-point derivatives of the model, with scipy's step rule (one-sided, kept inside bounds)."""
    sign = np.where(x >= 0, 1.0, -1.0)
    h = rel_step * sign * np.abs(x)
    h = np.where((x + h) - x == 0, np.sqrt(EPS) * sign * np.maximum(1.0, np.abs(x)), h)
    lower_dist, upper_dist = x - lb, ub - x
    violated = (x + h < lb) | (x + h > ub)
    fits = np.abs(h) <= np.maximum(lower_dist, upper_dist)
    h = np.where(violated & fits, -h, h)
    h = np.where(~fits & (upper_dist >= lower_dist), upper_dist, h)
    h = np.where(~fits & (upper_dist < lower_dist), -lower_dist, h)
    columns = []
    for j in range(x.shape[1]):  # one batched model call per parameter
        xj = x.copy()
        xj[:, j] += h[:, j]
        dx = xj[:, j] - x[:, j]
        columns.append((np.asarray(model_fn(xj, rows), dtype=float) - m0) / dx[:, None])
    return columns


def _columns(jac, shape) -> list[np.ndarray]:
    """The Jacobian as a list of per-parameter (k, n) arrays, whatever form jac_fn returned."""
    if isinstance(jac, np.ndarray) and jac.ndim == 3:
        return [jac[:, j] for j in range(jac.shape[1])]
    columns = [np.asarray(d, dtype=float) for d in jac]
    return [d if d.shape == shape else np.broadcast_to(d, shape) for d in columns]


# ---------------------------------------------------------------------------------------------------------
# The driver.


class _Active:
    """Compact state of the problems still running: every attribute has the batch axis first."""

    def __init__(self, **arrays):
        self.__dict__.update(arrays)

    def zeros(self, *names: str, shape: tuple[int, ...] = (), dtype=float) -> None:
        for name in names:
            setattr(self, name, np.zeros((self.size, *shape), dtype=dtype))

    def keep(self, mask: np.ndarray) -> None:
        for name, value in list(vars(self).items()):
            setattr(self, name, value[mask])

    @property
    def size(self) -> int:
        return self.rows.size


class _Solver:
    """Machinery shared by both algorithms for one :func:`solve_batch` call.

    Owns the result arrays, evaluates residuals and Jacobians for subsets of the active problems and
    retires problems as they stop. Subclasses provide ``start`` (extra state), ``outer_setup`` (for
    problems at a new point: tests, scaling, decomposition) and ``trial`` (one residual evaluation per
    active problem); the loop alternates the last two until no problem is left.
    """

    def __init__(self, model_fn, jac_fn, options, y, w, lb, ub):
        self.model_fn, self.jac_fn, self.opt = model_fn, jac_fn, options
        batch, n = y.shape
        n_par = lb.shape[1]
        self.params = np.full((batch, n_par), np.nan)
        self.code = np.full(batch, _RUNNING, dtype=np.int8)
        self.nfev = np.zeros(batch, dtype=np.int64)
        self.njev = np.zeros(batch, dtype=np.int64)
        self.cost = np.full(batch, np.nan)
        self.optimality = np.full(batch, np.nan)
        self.valid = w != 0
        self.n_valid = self.valid.sum(axis=1)
        self.any_masked = not self.valid.all()
        self.unit_weights = bool(np.all(w == 1.0))  # no weights and nothing masked: skip multiplying by ones
        self.y, self.w, self.lb, self.ub = y, w, lb, ub

    # --- residuals and derivatives -----------------------------------------------------------------------
    def residual(self, model, st: _Active):
        if self.unit_weights:
            return model - st.y
        r = st.w * (model - st.y)
        if self.any_masked:
            r = np.where(st.valid, r, 0.0)
        return r

    def jacobian(self, x, rows, model, w, valid, lb, ub) -> list[np.ndarray]:
        """Columns of the residuals' Jacobian, p arrays (k, n); ``model`` (values at x) serves finite differences."""
        if self.jac_fn is not None:
            cols = _columns(self.jac_fn(x, rows), (x.shape[0], self.y.shape[1]))
        else:
            cols = _forward_difference(self.model_fn, x, rows, model, lb, ub, self.opt.diff_step)
        if self.unit_weights:
            return cols
        if self.any_masked:
            return [np.where(valid, w * c, 0.0) for c in cols]
        return [w * c for c in cols]

    def store_jacobian(self, st: _Active, idx, x, model, f):
        """Evaluate J at new points and keep what the algorithms use: g = J^T f and J^T J."""
        w, valid = (None, None) if self.unit_weights else (st.w[idx], st.valid[idx])
        cols = self.jacobian(x, st.rows[idx], model, w, valid, st.lb[idx], st.ub[idx])
        st.njev[idx] += 1
        n_par = len(cols)
        g = np.empty((idx.size, n_par))
        jtj = np.empty((idx.size, n_par, n_par))
        for i, ci in enumerate(cols):
            g[:, i] = np.einsum("kn,kn->k", ci, f)
            for j in range(i + 1):
                jtj[:, i, j] = jtj[:, j, i] = np.einsum("kn,kn->k", ci, cols[j])
        st.g[idx], st.jtj[idx] = g, jtj
        bad = ~(np.isfinite(jtj).all(axis=(1, 2)) & np.isfinite(g).all(axis=1))
        if bad.any():  # scipy's SVD would raise on these, and astropy would report a failed fit
            bad_idx = idx[bad]
            st.term[bad_idx] = Termination.NONFINITE
            st.fresh[bad_idx] = True
            st.g[bad_idx] = 0.0
            st.jtj[bad_idx] = 0.0

    # --- bookkeeping -------------------------------------------------------------------------------------
    def retire(self, st: _Active, idx: np.ndarray) -> None:
        """Record the results of problems that stopped and drop them from the active set."""
        rows, code = st.rows[idx], st.term[idx]
        self.code[rows] = code
        ok = ~_failed(code)
        self.params[rows[ok]] = st.x[idx][ok]
        self.cost[rows] = np.where(ok, st.cost[idx], np.nan)
        self.optimality[rows] = np.where(ok, self.optimality_of(st, idx), np.nan)
        self.nfev[rows] = st.nfev[idx]
        self.njev[rows] = st.njev[idx]
        keep = np.ones(st.size, bool)
        keep[idx] = False
        st.keep(keep)

    def run(self, p0: np.ndarray) -> None:
        start = np.flatnonzero(self.code == _RUNNING)
        valid = self.valid[start]
        st = _Active(rows=start, lb=self.lb[start], ub=self.ub[start], x=self.initial_point(p0[start], start),
                     y=np.where(valid, self.y[start], 0.0), n_valid=self.n_valid[start])
        if not self.unit_weights:  # (B, n) arrays are the bulk of the state: carry them only when used
            st.w, st.valid = self.w[start], valid
        n_par = p0.shape[1]
        model = np.asarray(self.model_fn(st.x, st.rows), dtype=float)
        f = self.residual(model, st)
        st.cost = 0.5 * _dot(f, f)
        st.nfev = np.ones(st.size, dtype=np.int64)
        st.zeros("njev", dtype=np.int64)
        st.term = np.full(st.size, _RUNNING, dtype=np.int8)
        st.fresh = np.ones(st.size, bool)
        st.zeros("g_norm")
        st.zeros("g", shape=(n_par,))
        st.zeros("jtj", shape=(n_par, n_par))
        finite = np.isfinite(f).all(axis=1)
        st.term[~finite] = Termination.NONFINITE_START
        ok = np.flatnonzero(finite)
        self.store_jacobian(st, ok, st.x[ok], model[ok], f[ok])
        self.start(st)
        while st.size:
            self.outer_setup(st)
            if st.size:
                self.trial(st)

    def initial_point(self, p0, rows):
        return p0.copy()

    def optimality_of(self, st: _Active, idx: np.ndarray) -> np.ndarray:
        return st.g_norm[idx]

    def start(self, st: _Active) -> None:
        raise NotImplementedError

    def outer_setup(self, st: _Active) -> None:
        raise NotImplementedError

    def trial(self, st: _Active) -> None:
        raise NotImplementedError


class _TrustRegionReflective(_Solver):
    """scipy's ``least_squares(method='trf')`` (exact trust-region solver), problem by problem in lockstep."""

    def initial_point(self, p0, rows):
        return _strictly_feasible(p0, self.lb[rows], self.ub[rows], rstep=1e-10)

    def start(self, st: _Active) -> None:
        n_par = st.x.shape[1]
        st.zeros("alpha", "theta", "gn_norm", "eig_gn_norm")
        st.zeros("d", "diag_h", "g_h", "s2", "suf", "gn_coef", "gn_step", shape=(n_par,))
        st.zeros("ah", "a", "vecs", shape=(n_par, n_par))
        st.zeros("full_rank", "have_eig", dtype=bool)
        v, _ = _coleman_li(st.x, st.g, st.lb, st.ub)
        st.delta = _norm(st.x / np.sqrt(v))
        st.delta[st.delta == 0] = 1.0

    def outer_setup(self, st: _Active) -> None:
        """Start an outer iteration for problems that just moved: gtol / nfev tests, then the scaled system."""
        fresh = np.flatnonzero(st.fresh)
        if fresh.size == 0:
            return
        v, dv = _coleman_li(st.x[fresh], st.g[fresh], st.lb[fresh], st.ub[fresh])
        g_norm = np.abs(st.g[fresh] * v).max(axis=1)
        st.g_norm[fresh] = g_norm
        # as in scipy, a small gradient overrides an ftol/xtol verdict reached on the same step
        st.term[fresh[(g_norm < self.opt.gtol) & ~_failed(st.term[fresh])]] = Termination.GTOL
        stop = (st.term[fresh] != _RUNNING) | (st.nfev[fresh] >= self.opt.max_nfev)
        if stop.any():
            ended = fresh[stop]
            st.term[ended[st.term[ended] == _RUNNING]] = Termination.MAX_NFEV
            self.retire(st, ended)
            fresh = np.flatnonzero(st.fresh)
            if fresh.size == 0:
                return
            v, dv = _coleman_li(st.x[fresh], st.g[fresh], st.lb[fresh], st.ub[fresh])
        g = st.g[fresh]
        d = np.sqrt(v)
        diag_h = g * dv
        ah = st.jtj[fresh] * d[:, :, None] * d[:, None, :]
        a = ah.copy()
        n_par = d.shape[1]
        a[:, np.arange(n_par), np.arange(n_par)] += diag_h
        g_h = d * g
        st.d[fresh] = d
        st.diag_h[fresh] = diag_h
        st.g_h[fresh] = g_h
        st.ah[fresh] = ah
        st.a[fresh] = a
        # The Gauss-Newton step serves every trial of this outer iteration; the eigen-decomposition
        # is made only if some trial needs a damped step (see trial).
        st.gn_step[fresh], st.gn_norm[fresh] = _gauss_newton(a, g_h, st.n_valid[fresh])
        st.have_eig[fresh] = False
        st.theta[fresh] = np.maximum(0.995, 1.0 - st.g_norm[fresh])
        st.fresh[fresh] = False

    def trial(self, st: _Active) -> None:
        """One trust-region trial step (one residual evaluation) for every active problem."""
        opt = self.opt
        p_h = st.gn_step.copy()
        damped = np.flatnonzero(~(st.gn_norm <= st.delta))  # NaN norms count as damped too
        if damped.size:
            need = damped[~st.have_eig[damped]]
            if need.size:
                (st.s2[need], st.vecs[need], st.suf[need], st.full_rank[need], st.gn_coef[need],
                 st.eig_gn_norm[need]) = _decompose(st.a[need], st.g_h[need], st.n_valid[need])
                st.have_eig[need] = True
            p_h[damped], st.alpha[damped] = _solve_trust_region(
                st.s2[damped], st.vecs[damped], st.suf[damped], st.full_rank[damped], st.gn_coef[damped],
                st.eig_gn_norm[damped], st.delta[damped], st.alpha[damped])
        st.alpha[st.gn_norm <= st.delta] = 0.0
        step, step_h, predicted = _select_step(
            st.x, st.ah, st.diag_h, st.g_h, st.d * p_h, p_h, st.d, st.delta, st.lb, st.ub, st.theta
        )
        x_new = _strictly_feasible(st.x + step, st.lb, st.ub, rstep=0)
        model = np.asarray(self.model_fn(x_new, st.rows), dtype=float)
        st.nfev += 1
        f_new = self.residual(model, st)
        step_h_norm = _norm(step_h)
        finite = np.isfinite(f_new).all(axis=1) & np.isfinite(x_new).all(axis=1)
        if not finite.all():
            bad = np.flatnonzero(~finite)
            if opt.fail_on_nonfinite:
                st.term[bad] = Termination.NONFINITE
                st.fresh[bad] = True
            else:
                st.delta[bad] = 0.25 * step_h_norm[bad]
                st.fresh[bad] = st.nfev[bad] >= opt.max_nfev
        good = np.flatnonzero(finite)
        if good.size == 0:
            return
        if good.size < st.size:
            x_new, model, f_new, step, step_h_norm, predicted = (
                x_new[good], model[good], f_new[good], step[good], step_h_norm[good], predicted[good]
            )
        cost_new = 0.5 * _dot(f_new, f_new)
        cost, delta = st.cost[good], st.delta[good]
        reduction = cost - cost_new
        ratio = np.where(
            predicted > 0, reduction / predicted, np.where((predicted == 0) & (reduction == 0), 1.0, 0.0)
        )
        new_delta = np.where(
            ratio < 0.25,
            0.25 * step_h_norm,
            np.where((ratio > 0.75) & (step_h_norm > 0.95 * delta), 2.0 * delta, delta),
        )
        ftol_ok = (reduction < opt.ftol * cost) & (ratio > 0.25)
        xtol_ok = _norm(step) < opt.xtol * (opt.xtol + _norm(st.x[good]))
        term = np.where(
            ftol_ok & xtol_ok,
            Termination.FTOL_XTOL,
            np.where(ftol_ok, Termination.FTOL, np.where(xtol_ok, Termination.XTOL, _RUNNING)),
        ).astype(np.int8)
        stopped = term != _RUNNING
        go_on = ~stopped
        st.alpha[good[go_on]] *= delta[go_on] / new_delta[go_on]
        st.delta[good[go_on]] = new_delta[go_on]
        st.term[good[stopped]] = term[stopped]
        accepted = reduction > 0
        st.fresh[good] = stopped | accepted | (st.nfev[good] >= opt.max_nfev)
        if accepted.any():  # scipy evaluates J at an accepted point even when it then stops
            acc = good[accepted]
            st.x[acc] = x_new[accepted]
            st.cost[acc] = cost_new[accepted]
            self.store_jacobian(st, acc, x_new[accepted], model[accepted], f_new[accepted])


_DWARF = float(np.finfo(float).tiny)


def _lmpar(lam, c, full_rank, gn_q, gn_dx, gn_curv, delta, par, max_iter=10):
    """MINPACK's lmpar in the eigenbasis of the scaled normal matrix D^-1 J^T J D^-1 = V diag(lam) V^T.

    With c = V^T D^-1 J^T f, the damped step is D^-1 V q with q = c / (lam + par), ||D p|| = ||q||, and
    the quantities lmpar gets from its QR factors follow in closed form. Returns (q, par).
    """
    q = gn_q.copy()
    new_par = np.zeros_like(par)
    fp0 = gn_dx - delta
    rest = np.flatnonzero(~(fp0 <= 0.1 * delta))  # otherwise the Gauss-Newton step is accepted, par = 0
    if rest.size == 0:
        return q, new_par
    lam_r, c_r, d_r, fr = lam[rest], c[rest], delta[rest], full_rank[rest]
    fp = fp0[rest]
    parl = np.where(fr, fp / (d_r * gn_curv[rest] / gn_dx[rest] ** 2), 0.0)
    gnorm = _norm(c_r)
    paru = gnorm / d_r
    paru = np.where(paru == 0, _DWARF / np.minimum(d_r, 0.1), paru)
    p = np.minimum(np.maximum(par[rest], parl), paru)
    p = np.where(p == 0, gnorm / gn_dx[rest], p)
    q_r = np.empty_like(c_r)
    run = np.arange(rest.size)
    for it in range(1, max_iter + 1):
        pr, lo, up = p[run], parl[run], paru[run]
        pr = np.where(pr == 0, np.maximum(_DWARF, 0.001 * up), pr)
        denom = lam_r[run] + pr[:, None]
        qi = c_r[run] / denom
        dx = _norm(qi)
        previous = fp[run]
        fpi = dx - d_r[run]
        q_r[run], p[run], fp[run] = qi, pr, fpi
        done = (np.abs(fpi) <= 0.1 * d_r[run]) | ((lo == 0) & (fpi <= previous) & (previous < 0))
        if it == max_iter:
            break
        go = ~done
        run, pr, lo, up, fpi, dx = run[go], pr[go], lo[go], up[go], fpi[go], dx[go]
        if run.size == 0:
            break
        curv = np.sum(c_r[run] ** 2 / (lam_r[run] + pr[:, None]) ** 3, axis=1) / dx**2
        parc = fpi / (d_r[run] * curv)
        parl[run] = np.where(fpi > 0, np.maximum(lo, pr), lo)
        paru[run] = np.where(fpi < 0, np.minimum(up, pr), up)
        p[run] = np.maximum(parl[run], pr + parc)
    q[rest] = q_r
    new_par[rest] = p
    return q, new_par


class _LevenbergMarquardt(_Solver):
    """MINPACK's ``lmder`` (scipy's ``leastsq`` / ``least_squares(method='lm')``), problems in lockstep."""

    def optimality_of(self, st: _Active, idx: np.ndarray) -> np.ndarray:
        return np.abs(st.g[idx]).max(axis=1)  # at the last Jacobian (g_norm holds MINPACK's cosine)

    def start(self, st: _Active) -> None:
        n_par = st.x.shape[1]
        st.zeros("delta", "par", "xnorm", "gn_dx", "gn_curv")
        st.zeros("diag", "lam", "c", "gn_q", shape=(n_par,))
        st.zeros("vecs", shape=(n_par, n_par))
        st.zeros("full_rank", dtype=bool)
        st.first = np.ones(st.size, bool)  # no successful step yet (MINPACK's iter == 1)

    def outer_setup(self, st: _Active) -> None:
        """At a new point (J just evaluated): scaling, step bound on the first pass, gtol test, decomposition."""
        opt = self.opt
        done = np.flatnonzero(st.term != _RUNNING)
        if done.size:
            self.retire(st, done)
        fresh = np.flatnonzero(st.fresh)
        if fresh.size == 0:
            return
        n_par = st.x.shape[1]
        jtj, g = st.jtj[fresh], st.g[fresh]
        acnorm = np.sqrt(np.maximum(np.diagonal(jtj, axis1=1, axis2=2), 0.0))  # column norms of J
        first = st.first[fresh]
        diag = np.where(first[:, None], np.where(acnorm == 0, 1.0, acnorm), st.diag[fresh])
        xnorm = _norm(diag * st.x[fresh])
        delta = opt.factor * xnorm
        st.xnorm[fresh] = np.where(first, xnorm, st.xnorm[fresh])
        st.delta[fresh] = np.where(first, np.where(delta == 0, opt.factor, delta), st.delta[fresh])
        fnorm = np.sqrt(2.0 * st.cost[fresh])
        cosine = np.where(acnorm > 0, np.abs(g) / (acnorm * fnorm[:, None]), 0.0)
        gnorm = np.where(fnorm == 0, 0.0, cosine.max(axis=1))
        st.g_norm[fresh] = gnorm
        stop = gnorm <= opt.gtol
        if stop.any():
            st.term[fresh[stop]] = Termination.GTOL
            self.retire(st, fresh[stop])
            diag, acnorm, jtj, g = diag[~stop], acnorm[~stop], jtj[~stop], g[~stop]
            fresh = np.flatnonzero(st.fresh)  # the same problems, renumbered after retiring
            if fresh.size == 0:
                return
        diag = np.maximum(diag, acnorm)
        scaled = jtj / (diag[:, :, None] * diag[:, None, :])
        lam, vecs = np.linalg.eigh(scaled)
        lam = np.maximum(lam, 0.0)
        c = _matvec(vecs.transpose(0, 2, 1), g / diag)
        s = np.sqrt(lam)
        full_rank = (st.n_valid[fresh] >= n_par) & (s[:, 0] > EPS * st.n_valid[fresh] * s[:, -1])
        usable = lam > (EPS * st.n_valid[fresh] * s[:, -1])[:, None] ** 2
        gn_q = np.where(usable, c / np.where(usable, lam, 1.0), 0.0)
        gn_dx = _norm(gn_q)
        gn_curv = np.sum(np.where(usable, c**2 / np.where(usable, lam, 1.0) ** 3, 0.0), axis=1)
        st.diag[fresh], st.lam[fresh], st.vecs[fresh], st.c[fresh] = diag, lam, vecs, c
        st.full_rank[fresh], st.gn_q[fresh], st.gn_dx[fresh], st.gn_curv[fresh] = full_rank, gn_q, gn_dx, gn_curv
        st.fresh[fresh] = False

    def trial(self, st: _Active) -> None:
        """One damped step (one residual evaluation) per active problem, with MINPACK's updates and tests."""
        opt = self.opt
        q, par = _lmpar(st.lam, st.c, st.full_rank, st.gn_q, st.gn_dx, st.gn_curv, st.delta, st.par)
        step = -_matvec(st.vecs, q) / st.diag
        pnorm = _norm(q)
        delta = np.where(st.first, np.minimum(st.delta, pnorm), st.delta)
        x_new = st.x + step
        model = np.asarray(self.model_fn(x_new, st.rows), dtype=float)
        st.nfev += 1
        f_new = self.residual(model, st)
        finite = np.isfinite(f_new).all(axis=1)
        if opt.fail_on_nonfinite and not finite.all():
            bad = np.flatnonzero(~finite)
            st.term[bad] = Termination.NONFINITE
        fnorm = np.sqrt(2.0 * st.cost)
        fnorm1 = np.where(finite, _norm(np.where(finite[:, None], f_new, 0.0)), np.inf)
        actred = np.where(0.1 * fnorm1 < fnorm, 1.0 - (fnorm1 / fnorm) ** 2, -1.0)
        t1 = np.sum(st.lam * q * q, axis=1) / fnorm**2  # ||J p||^2 / fnorm^2
        t2 = par * pnorm**2 / fnorm**2
        prered = t1 + 2.0 * t2
        dirder = -(t1 + t2)
        ratio = np.where(prered != 0, actred / prered, 0.0)
        shrink = ratio <= 0.25
        temp = np.where(actred >= 0, 0.5, 0.5 * dirder / (dirder + 0.5 * actred))
        temp = np.where((0.1 * fnorm1 >= fnorm) | (temp < 0.1), 0.1, temp)
        grow = ~shrink & ((par == 0) | (ratio >= 0.75))
        st.delta = np.where(shrink, temp * np.minimum(delta, pnorm / 0.1), np.where(grow, pnorm / 0.5, delta))
        st.par = np.where(shrink, par / temp, np.where(grow, 0.5 * par, par))
        success = (ratio >= 1e-4) & finite
        if success.any():
            st.x[success] = x_new[success]
            st.cost[success] = 0.5 * fnorm1[success] ** 2
            st.xnorm[success] = _norm(st.diag[success] * x_new[success])
            st.first[success] = False
        ftol_ok = (np.abs(actred) <= opt.ftol) & (prered <= opt.ftol) & (0.5 * ratio <= 1)
        xtol_ok = st.delta <= opt.xtol * st.xnorm
        info = np.where(ftol_ok & xtol_ok, Termination.FTOL_XTOL,
                        np.where(xtol_ok, Termination.XTOL, np.where(ftol_ok, Termination.FTOL, _RUNNING)))
        # MINPACK's later tests overwrite earlier ones: the last true condition wins
        other = info == _RUNNING
        info = np.where(other & (st.nfev >= opt.max_nfev), Termination.MAX_NFEV, info)
        info = np.where(other & (np.abs(actred) <= EPS) & (prered <= EPS) & (0.5 * ratio <= 1),
                        Termination.FTOL_TOO_SMALL, info)
        info = np.where(other & (st.delta <= EPS * st.xnorm), Termination.XTOL_TOO_SMALL, info)
        info = np.where(other & (st.g_norm <= EPS), Termination.GTOL_TOO_SMALL, info)
        running = st.term == _RUNNING
        st.term = np.where(running, info, st.term).astype(np.int8)
        new_point = np.flatnonzero(success & (st.term == _RUNNING))
        if new_point.size:  # J at the new point starts the next outer iteration
            st.fresh[new_point] = True
            self.store_jacobian(st, new_point, x_new[new_point], model[new_point], f_new[new_point])


def _as_bounds(bound, shape, fill):
    if bound is None:
        return np.full(shape, fill)
    return np.broadcast_to(np.asarray(bound, dtype=float), shape).astype(float)


def solve_batch(
    model_fn: ModelFn,
    jac_fn: JacFn | None,
    y: np.ndarray,
    weights: np.ndarray | None,
    p0: np.ndarray,
    lower: np.ndarray | None = None,
    upper: np.ndarray | None = None,
    options: SolverOptions | None = None,
    *,
    absolute_weights: bool = True,
) -> BatchResult:
    """Fit B independent problems at once (see the module docstring for the algorithms).

    ``y`` (B, n) data; ``weights`` (B, n) or None (all ones), residual ``weights * (model - y)``,
    zero weight masks a sample (its ``y`` may then be NaN); ``p0`` (B, p) or (p,) initial values;
    ``lower`` / ``upper`` (p,) or (B, p), +-inf for no bound (``method="lm"`` takes none); ``jac_fn``
    None means batched forward differences. ``absolute_weights=False`` scales the covariance by the
    reduced chi-square, which is what astropy does when it fits without weights.
    """
    opt = options or SolverOptions()
    y = np.asarray(y, dtype=float)
    if y.ndim != 2:
        raise ValueError(f"y must be (B, n), got shape {y.shape}")
    batch, n = y.shape
    p0 = np.array(np.broadcast_to(np.asarray(p0, dtype=float), (batch, np.shape(p0)[-1])))
    n_par = p0.shape[1]
    w = np.ones_like(y) if weights is None else np.broadcast_to(np.asarray(weights, dtype=float), y.shape)
    lb = _as_bounds(lower, (batch, n_par), -np.inf)
    ub = _as_bounds(upper, (batch, n_par), np.inf)
    if np.any(lb >= ub):
        raise ValueError("each lower bound must be strictly less than its upper bound")
    if opt.method == "lm" and (np.isfinite(lb).any() or np.isfinite(ub).any()):
        raise ValueError("method 'lm' does not support bounds")

    algorithm = _LevenbergMarquardt if opt.method == "lm" else _TrustRegionReflective
    solver = algorithm(model_fn, jac_fn, opt, y, w, lb, ub)
    inside = np.all((p0 >= lb) & (p0 <= ub), axis=1)
    solver.code[solver.n_valid == 0] = Termination.ALL_MASKED
    solver.code[(solver.n_valid > 0) & ~inside] = Termination.OUTSIDE_BOUNDS
    # The vectorised algorithm evaluates both sides of every per-problem decision (np.where), so
    # divisions by zero and overflows in the side not taken are expected: silence them once here.
    with np.errstate(all="ignore"):
        solver.run(p0)

    code = solver.code
    nonfinite = ~_failed(code) & ~np.isfinite(solver.params).all(axis=1)
    code[nonfinite] = Termination.NONFINITE
    status = status_from_code(code)
    solver.params[status == STATUS_FAILED] = np.nan
    solver.cost[status == STATUS_FAILED] = np.nan
    solver.optimality[status == STATUS_FAILED] = np.nan
    covariance = None
    n_valid = solver.n_valid
    if opt.compute_covariance:
        use = np.flatnonzero((status != STATUS_FAILED) & (n_valid > n_par))
        covariance = np.full((batch, n_par, n_par), np.nan)
        if use.size:
            with np.errstate(all="ignore"):
                _final_covariance(solver, covariance, use, absolute_weights)
    return BatchResult(
        params=solver.params,
        status=status,
        code=code,
        nfev=solver.nfev,
        njev=solver.njev,
        cost=solver.cost,
        optimality=solver.optimality,
        covariance=covariance,
    )


def _final_covariance(solver: _Solver, covariance: np.ndarray, use: np.ndarray, absolute_weights: bool) -> None:
    """Fill covariance[use] from the Jacobian at the results (evaluated once more, not kept from every step)."""
    x = solver.params[use]
    valid, w = solver.valid[use], solver.w[use]
    model = np.asarray(solver.model_fn(x, use), dtype=float)
    jac = np.stack(solver.jacobian(x, use, model, w, valid, solver.lb[use], solver.ub[use]), axis=1)
    covariance[use] = _covariance(jac, solver.cost[use], solver.n_valid[use], absolute_weights)
    if solver.opt.method == "lm":  # least_squares reports |J^T f| at the result for 'lm'
        f = np.where(valid, w * (model - np.where(valid, solver.y[use], 0.0)), 0.0)
        solver.optimality[use] = np.abs(_matvec(jac, f)).max(axis=1)


def _covariance(jac, cost, n_valid, absolute_weights):
    """Parameter covariance as astropy computes it: pseudo-inverse of J^T J through the SVD of J."""
    n_par = jac.shape[1]
    vt, s, _ = np.linalg.svd(jac, full_matrices=False)  # jac is J^T = V S U^T
    vt = vt.transpose(0, 2, 1)
    # masked samples are rows of zeros here; astropy drops them, so the threshold counts valid rows only
    threshold = EPS * np.maximum(n_valid, n_par) * s[:, 0]
    inv = np.zeros_like(s)
    np.divide(1.0, s**2, out=inv, where=s > threshold[:, None])
    cov = (vt.transpose(0, 2, 1) * inv[:, None, :]) @ vt
    if not absolute_weights:
        cov *= (2.0 * cost / (n_valid - n_par))[:, None, None]
    return cov
