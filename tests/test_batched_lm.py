"""The batched trust-region-reflective solver against scipy.optimize.least_squares, problem by problem."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import least_squares

from hpcfit.cubefit.batched_lm import (
    STATUS_CONVERGED,
    STATUS_FAILED,
    STATUS_WARNING,
    SolverOptions,
    Termination,
    solve_batch,
)

X = np.linspace(-5.0, 5.0, 41)


def gauss(p, x=X):
    return p[:, 0:1] * np.exp(-0.5 * (x - p[:, 1:2]) ** 2 / p[:, 2:3] ** 2)


def gauss_jac(p, x=X):
    e = np.exp(-0.5 * (x - p[:, 1:2]) ** 2 / p[:, 2:3] ** 2)
    dx = x - p[:, 1:2]
    a, s = p[:, 0:1], p[:, 2:3]
    return np.stack([e, a * e * dx / s**2, a * e * dx**2 / s**3], axis=1)


def model_fn(p, rows):
    return gauss(p)


def jac_fn(p, rows):
    return gauss_jac(p)


def spectra(n, seed, noise=0.3):
    rng = np.random.default_rng(seed)
    true = np.c_[rng.uniform(0.5, 3, n), rng.uniform(-2, 2, n), rng.uniform(0.3, 1.5, n)]
    return true, gauss(true) + rng.normal(0, noise, (n, X.size))


def scipy_fit(y, p0, lower=-np.inf, upper=np.inf, weights=None, analytic=True, max_nfev=100):
    """What astropy's TRFLSQFitter asks of scipy, for one problem."""
    w = np.ones_like(y) if weights is None else weights
    keep = w != 0
    x = X[keep]

    def fun(p):
        return w[keep] * (gauss(p[None], x)[0] - y[keep])

    def jac(p):
        return (w[keep] * gauss_jac(p[None], x)[0]).T

    return least_squares(fun, p0, jac=jac if analytic else "2-point", method="trf", bounds=(lower, upper),
                         xtol=1e-7, max_nfev=max_nfev, diff_step=np.sqrt(np.finfo(float).eps))


def assert_same_path(res, refs, rel=1e-8, atol=1e-10):
    """Same answers and, for nearly every problem, the same number of evaluations and termination."""
    ref_x = np.array([r.x for r in refs])
    np.testing.assert_allclose(res.params, ref_x, rtol=rel, atol=atol)
    same_nfev = np.mean(res.nfev == np.array([r.nfev for r in refs]))
    same_status = np.mean(res.code == np.array([r.status for r in refs]))
    assert same_nfev >= 0.95 and same_status >= 0.95
    np.testing.assert_allclose(res.cost, [r.cost for r in refs], rtol=1e-8)


def test_unbounded_gaussians_follow_scipy():
    _, y = spectra(30, seed=1)
    p0 = np.array([1.0, 0.0, 1.0])
    res = solve_batch(model_fn, jac_fn, y, None, p0)
    assert_same_path(res, [scipy_fit(row, p0) for row in y])
    assert np.all(res.status == STATUS_CONVERGED)
    np.testing.assert_array_equal(res.njev, [scipy_fit(row, p0).njev for row in y])


def test_bounds_active_and_inactive_follow_scipy():
    true, y = spectra(30, seed=2)
    lower, upper = np.array([-np.inf, -0.5, 0.05]), np.array([np.inf, 0.5, np.inf])
    p0 = np.array([1.0, 0.0, 1.0])
    res = solve_batch(model_fn, jac_fn, y, None, p0, lower, upper)
    assert_same_path(res, [scipy_fit(row, p0, lower, upper) for row in y])
    mean = res.params[:, 1]
    assert np.all((mean >= -0.5) & (mean <= 0.5))
    at_bound = np.isclose(np.abs(mean), 0.5, rtol=1e-6)
    assert at_bound.any() and (~at_bound).any()  # both regimes were exercised


def test_per_problem_bounds():
    _, y = spectra(10, seed=3)
    p0 = np.array([1.0, 0.0, 1.0])
    lower = np.tile([-np.inf, -np.inf, 0.05], (10, 1))
    upper = np.tile([np.inf, np.inf, np.inf], (10, 1))
    lower[:, 1] = -np.linspace(0.1, 3.0, 10)
    upper[:, 1] = np.linspace(0.1, 3.0, 10)
    res = solve_batch(model_fn, jac_fn, y, None, p0, lower, upper)
    assert_same_path(res, [scipy_fit(row, p0, lo, hi) for row, lo, hi in zip(y, lower, upper)])


