"""The chi2 block kernel against a brute-force double loop, and CIGALE's upper-limit formula evaluated directly."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import brentq
from scipy.special import erf, erfc, erfcx

from hpcfit.gridfit.chi2 import (
    ModelSlice,
    best_in_block,
    chi2_block,
    chi2_flops,
    pair_chi2,
    prepare_photometry,
    rows_per_block,
)

N_BANDS = 7


def synthetic(seed: int, n_gal: int = 37, n_mod: int = 300, snr: float = 10.0):
    """Galaxies made from grid models times a scale and a per-galaxy factor, plus Gaussian noise."""
    rng = np.random.default_rng(seed)
    models = rng.uniform(0.2, 3.0, (n_mod, N_BANDS))
    truth = rng.integers(0, n_mod, n_gal)
    factor = 10.0 ** rng.uniform(-1, 1, n_gal)
    scale = 10.0 ** rng.uniform(5, 8, n_gal)
    clean = (scale * factor)[:, None] * models[truth]
    error = clean / snr
    flux = clean + error * rng.normal(size=clean.shape)
    return models, flux, error, factor, truth, scale


def brute_force(models, flux, error, factor, valid, floor=0.0, nonnegative=True):
    """One pair at a time: weighted least-squares scale and chi2 = sum w (f - s k m)^2 (detections only)."""
    n_gal, n_mod = flux.shape[0], models.shape[0]
    chi2 = np.empty((n_gal, n_mod))
    scale = np.empty((n_gal, n_mod))
    for g in range(n_gal):
        use = valid[g]
        f = flux[g, use]
        w = 1.0 / (error[g, use] ** 2 + (floor * f) ** 2)
        for n in range(n_mod):
            q = factor[g] * models[n, use]
            s = np.sum(w * f * q) / np.sum(w * q * q) if use.any() else 0.0
            if nonnegative:
                s = max(s, 0.0)
            scale[g, n] = s
            chi2[g, n] = np.sum(w * (f - s * q) ** 2)
    return chi2, scale


def cigale_chi2(s, f, sig, q, ul, literal=False):
    """CIGALE's chi2 with upper limits (Sawicki 2012 eq. A10): sum_det ((f - s q)/sigma)^2 - 2 sum_ul ln P_ul.

    CIGALE writes P_ul = (1 + erf(x)) / 2 with x = (f - s q) / (sqrt(2) sigma) (``literal=True``); 1 + erf(x) loses
    all digits for x < -5 (a model far above its limit), so by default the identical erfc(-x) / 2 is used.
    """
    det = ~ul
    chi2 = np.sum(((f[det] - s * q[det]) / sig[det]) ** 2)
    x = (f[ul] - s * q[ul]) / (np.sqrt(2.0) * sig[ul])
    p_ul = 0.5 * (1.0 + erf(x)) if literal else 0.5 * erfc(-x)
    return chi2 - 2.0 * np.sum(np.log(p_ul))


def cigale_dchi2(s, f, sig, q, ul):
    """-1/2 dchi2/ds, Sawicki 2012 eq. A11 as in CIGALE's dchi2_over_ds2 (root = best scale).

    exp(-x^2) / (1 + erf(x)) is written 1 / erfcx(-x), the same function without underflow.
    """
    det = ~ul
    data = np.sum((f[det] - s * q[det]) * q[det] / sig[det] ** 2)
    x = (f[ul] - s * q[ul]) / (np.sqrt(2.0) * sig[ul])
    lim = np.sqrt(2.0 / np.pi) * np.sum(q[ul] / (sig[ul] * erfcx(-x)))
    return data - lim


@pytest.fixture(scope="module")
def loop_problem():
    """A block with missing bands and a calibration floor, and its brute-force chi2 and scales (computed once)."""
    models, flux, error, factor, truth, _ = synthetic(1)
    valid = np.ones(flux.shape, dtype=bool)
    valid[3, 2] = valid[5, [0, 6]] = valid[30, 4] = False
    floor = 0.05
    phot = prepare_photometry(flux, error, valid, error_floor=floor, model_factor=factor)
    return models, phot, truth, brute_force(models, flux, error, factor, valid, floor)


@pytest.mark.parametrize("tile_elements", [1000, 1 << 17])
def test_block_matches_double_loop(loop_problem, tile_elements):
    models, phot, truth, (ref_chi2, ref_scale) = loop_problem
    chi2, scale = chi2_block(phot, models, tile_elements=tile_elements)

    np.testing.assert_allclose(scale, ref_scale, rtol=1e-10)
    # Ff - A s cancels to ~1e-15 Ff: the block chi2 is exact relative to that, the best fit below is polished.
    np.testing.assert_allclose(chi2, ref_chi2, rtol=1e-10, atol=1e-13 * phot.ff.max())

    local, best_chi2, best_scale = best_in_block(phot, models, chi2, scale)
    rows = np.arange(phot.n_galaxies)
    np.testing.assert_array_equal(local, np.argmin(ref_chi2, axis=1))
    np.testing.assert_allclose(best_chi2, ref_chi2[rows, local], rtol=1e-10)
    np.testing.assert_allclose(best_scale, ref_scale[rows, local], rtol=1e-10)
    assert np.mean(local == truth) > 0.5  # a sanity check that the synthetic problem is well posed


def test_high_snr_rows_keep_chi2_exact():
    """At S/N 1e5 Ff ~ 7e10 and Ff - A s would lose ~1e-5 absolute; those rows are evaluated from residuals."""
    models, flux, error, factor, _, _ = synthetic(12, n_gal=4, n_mod=40, snr=1e5)
    phot = prepare_photometry(flux, error, model_factor=factor)
    assert phot.ff.min() > 1e6
    chi2, scale = chi2_block(phot, models)
    ref_chi2, ref_scale = brute_force(models, flux, error, factor, np.ones(flux.shape, dtype=bool))
    np.testing.assert_allclose(chi2, ref_chi2, rtol=1e-10)
    np.testing.assert_allclose(scale, ref_scale, rtol=1e-10)


def test_precomputed_slice_and_out_buffers_give_the_same_block():
    models, flux, error, factor, _, _ = synthetic(2, n_gal=5, n_mod=50)
    phot = prepare_photometry(flux, error, model_factor=factor)
    direct = chi2_block(phot, models)
    buf = (np.empty((5, 50)), np.empty((5, 50)))
    reused = chi2_block(phot, ModelSlice.from_fluxes(models), out=buf)
    assert reused[0] is buf[0] and reused[1] is buf[1]
    np.testing.assert_array_equal(direct[0], reused[0])
    np.testing.assert_array_equal(direct[1], reused[1])


def test_missing_band_equals_fit_without_that_band():
    models, flux, error, factor, _, _ = synthetic(3, n_gal=4, n_mod=60)
    valid = np.ones(flux.shape, dtype=bool)
    valid[1, 3] = False
    flux[1, 3] = np.nan  # a missing value must not leak into the sums
    chi2, scale = chi2_block(prepare_photometry(flux, error, valid, model_factor=factor), models)
    keep = np.delete(np.arange(N_BANDS), 3)
    sub = prepare_photometry(flux[1:2, keep], error[1:2, keep], model_factor=factor[1:2])
    sub_chi2, sub_scale = chi2_block(sub, models[:, keep])
    np.testing.assert_allclose(chi2[1], sub_chi2[0], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(scale[1], sub_scale[0], rtol=1e-12)
    phot = prepare_photometry(flux, error, valid, model_factor=factor)
    assert phot.n_used.tolist() == [7, 6, 7, 7]
    assert phot.dof().tolist() == [6, 5, 6, 6]


def test_default_valid_mask_skips_nan_entries():
    models, flux, error, factor, _, _ = synthetic(4, n_gal=3, n_mod=20)
    flux[0, 1] = np.nan
    error[2, 5] = np.nan
    phot = prepare_photometry(flux, error, model_factor=factor)
    assert phot.n_used.tolist() == [6, 7, 6]
    chi2, _ = chi2_block(phot, models)
    assert np.all(np.isfinite(chi2))


def upper_limit_problem(seed: int, nonnegative: bool = True):
    """Three galaxies: none, one (violated by the grid's best detections-only fit) and two upper limits."""
    models, flux, error, factor, truth, scale = synthetic(seed, n_gal=3, n_mod=40, snr=20.0)
    upper = np.zeros(flux.shape, dtype=bool)
    upper[1, 0] = True
    upper[2, [0, 6]] = True
    # Limits at 0.8 x the true flux, sigma = limit / 3: the limits pull the scale below the detections-only value.
    for g, b in zip(*np.nonzero(upper)):
        flux[g, b] = 0.8 * scale[g] * factor[g] * models[truth[g], b]
        error[g, b] = flux[g, b] / 3.0
    phot = prepare_photometry(flux, error, upper=upper, model_factor=factor, nonnegative=nonnegative)
    return models, flux, error, factor, upper, phot


def test_upper_limits_match_cigale_formula():
    models, flux, error, factor, upper, phot = upper_limit_problem(5)
    chi2, scale = chi2_block(phot, models)
    det_only = chi2_block(prepare_photometry(flux, error, ~upper, model_factor=factor), models)[1]
    checked_literal = 0
    for g in (1, 2):
        for n in range(models.shape[0]):
            q = factor[g] * models[n]
            s0 = det_only[g, n]
            assert cigale_dchi2(s0, flux[g], error[g], q, upper[g]) <= 0  # limits pull the scale down
            s_ref = brentq(cigale_dchi2, 0.0, s0, args=(flux[g], error[g], q, upper[g]), xtol=1e-300, rtol=1e-15)
            assert scale[g, n] == pytest.approx(s_ref, rel=1e-10)
            assert chi2[g, n] == pytest.approx(cigale_chi2(s_ref, flux[g], error[g], q, upper[g]), rel=1e-10)
            z = (flux[g, upper[g]] - s_ref * q[upper[g]]) / error[g, upper[g]]
            if np.all(z > -3):  # where CIGALE's literal 1 + erf is accurate, it agrees too
                literal = cigale_chi2(s_ref, flux[g], error[g], q, upper[g], literal=True)
                assert chi2[g, n] == pytest.approx(literal, rel=1e-10)
                checked_literal += 1
    assert checked_literal > 0
    # The galaxy without limits in the same block stays on the pure BLAS path.
    np.testing.assert_array_equal(scale[0], det_only[0])


def test_galaxy_with_an_upper_limit_still_fits():
    models, flux, error, factor, truth, true_scale = synthetic(6, n_gal=1, n_mod=80, snr=1e3)
    flux = (true_scale * factor)[:, None] * models[truth]  # noise-free
    upper = np.zeros(flux.shape, dtype=bool)
    upper[0, 2] = True
    flux[0, 2] *= 3.0  # a limit well above the model: the band is consistent and barely matters
    error[0, 2] = flux[0, 2] / 3.0
    phot = prepare_photometry(flux, error, upper=upper, model_factor=factor)
    chi2, scale = chi2_block(phot, models)
    local, best_chi2, best_scale = best_in_block(phot, models, chi2, scale)
    assert local[0] == truth[0]
    assert best_scale[0] == pytest.approx(true_scale[0], rel=1e-6)
    # Detections are exact; the limit sits 2 sigma above the model and costs -2 ln Phi(2).
    assert best_chi2[0] == pytest.approx(-2.0 * np.log(0.5 * erfc(-2.0 / np.sqrt(2.0))), rel=1e-6)
    assert phot.n_used[0] == N_BANDS and phot.n_upper[0] == 1
    np.testing.assert_allclose(best_chi2, pair_chi2(phot, models[local], best_scale), rtol=1e-12)


def test_unconstrained_scale_with_upper_limits():
    models, flux, error, factor, upper, phot = upper_limit_problem(7, nonnegative=False)
    flux[1, 1:] *= -1.0  # detections that prefer a negative scale
    phot = prepare_photometry(flux, error, upper=upper, model_factor=factor, nonnegative=False)
    chi2, scale = chi2_block(phot, models)
    g = 1
    for n in range(0, models.shape[0], 7):
        q = factor[g] * models[n]
        lo = -1e3 * abs(scale[g, n]) - 1.0
        hi = 1e3 * abs(scale[g, n]) + 1.0
        s_ref = brentq(cigale_dchi2, lo, hi, args=(flux[g], error[g], q, upper[g]), xtol=1e-300, rtol=1e-15)
        assert s_ref < 0
        assert scale[g, n] == pytest.approx(s_ref, rel=1e-10)
        assert chi2[g, n] == pytest.approx(cigale_chi2(s_ref, flux[g], error[g], q, upper[g]), rel=1e-10)


def test_nonnegative_scale_is_clamped():
    models, flux, error, factor, _, _ = synthetic(8, n_gal=3, n_mod=30)
    flux[1] *= -1.0
    valid = np.ones(flux.shape, dtype=bool)
    phot = prepare_photometry(flux, error, model_factor=factor)
    chi2, scale = chi2_block(phot, models)
    assert np.all(scale[1] == 0.0)
    np.testing.assert_allclose(chi2[1], phot.ff[1], rtol=1e-14)
    free = prepare_photometry(flux, error, model_factor=factor, nonnegative=False)
    chi2_free, scale_free = chi2_block(free, models)
    ref_chi2, ref_scale = brute_force(models, flux, error, factor, valid, nonnegative=False)
    assert np.all(scale_free[1] < 0)
    np.testing.assert_allclose(scale_free, ref_scale, rtol=1e-10)
    np.testing.assert_allclose(chi2_free, ref_chi2, rtol=1e-10, atol=1e-13 * free.ff.max())


def test_degenerate_rows_and_models():
    models, flux, error, factor, _, _ = synthetic(9, n_gal=3, n_mod=10)
    models[4, :] = 0.0  # a model with no flux at all: C = 0
    valid = np.ones(flux.shape, dtype=bool)
    valid[0] = False  # a galaxy with no data
    upper = np.zeros(flux.shape, dtype=bool)
    upper[2] = True  # only upper limits: with s >= 0 the best scale is 0
    error[2] = flux[2] / 3.0
    phot = prepare_photometry(flux, error, valid, upper, model_factor=factor)
    chi2, scale = chi2_block(phot, models)
    assert np.all(np.isfinite(chi2)) and np.all(np.isfinite(scale))
    assert np.all(chi2[0] == 0.0) and np.all(scale[0] == 0.0)
    assert np.all(scale[:, 4] == 0.0)
    np.testing.assert_allclose(chi2[1, 4], phot.ff[1])
    assert np.all(scale[2] == 0.0)
    np.testing.assert_allclose(chi2[2], -2 * np.log(0.5 * (1 + erf(3 / np.sqrt(2)))) * N_BANDS, rtol=1e-12)
    assert np.isnan(phot.reduced_chi2(chi2[:, 0])[0])


def test_invalid_inputs_are_rejected():
    models, flux, error, factor, _, _ = synthetic(10, n_gal=2, n_mod=5)
    bad = error.copy()
    bad[1, 3] = 0.0
    with pytest.raises(ValueError, match="errors must be positive.*galaxy 1, band 3"):
        prepare_photometry(flux, bad)
    with pytest.raises(ValueError, match="model_factor"):
        prepare_photometry(flux, error, model_factor=[1.0, -1.0])
    with pytest.raises(ValueError, match="bands"):
        chi2_block(prepare_photometry(flux, error), models[:, :5])


def test_sizes_and_flop_count():
    assert chi2_flops(10, 20, 7) == 4 * 10 * 20 * 7
    g = rows_per_block(100_000, 1 << 30)
    assert g * 100_000 * 8 * 2 <= 1 << 30 < (g + 1) * 100_000 * 8 * 2
