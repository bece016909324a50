"""Batched non-linear least squares: many small independent problems solved together with numpy.

The algorithm is the trust-region-reflective method that astropy's ``TRFLSQFitter`` runs through
``scipy.optimize.least_squares(method='trf')``: Coleman-Li scaling for bounds, reflected and
gradient steps when the trust-region step leaves the box, the trust-region subproblem solved exactly
from one eigen-decomposition per outer iteration, the same radius updates and the same ftol / xtol /
gtol tests. It is written here so that every operation acts on a whole batch: arrays carry a leading
batch axis, each problem keeps its own radius, counters and termination state, and problems that have
stopped leave the active set so that later iterations only evaluate the others. Following the same
path as scipy (not just reaching *a* minimum) is what makes the results agree with astropy's fitter
on poorly constrained spectra as well as on good ones.

A problem is ``minimise 0.5 * sum((weights * (model(params) - y))**2)`` over its free parameters,
within ``lower <= params <= upper``; ``weights == 0`` masks a sample. The model is any function of a
(B', p) parameter array and the batch rows it is evaluated for; this module knows nothing of astropy.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum

import numpy as np

EPS = float(np.finfo(float).eps)

#: ``model_fn(params (B', p), rows (B',)) -> (B', n)`` model values for those batch rows.
ModelFn = Callable[[np.ndarray, np.ndarray], np.ndarray]
#: ``jac_fn(params (B', p), rows (B',)) -> (B', p, n)`` derivatives of the model (not of the residual),
#: parameter-major so that stacking the per-parameter derivatives is a contiguous copy.
JacFn = Callable[[np.ndarray, np.ndarray], np.ndarray]

STATUS_CONVERGED, STATUS_WARNING, STATUS_FAILED = 0, 1, 2


class Termination(IntEnum):
    """Why one problem stopped: > 0 converged, 0 ran out of evaluations, < 0 failed."""

    MAX_NFEV = 0
    GTOL = 1
    FTOL = 2
    XTOL = 3
    FTOL_XTOL = 4
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
    """Tolerances and limits; the defaults are the values astropy's fitters pass to scipy."""

    max_nfev: int = 100  # astropy's DEFAULT_MAXITER, passed as max_nfev
    xtol: float = 1e-7  # astropy's DEFAULT_ACC, passed as xtol
    ftol: float = 1e-8  # scipy's default
    gtol: float = 1e-8  # scipy's default
    diff_step: float = float(np.sqrt(EPS))  # astropy's DEFAULT_EPS: relative forward-difference step
    # astropy's objective raises on a non-finite residual, which ends the fit as failed; False uses TRF's
    # own remedy instead (shrink the trust region and try again).
    fail_on_nonfinite: bool = True
    compute_covariance: bool = True


@dataclass
class BatchResult:
    """Per-problem results of :func:`solve_batch`; failed problems have NaN parameters."""

    params: np.ndarray  # (B, p) fitted free parameters
    status: np.ndarray  # (B,) int8: 0 converged, 1 converged with warning, 2 failed
    code: np.ndarray  # (B,) int8 Termination value
    nfev: np.ndarray  # (B,) residual evaluations, the initial one included
    njev: np.ndarray  # (B,) Jacobian evaluations
    cost: np.ndarray  # (B,) 0.5 * sum(residual**2) at the result
    optimality: np.ndarray  # (B,) infinity norm of the (Coleman-Li scaled) gradient at the result
    covariance: np.ndarray | None  # (B, p, p) as astropy's fit_info['param_cov'], NaN where unavailable

    def message(self, index: int) -> str:
        """Human-readable reason why problem ``index`` stopped."""
        return MESSAGES[Termination(int(self.code[index]))]


def status_from_code(code: np.ndarray) -> np.ndarray:
    """Map Termination codes to the 0 / 1 / 2 status convention."""
    code = np.asarray(code)
    return np.where(code > 0, STATUS_CONVERGED, np.where(code == 0, STATUS_WARNING, STATUS_FAILED)).astype(np.int8)


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
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
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
    with np.errstate(divide="ignore", invalid="ignore"):
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
    with np.errstate(divide="ignore", invalid="ignore"):
        t1 = q / a
        t2 = c / q
    return np.maximum(t1, t2)


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
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
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
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
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
    with np.errstate(divide="ignore", invalid="ignore"):
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
    x = x.copy()
    if rstep == 0:
        on_lower, on_upper = x <= lb, x >= ub
        on_lower &= ~on_upper
        x[on_lower] = np.nextafter(lb[on_lower], ub[on_lower])
        x[on_upper] = np.nextafter(ub[on_upper], lb[on_upper])
    else:
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
    k, n_par = x.shape
    jac = np.empty((k, n_par, m0.shape[1]))
    for j in range(n_par):  # one batched model call per parameter
        xj = x.copy()
        xj[:, j] += h[:, j]
        dx = xj[:, j] - x[:, j]
        jac[:, j, :] = (model_fn(xj, rows) - m0) / dx[:, None]
    return jac