def test_finite_differences_follow_scipy_two_point():
    _, y = spectra(20, seed=4)
    p0 = np.array([1.0, 0.0, 1.0])
    lower, upper = np.array([0.0, -1.0, 0.05]), np.array([10.0, 1.0, 5.0])
    res = solve_batch(model_fn, None, y, None, p0, lower, upper)
    # forward differences carry ~1e-8 relative error, so allow the paths to drift apart by a little more
    assert_same_path(res, [scipy_fit(row, p0, lower, upper, analytic=False) for row in y], rel=1e-6, atol=1e-6)
    assert np.all(res.njev >= 1)


def test_masked_samples_are_ignored():
    _, y = spectra(12, seed=5)
    rng = np.random.default_rng(5)
    weights = rng.uniform(0.5, 2.0, y.shape)
    weights[rng.random(y.shape) < 0.2] = 0.0
    y = np.where(weights == 0, np.nan, y)  # masked samples may hold anything
    p0 = np.array([1.0, 0.0, 1.0])
    res = solve_batch(model_fn, jac_fn, y, weights, p0)
    assert_same_path(res, [scipy_fit(row, p0, weights=w) for row, w in zip(y, weights)])


def test_all_masked_problem_fails_alone():
    _, y = spectra(4, seed=6)
    weights = np.ones_like(y)
    weights[2] = 0.0
    res = solve_batch(model_fn, jac_fn, y, weights, np.array([1.0, 0.0, 1.0]))
    assert res.status[2] == STATUS_FAILED and res.code[2] == Termination.ALL_MASKED
    assert np.all(np.isnan(res.params[2]))
    assert np.all(res.status[[0, 1, 3]] == STATUS_CONVERGED)
    assert "masked" in res.message(2)


def test_max_nfev_gives_warning_status():
    _, y = spectra(5, seed=7)
    p0 = np.array([1.0, 0.0, 1.0])
    res = solve_batch(model_fn, jac_fn, y, None, p0, options=SolverOptions(max_nfev=3))
    assert np.all(res.status == STATUS_WARNING)
    assert np.all(res.nfev == 3) and np.all(res.code == Termination.MAX_NFEV)
    ref = [scipy_fit(row, p0, max_nfev=3) for row in y]
    np.testing.assert_allclose(res.params, [r.x for r in ref], rtol=1e-10)
    assert all(r.status == 0 for r in ref)
    assert "unsuccessful" in res.message(0)


def test_failures_at_the_start():
    _, y = spectra(4, seed=8)
    y[1, 3] = np.nan  # unmasked NaN: astropy's objective raises, the fit fails
    lower, upper = np.array([-np.inf, -1.0, 0.05]), np.array([np.inf, 1.0, np.inf])
    p0 = np.tile([1.0, 0.0, 1.0], (4, 1))
    p0[2, 1] = 2.0  # outside the bounds
    res = solve_batch(model_fn, jac_fn, y, None, p0, lower, upper)
    assert res.code[1] == Termination.NONFINITE_START and res.code[2] == Termination.OUTSIDE_BOUNDS
    assert np.all(res.status[[1, 2]] == STATUS_FAILED) and np.all(np.isnan(res.params[[1, 2]]))
    assert np.all(res.status[[0, 3]] == STATUS_CONVERGED)
    with pytest.raises(ValueError, match="each lower bound must be strictly less than its upper bound"):
        solve_batch(model_fn, jac_fn, y, None, p0, upper, upper)


def test_nonfinite_trial_step_fails_or_shrinks():
    # f(c) = sqrt(c - 5) * x is NaN for c < 5: the Gauss-Newton step from c = 9 towards c ~ 5 overshoots.
    x = np.linspace(1.0, 3.0, 10)
    y = np.array([0.1 * x, 0.05 * x, 2.5 * x])

    def sqrt_model(p, rows):
        with np.errstate(invalid="ignore"):
            return np.sqrt(p[:, 0:1] - 5) * x

    def sqrt_jac(p, rows):
        with np.errstate(divide="ignore", invalid="ignore"):
            return (0.5 / np.sqrt(p[:, 0:1] - 5) * x)[:, None, :]

    p0 = np.array([9.0])
    strict = solve_batch(sqrt_model, sqrt_jac, y, None, p0)
    lenient = solve_batch(sqrt_model, sqrt_jac, y, None, p0, options=SolverOptions(fail_on_nonfinite=False))
    with np.errstate(invalid="ignore"):
        refs = [least_squares(lambda p, r=r: np.sqrt(p[0] - 5) * x - r, p0,
                              jac=lambda p: (0.5 / np.sqrt(p[0] - 5) * x)[:, None],
                              method="trf", xtol=1e-7, max_nfev=100) for r in y]
    hit = strict.code == Termination.NONFINITE
    assert hit.any() and np.all(strict.status[~hit] == STATUS_CONVERGED)
    np.testing.assert_allclose(lenient.params[:, 0], [r.x[0] for r in refs], rtol=1e-8)
    np.testing.assert_array_equal(lenient.nfev, [r.nfev for r in refs])


