"""Fast unit tests of batched_lm's small helpers, written to kill mutants the end-to-end fits let survive."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize._lsq.common import make_strictly_feasible

from hpcfit.cubefit.batched_lm import (
    STATUS_CONVERGED, STATUS_FAILED, STATUS_WARNING, Termination, _forward_difference, _strictly_feasible,
    status_from_code,
)


def test_termination_codes_follow_scipy_and_minpack():
    """The codes are written to output files and compared with scipy's least_squares ``status``."""
    assert [Termination.MAX_NFEV, Termination.GTOL, Termination.FTOL, Termination.XTOL,
            Termination.FTOL_XTOL] == [0, 1, 2, 3, 4]
    assert [Termination.FTOL_TOO_SMALL, Termination.XTOL_TOO_SMALL, Termination.GTOL_TOO_SMALL] == [6, 7, 8]
    assert all(t < 0 for t in (Termination.ALL_MASKED, Termination.NONFINITE_START, Termination.OUTSIDE_BOUNDS,
                               Termination.NONFINITE))


def test_status_from_code():
    codes = np.array([Termination.GTOL, Termination.FTOL_XTOL, Termination.MAX_NFEV, Termination.XTOL_TOO_SMALL,
                      Termination.ALL_MASKED, Termination.NONFINITE])
    status = status_from_code(codes)
    assert status.dtype == np.int8
    assert status.tolist() == [STATUS_CONVERGED, STATUS_CONVERGED, STATUS_WARNING, STATUS_WARNING, STATUS_FAILED,
                               STATUS_FAILED]


@pytest.mark.parametrize("rstep", [0.0, 1e-10, 1e-3])
def test_strictly_feasible_matches_scipy(rstep):
    lb = np.array([[0.0, -1.0, -np.inf, 2.0, 5.0, -3.0]])
    ub = np.array([[1.0, 1.0, 0.0, 2.0 + 1e-14, np.inf, 3.0]])
    cases = [np.array([[0.0, 1.0, 0.0, 2.0, 5.0, 0.5]]),     # on bounds (and a tiny interval)
             np.array([[0.5, 0.0, -4.0, 2.0, 7.0, -3.0]]),    # mostly inside
             np.array([[1e-12, 1.0 - 1e-12, -1e-12, 2.0, 5.0 + 1e-12, 3.0]])]  # just inside
    for x in cases:
        got = _strictly_feasible(x.copy(), lb, ub, rstep)
        want = np.array([make_strictly_feasible(x[0], lb[0], ub[0], rstep=rstep)])
        np.testing.assert_array_equal(got, want)
        assert np.all(got > lb) and np.all(got < ub) or rstep == 0 and np.all((got >= lb) & (got <= ub))


def test_strictly_feasible_leaves_interior_points_alone():
    x = np.array([[0.25, -0.5]])
    lb, ub = np.array([[0.0, -1.0]]), np.array([[1.0, 1.0]])
    assert _strictly_feasible(x, lb, ub, 0.0) is x
    np.testing.assert_array_equal(_strictly_feasible(x, lb, ub, 1e-10), x)


def _model(x, rows):
    """m_i(t) = a exp(-b t) on 5 samples, batched over rows of x = (a, b)."""
    t = np.linspace(0.0, 2.0, 5)
    return x[:, :1] * np.exp(-x[:, 1:2] * t)


def _jacobian(x):
    t = np.linspace(0.0, 2.0, 5)
    return [np.exp(-x[:, 1:2] * t), -x[:, :1] * t * np.exp(-x[:, 1:2] * t)]


@pytest.mark.parametrize("rel_step", [1e-8, 1e-6])
def test_forward_difference_inside_and_at_bounds(rel_step):
    x = np.array([[2.0, 0.5], [-1.0, 1.0], [3.0, 1.5], [0.0, 0.0], [1.0, 2.0]])
    lb = np.array([[-5.0, -5.0], [-5.0, -5.0], [-5.0, -5.0], [-5.0, -5.0], [1.0 - 1e-9, 2.0 - 1e-9]])
    # row 2 sits on its upper bounds: the step must go down; row 4's box is narrower than the step
    ub = np.array([[5.0, 5.0], [5.0, 5.0], [3.0, 1.5], [5.0, 5.0], [1.0 + 1e-9, 2.0 + 1e-9]])
    rows = np.arange(len(x))
    m0 = _model(x, rows)
    cols = _forward_difference(_model, x, rows, m0, lb, ub, rel_step)
    for got, want in zip(cols, _jacobian(x)):
        np.testing.assert_allclose(got, want, rtol=2e-3, atol=1e-5)
    # every evaluation point stayed inside the bounds
    seen = []
    _forward_difference(lambda xj, r: (seen.append(xj.copy()), _model(xj, r))[1], x, rows, m0, lb, ub, rel_step)
    for xj in seen:
        assert np.all(xj >= lb) and np.all(xj <= ub)


@pytest.mark.parametrize("rel_step", [1e-8, 1e-6])
def test_forward_difference_takes_scipys_steps(rel_step):
    """The same step rule as scipy's approx_derivative('2-point'), so the derivatives agree to rounding."""
    from scipy.optimize._numdiff import approx_derivative

    # row 6 has b = 0 exactly (the absolute-step fallback, stepping up) with a non-zero derivative in b
    x = np.array([[2.0, 0.5], [-1.0, 1.0], [3.0, 1.5], [0.0, 0.0], [1.0, 2.0], [-2.0, -0.5], [1.5, 0.0]])
    lb = np.array([[-5.0, -5.0], [-5.0, -5.0], [-5.0, -5.0], [-5.0, -5.0], [1.0 - 1e-9, 2.0 - 1e-9],
                   [-2.0, -0.5], [-5.0, -5.0]])
    ub = np.array([[5.0, 5.0], [5.0, 5.0], [3.0, 1.5], [5.0, 5.0], [1.0 + 1e-9, 2.0 + 1e-9], [0.0, 0.0],
                   [5.0, 5.0]])
    rows = np.arange(len(x))
    cols = _forward_difference(_model, x, rows, _model(x, rows), lb, ub, rel_step)
    for i in range(len(x)):
        want = approx_derivative(lambda p: _model(p[None, :], rows[:1])[0], x[i], method="2-point",
                                 rel_step=rel_step, bounds=(lb[i], ub[i]))
        for j in range(x.shape[1]):
            np.testing.assert_allclose(cols[j][i], want[:, j], rtol=1e-12, atol=1e-12)