# ---------------------------------------------------------------------------------------------------------
# The driver.


class _Active:
    """Compact state of the problems still running; rows maps back to the caller's batch."""

    FIELDS = (
        "rows", "x", "lb", "ub", "y", "w", "valid", "n_valid", "cost", "g", "jtj", "delta", "alpha",
        "nfev", "njev", "term", "fresh", "g_norm", "d", "diag_h", "g_h", "ah", "theta",
        "s2", "vecs", "suf", "full_rank", "gn_coef", "gn_norm",
    )  # fmt: skip

    def keep(self, mask: np.ndarray) -> None:
        for name in self.FIELDS:
            setattr(self, name, getattr(self, name)[mask])

    @property
    def size(self) -> int:
        return self.rows.size


class _Solver:
    """One call of :func:`solve_batch`: owns the result arrays and the active state."""

    def __init__(self, model_fn, jac_fn, options, batch, n, n_par):
        self.model_fn, self.jac_fn, self.opt = model_fn, jac_fn, options
        self.params = np.full((batch, n_par), np.nan)
        self.code = np.full(batch, _RUNNING, dtype=np.int8)
        self.nfev = np.zeros(batch, dtype=np.int64)
        self.njev = np.zeros(batch, dtype=np.int64)
        self.cost = np.full(batch, np.nan)
        self.optimality = np.full(batch, np.nan)
        self.any_masked = False
        self.unit_weights = False  # no weights and nothing masked: skip multiplying by ones

    # residuals and derivatives of a subset of the active problems
    def residual(self, model, st: _Active):
        if self.unit_weights:
            return model - st.y
        r = st.w * (model - st.y)
        if self.any_masked:
            r = np.where(st.valid, r, 0.0)
        return r

    def jacobian(self, x, rows, model, w, valid, lb, ub):
        """Jacobian of the residuals, (k, p, n); ``model`` (the values at x) serves finite differences."""
        if self.jac_fn is not None:
            jac = np.asarray(self.jac_fn(x, rows), dtype=float)
        else:
            jac = _forward_difference(self.model_fn, x, rows, model, lb, ub, self.opt.diff_step)
        if self.unit_weights:
            return jac
        jac = jac * w[:, None, :]
        if self.any_masked:
            jac = np.where(valid[:, None, :], jac, 0.0)
        return jac

    def store_jacobian(self, st: _Active, idx, x, model, f):
        """Evaluate J at accepted points; keep J^T f, J^T J (and J itself for the covariance)."""
        jac = self.jacobian(x, st.rows[idx], model, st.w[idx], st.valid[idx], st.lb[idx], st.ub[idx])
        st.njev[idx] += 1
        st.g[idx] = _matvec(jac, f)
        st.jtj[idx] = jac @ jac.transpose(0, 2, 1)
        bad = ~np.isfinite(st.jtj[idx]).all(axis=(1, 2))
        if bad.any():
            bad_idx = idx[bad]
            st.term[bad_idx] = Termination.NONFINITE
            st.fresh[bad_idx] = True
            st.g[bad_idx] = 0.0
            st.jtj[bad_idx] = 0.0

    def finish(self, st: _Active, idx) -> None:
        rows = st.rows[idx]
        code = st.term[idx]
        self.code[rows] = code
        ok = code >= 0
        self.params[rows[ok]] = st.x[idx][ok]
        self.cost[rows] = np.where(ok, st.cost[idx], np.nan)
        self.optimality[rows] = np.where(ok, st.g_norm[idx], np.nan)
        self.nfev[rows] = st.nfev[idx]
        self.njev[rows] = st.njev[idx]

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
            self.finish(st, ended)
            keep = np.ones(st.size, bool)
            keep[ended] = False
            st.keep(keep)
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
        # The eigen-decomposition and Gauss-Newton step serve every trial of this outer iteration.
        (st.s2[fresh], st.vecs[fresh], st.suf[fresh], st.full_rank[fresh], st.gn_coef[fresh],
         st.gn_norm[fresh]) = _decompose(a, g_h, st.n_valid[fresh])
        st.theta[fresh] = np.maximum(0.995, 1.0 - st.g_norm[fresh])
        st.fresh[fresh] = False

    def trial(self, st: _Active) -> None:
        """One trust-region trial step (one residual evaluation) for every active problem."""
        opt = self.opt
        p_h, st.alpha = _solve_trust_region(
            st.s2, st.vecs, st.suf, st.full_rank, st.gn_coef, st.gn_norm, st.delta, st.alpha
        )
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
        with np.errstate(divide="ignore", invalid="ignore"):
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
        with np.errstate(divide="ignore", invalid="ignore"):
            st.alpha[good[go_on]] *= delta[go_on] / new_delta[go_on]
        st.delta[good[go_on]] = new_delta[go_on]
        st.term[good[stopped]] = term[stopped]
        accepted = reduction > 0
        st.fresh[good] = stopped | accepted | (st.nfev[good] >= opt.max_nfev)
        if accepted.any():
            acc = good[accepted]
            st.x[acc] = x_new[accepted]
            st.cost[acc] = cost_new[accepted]
            self.store_jacobian(st, acc, x_new[accepted], model[accepted], f_new[accepted])


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
    """Fit B independent problems at once with the trust-region-reflective algorithm.

    ``y`` (B, n) data; ``weights`` (B, n) or None (all ones), residual ``weights * (model - y)``,
    zero weight masks a sample (its ``y`` may then be NaN); ``p0`` (B, p) or (p,) initial values;
    ``lower`` / ``upper`` (p,) or (B, p), +-inf for no bound; ``jac_fn`` None means batched forward
    differences. ``absolute_weights=False`` scales the covariance by the reduced chi-square, which is
    what astropy does when it fits without weights.
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

    solver = _Solver(model_fn, jac_fn, opt, batch, n, n_par)
    valid = w != 0
    n_valid = valid.sum(axis=1)
    solver.any_masked = not valid.all()
    solver.unit_weights = bool(np.all(w == 1.0))
    inside = np.all((p0 >= lb) & (p0 <= ub), axis=1)
    solver.code[n_valid == 0] = Termination.ALL_MASKED
    solver.code[(n_valid > 0) & ~inside] = Termination.OUTSIDE_BOUNDS
    start = np.flatnonzero(solver.code == _RUNNING)

    st = _Active()
    st.rows = start
    st.lb, st.ub = lb[start], ub[start]
    st.x = _strictly_feasible(p0[start], st.lb, st.ub, rstep=1e-10)
    st.y = np.where(valid[start], y[start], 0.0)
    st.w, st.valid, st.n_valid = w[start], valid[start], n_valid[start]
    k = start.size
    model = np.asarray(model_fn(st.x, st.rows), dtype=float)
    f = solver.residual(model, st)
    st.cost = 0.5 * _dot(f, f)
    st.nfev = np.ones(k, dtype=np.int64)
    st.njev = np.zeros(k, dtype=np.int64)
    st.term = np.full(k, _RUNNING, dtype=np.int8)
    st.fresh = np.ones(k, bool)
    st.g = np.zeros((k, n_par))
    st.jtj = np.zeros((k, n_par, n_par))
    for name in ("g_norm", "alpha", "theta", "gn_norm"):
        setattr(st, name, np.zeros(k))
    for name in ("d", "diag_h", "g_h", "s2", "suf", "gn_coef"):
        setattr(st, name, np.zeros((k, n_par)))
    for name in ("ah", "vecs"):
        setattr(st, name, np.zeros((k, n_par, n_par)))
    st.full_rank = np.zeros(k, bool)

    finite0 = np.isfinite(f).all(axis=1)
    st.term[~finite0] = Termination.NONFINITE_START
    ok0 = np.flatnonzero(finite0)
    solver.store_jacobian(st, ok0, st.x[ok0], model[ok0], f[ok0])
    v, _ = _coleman_li(st.x, st.g, st.lb, st.ub)
    with np.errstate(divide="ignore", invalid="ignore"):
        st.delta = _norm(st.x / np.sqrt(v))
    st.delta[st.delta == 0] = 1.0

    while st.size:
        solver.outer_setup(st)
        if st.size:
            solver.trial(st)

    code = solver.code
    nonfinite = (code >= 0) & ~np.isfinite(solver.params).all(axis=1)
    code[nonfinite] = Termination.NONFINITE
    status = status_from_code(code)
    solver.params[status == STATUS_FAILED] = np.nan
    covariance = None
    if opt.compute_covariance:
        use = np.flatnonzero((status != STATUS_FAILED) & (n_valid > n_par))
        covariance = np.full((batch, n_par, n_par), np.nan)
        if use.size:
            # J at the result, evaluated once more rather than kept from every accepted step
            x = solver.params[use]
            model = None if jac_fn is not None else np.asarray(model_fn(x, use), dtype=float)
            jac = solver.jacobian(x, use, model, w[use], valid[use], lb[use], ub[use])
            covariance[use] = _covariance(jac, solver.cost[use], n_valid[use], absolute_weights)
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