def test_covariance_is_pseudo_inverse_scaled_as_astropy_does():
    _, y = spectra(8, seed=9)
    sigma = np.full_like(y, 0.3)
    p0 = np.array([1.0, 0.0, 1.0])
    absolute = solve_batch(model_fn, jac_fn, y, 1 / sigma, p0)
    relative = solve_batch(model_fn, jac_fn, y, None, p0, absolute_weights=False)
    for i in range(len(y)):
        j = (gauss_jac(absolute.params[i : i + 1])[0] / sigma[i][None, :]).T
        ref = np.linalg.pinv(j.T @ j)
        np.testing.assert_allclose(absolute.covariance[i], ref, rtol=1e-7, atol=1e-10 * np.abs(ref).max())
        j = gauss_jac(relative.params[i : i + 1])[0].T
        dof = X.size - 3
        ref = np.linalg.pinv(j.T @ j) * 2 * relative.cost[i] / dof
        np.testing.assert_allclose(relative.covariance[i], ref, rtol=1e-7, atol=1e-10 * np.abs(ref).max())


def test_rows_argument_selects_per_problem_data():
    # per-problem coordinates live in the caller's closure; the solver passes the rows it evaluates
    rng = np.random.default_rng(10)
    shifts = rng.uniform(-1, 1, 15)
    xs = X[None, :] + shifts[:, None]
    true = np.c_[rng.uniform(1, 2, 15), rng.uniform(-1, 1, 15), rng.uniform(0.5, 1.0, 15)]
    y = gauss(true, xs)
    seen = []

    def per_row_model(p, rows):
        seen.append(rows.size)
        return gauss(p, xs[rows])

    res = solve_batch(per_row_model, lambda p, rows: gauss_jac(p, xs[rows]), y, None, np.array([1.5, 0.0, 0.8]))
    np.testing.assert_allclose(res.params, true, rtol=1e-6)
    assert min(seen) < 15  # converged problems left the active set


def minpack_fit(y, p0, kind, max_nfev=100):
    """What LMLSQFitter ('least_squares') and LevMarLSQFitter ('leastsq') ask of MINPACK, for one problem."""
    def fun(p):
        return gauss(p[None])[0] - y

    def jac(p):
        return gauss_jac(p[None])[0]

    if kind == "least_squares":
        r = least_squares(fun, p0, jac=lambda p: jac(p).T, method="lm", xtol=1e-7, max_nfev=max_nfev)
        return r.x, r.nfev, r.status
    from scipy.optimize import leastsq

    x, _, info, _, ier = leastsq(fun, p0, Dfun=jac, col_deriv=True, maxfev=max_nfev, xtol=1e-7, full_output=True)
    return x, info["nfev"], ier


@pytest.mark.parametrize("kind, options", [
    ("least_squares", SolverOptions(method="lm")),
    ("leastsq", SolverOptions(method="lm", ftol=1.49012e-8, gtol=0.0)),
])
def test_levenberg_marquardt_follows_minpack(kind, options):
    _, y = spectra(30, seed=11)
    p0 = np.array([1.0, 0.0, 1.0])
    res = solve_batch(model_fn, jac_fn, y, None, p0, options=options)
    refs = [minpack_fit(row, p0, kind) for row in y]
    np.testing.assert_allclose(res.params, [r[0] for r in refs], rtol=1e-8)
    assert np.mean(res.nfev == [r[1] for r in refs]) >= 0.95
    # termination codes: least_squares' own, or MINPACK's info (1 ftol, 2 xtol, 3 both, 4 gtol, 5 maxfev)
    minpack_to_code = {1: Termination.FTOL, 2: Termination.XTOL, 3: Termination.FTOL_XTOL, 4: Termination.GTOL,
                       5: Termination.MAX_NFEV}
    expected = [r[2] if kind == "least_squares" else minpack_to_code[r[2]] for r in refs]
    assert np.mean(res.code == expected) >= 0.95


def test_levenberg_marquardt_max_nfev_and_no_bounds():
    _, y = spectra(4, seed=12)
    p0 = np.array([1.0, 0.0, 1.0])
    res = solve_batch(model_fn, jac_fn, y, None, p0, options=SolverOptions(method="lm", max_nfev=4))
    assert np.all(res.status == STATUS_WARNING) and np.all(res.nfev == 4)
    np.testing.assert_allclose(res.params, [minpack_fit(row, p0, "least_squares", 4)[0] for row in y], rtol=1e-10)
    with pytest.raises(ValueError, match="bounds"):
        solve_batch(model_fn, jac_fn, y, None, p0, [0, -1, 0], [5, 1, 5], SolverOptions(method="lm"))
