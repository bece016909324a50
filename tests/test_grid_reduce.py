"""Best-fit MINLOC and log-sum-exp moments: against a brute-force loop, and merged from 1-4 grid slices in any order."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy.special import logsumexp

from hpcfit.gridfit.chi2 import best_in_block, chi2_block, prepare_photometry
from hpcfit.gridfit.reduce import (
    BestFit,
    Moments,
    ScaleQuantity,
    merge_best_packed,
    merge_moments_packed,
)

PARAM_NAMES = ("U_min", "U_max", "gamma", "q_PAH")
N_BANDS = 7


def product_grid():
    """A DL07-like product grid: 6 x 4 x 5 x 2 = 240 models with smooth-ish random band fluxes."""
    axes = [np.array([0.1, 0.5, 1.0, 3.0, 8.0, 25.0]), np.array([1e3, 1e5, 1e6, 1e7]),
            np.linspace(0.0, 0.2, 5), np.array([0.47, 4.58])]
    params = np.array(list(itertools.product(*axes)))
    rng = np.random.default_rng(11)
    shape = np.linspace(-1, 1, N_BANDS)
    logf = (np.log10(params[:, :1]) * shape + 0.3 * params[:, 2:3] - 0.05 * params[:, 3:4] * shape**2
            + 0.1 * np.log10(params[:, 1:2]) * shape**3 + 0.02 * rng.normal(size=(len(params), N_BANDS)))
    return params, 10.0**logf


@pytest.fixture(scope="module")
def problem():
    """Galaxies: ordinary S/N 10, one at S/N 1e4 (collapsed posterior), one upper limit, one with chi2 ~ 1e6."""
    params, models = product_grid()
    rng = np.random.default_rng(12)
    n_gal = 12
    truth = rng.integers(0, len(params), n_gal)
    factor = 10.0 ** rng.uniform(-1, 1, n_gal)
    scale = 10.0 ** rng.uniform(6, 8, n_gal)
    clean = (scale * factor)[:, None] * models[truth]
    snr = np.full(n_gal, 10.0)
    snr[1] = 1e4
    error = clean / snr[:, None]
    flux = clean + error * rng.normal(size=clean.shape)
    flux[2] = clean[2] * rng.uniform(0.2, 5.0, N_BANDS)  # no model fits: chi2 ~ 1e6, exp(-chi2/2) underflows
    error[2] = clean[2] / 300.0
    upper = np.zeros(flux.shape, dtype=bool)
    upper[3, 6] = True
    flux[3, 6] = 0.7 * clean[3, 6]
    error[3, 6] = flux[3, 6] / 3.0
    phot = prepare_photometry(flux, error, upper=upper, model_factor=factor)
    unit = 10.0 ** rng.uniform(-0.5, 0.5, len(params))  # e.g. dust mass per unit normalisation, per model
    return params, models, phot, unit


def quantities(unit):
    return [ScaleQuantity("log_dust_mass", unit), ScaleQuantity("dust_mass", unit, log10=False)]


def fit_slice(phot, models, params, unit, start, stop):
    """What one rank does for one galaxy block: kernel, best fit with its parameters as payload, moments."""
    chi2, scale = chi2_block(phot, models[start:stop])
    local, best_chi2, best_scale = best_in_block(phot, models[start:stop], chi2, scale)
    best = BestFit.from_block(local, best_chi2, best_scale, start, extra=params[start:stop][local])
    moments = Moments.from_block(chi2, params[start:stop], PARAM_NAMES, scale=scale,
                                 scale_quantities=quantities(unit[start:stop]), best_local=local)
    return best, moments, chi2, scale


def brute_force(chi2, scale, params, unit):
    """Per galaxy, one model at a time: MINLOC with strict '<', then two-pass weighted mean and std."""
    n_gal, n_mod = chi2.shape
    best = np.full(n_gal, -1)
    names = PARAM_NAMES + ("log_dust_mass", "dust_mass")
    mean = np.zeros((n_gal, len(names)))
    std = np.zeros((n_gal, len(names)))
    lse = np.zeros(n_gal)
    for g in range(n_gal):
        lo = np.inf
        for n in range(n_mod):
            if chi2[g, n] < lo:
                lo, best[g] = chi2[g, n], n
        values = [[*params[n], np.log10(scale[g, n] * unit[n]), scale[g, n] * unit[n]] for n in range(n_mod)]
        weights = [np.exp(-0.5 * (chi2[g, n] - lo)) for n in range(n_mod)]
        total = sum(weights)
        lse[g] = -0.5 * lo + np.log(total)
        for j in range(len(names)):
            mu = sum(w * v[j] for w, v in zip(weights, values)) / total
            mean[g, j] = mu
            std[g, j] = np.sqrt(sum(w * (v[j] - mu) ** 2 for w, v in zip(weights, values)) / total)
    return best, dict(zip(names, zip(mean.T, std.T))), lse


@pytest.fixture(scope="module")
def whole(problem):
    params, models, phot, unit = problem
    best, moments, chi2, scale = fit_slice(phot, models, params, unit, 0, len(params))
    return best, moments, brute_force(chi2, scale, params, unit), chi2


def test_whole_grid_matches_brute_force(problem, whole):
    params, models, phot, unit = problem
    best, moments, (ref_index, ref, ref_lse), chi2 = whole
    np.testing.assert_array_equal(best.index, ref_index)
    np.testing.assert_array_equal(best.extra, params[ref_index])
    direct = np.array([np.sum(phot.det_weight[g] * (phot.flux[g] - best.scale[g] * phot.factor[g]
                                                    * models[ref_index[g]]) ** 2) for g in range(phot.n_galaxies)])
    no_ul = phot.n_upper == 0
    np.testing.assert_allclose(best.chi2[no_ul], direct[no_ul], rtol=1e-10)
    assert chi2[2].min() > 1e4  # the log-sum-exp case is really exercised

    result = moments.finalise()
    assert set(result) == set(ref)
    for name, (mean, std) in result.items():
        ref_mean, ref_std = ref[name]
        spread = np.ptp(ref_mean) + np.abs(ref_mean).max()
        np.testing.assert_allclose(mean, ref_mean, rtol=1e-8, atol=1e-14 * spread, err_msg=name)
        np.testing.assert_allclose(std, ref_std, rtol=1e-8, atol=1e-14 * spread, err_msg=name)
    np.testing.assert_allclose(moments.log_likelihood_sum(), ref_lse, rtol=1e-12)
    np.testing.assert_allclose(moments.log_likelihood_sum(), logsumexp(-0.5 * chi2, axis=1), rtol=1e-12)


def test_collapsed_posterior_has_exact_spread(problem, whole):
    """At S/N 1e4 one model carries the weight: the std must follow the brute force down to ~0, not sit at the
    ~1e-8 x grid-range noise floor a one-pass sum of x^2 would leave."""
    best, moments, (_, ref, _), _ = whole
    params = problem[0]
    for j, name in enumerate(PARAM_NAMES):
        std = moments.finalise()[name][1][1]
        assert abs(std - ref[name][1][1]) <= 1e-12 * np.ptp(params[:, j])


SPLITS = {1: [0, 240], 2: [0, 97, 240], 3: [0, 1, 150, 240], 4: [0, 60, 61, 200, 240]}


@pytest.mark.parametrize("n_slices", [1, 2, 3, 4])
def test_slices_merge_to_the_whole_grid_in_any_order(problem, whole, n_slices):
    params, models, phot, unit = problem
    ref_best, ref_moments = whole[0], whole[1].finalise()
    cuts = SPLITS[n_slices]
    parts = [fit_slice(phot, models, params, unit, a, b)[:2] for a, b in zip(cuts[:-1], cuts[1:])]
    orders = list(itertools.permutations(range(n_slices)))
    for order in orders:
        best, moments = parts[order[0]]
        for i in order[1:]:
            best, moments = best.merge(parts[i][0]), moments.merge(parts[i][1])
        # A right-leaning tree as well: a . (b . (c . d)).
        rbest, rmom = parts[order[-1]]
        for i in reversed(order[:-1]):
            rbest, rmom = parts[i][0].merge(rbest), parts[i][1].merge(rmom)
        for b, m in ((best, moments), (rbest, rmom)):
            np.testing.assert_array_equal(b.index, ref_best.index)
            np.testing.assert_array_equal(b.extra, ref_best.extra)
            np.testing.assert_allclose(b.chi2, ref_best.chi2, rtol=1e-12)
            np.testing.assert_allclose(b.scale, ref_best.scale, rtol=1e-12)
            for name, (mean, std) in m.finalise().items():
                np.testing.assert_allclose(mean, ref_moments[name][0], rtol=1e-10, err_msg=name)
                np.testing.assert_allclose(std, ref_moments[name][1], rtol=1e-8, atol=1e-14, err_msg=name)


def test_ties_go_to_the_lowest_global_index(problem):
    params, models, phot, unit = problem
    twice = np.vstack([models, models])  # model i and i + 240 are identical
    n = len(models)
    low = BestFit.from_block(*best_in_block(phot, twice[:n], *chi2_block(phot, twice[:n])), 0)
    high = BestFit.from_block(*best_in_block(phot, twice[n:], *chi2_block(phot, twice[n:])), n)
    np.testing.assert_array_equal(low.chi2, high.chi2)
    for merged in (low.merge(high), high.merge(low)):
        np.testing.assert_array_equal(merged.index, low.index)
    whole_block = BestFit.from_block(*best_in_block(phot, twice, *chi2_block(phot, twice)), 0)
    np.testing.assert_array_equal(whole_block.index, low.index)
    empty = BestFit.empty(phot.n_galaxies)
    np.testing.assert_array_equal(empty.merge(high).index, high.index)
    np.testing.assert_array_equal(high.merge(empty).index, high.index)


def random_moments(rng, n_gal, names, empty_rows=(), undefined=False):
    q = len(names)
    m = Moments(tuple(names), rng.normal(0, 50, n_gal), rng.uniform(1, 5, n_gal), rng.uniform(0.5, 5, (n_gal, q)),
                rng.normal(0, 10, (n_gal, q)), rng.uniform(0, 3, (n_gal, q)))
    if undefined:  # a quantity never defined on this partial (e.g. log of a scale that was always 0)
        m.weight[0, 1], m.mean[0, 1], m.m2[0, 1] = 0.0, np.nan, 0.0
    for r in empty_rows:
        m.log_lmax[r], m.wsum[r], m.weight[r], m.mean[r], m.m2[r] = -np.inf, 0.0, 0.0, np.nan, 0.0
    return m


def assert_moments_close(a: Moments, b: Moments):
    """Equal to rounding. Absolute slack is 1e-12 of the quantity's magnitude (U_max spans 1e3..1e7, so a mean near
    1e3 carries ~1e-12 relative error); a std is exact to ~1e-11 (grid_reduce module docstring)."""
    for name in a.names:
        (mean_a, std_a), (mean_b, std_b) = a.finalise()[name], b.finalise()[name]
        size = np.nanmax(np.abs(mean_b))
        np.testing.assert_allclose(mean_a, mean_b, rtol=1e-12, atol=1e-12 * size, err_msg=name)
        np.testing.assert_allclose(std_a, std_b, rtol=1e-10, atol=1e-12 * size, err_msg=name)
    # chi2 itself is good to ~1e-10 absolute (grid_chi2 docstring), and so is ln sum L.
    np.testing.assert_allclose(a.log_likelihood_sum(), b.log_likelihood_sum(), rtol=1e-13, atol=1e-10)


def test_moment_merge_is_commutative_associative_with_identity():
    rng = np.random.default_rng(3)
    names = ("a", "b", "c")
    a = random_moments(rng, 6, names, undefined=True)
    b, c = (random_moments(rng, 6, names, empty_rows=er) for er in ((2,), (2, 4)))
    assert_moments_close(a.merge(b), b.merge(a))
    assert_moments_close(a.merge(b).merge(c), a.merge(b.merge(c)))
    ident = a.merge(Moments.empty(6, names))
    np.testing.assert_array_equal(ident.pack(), a.pack())
    both_empty = c.merge(Moments.empty(6, names))
    assert both_empty.log_lmax[2] == -np.inf and both_empty.wsum[2] == 0
    assert np.isnan(both_empty.finalise()["a"][0][2])
    # A quantity undefined on one side takes the other side's moments unchanged.
    merged = a.merge(b)
    alpha = np.exp(b.log_lmax[0] - merged.log_lmax[0])
    assert merged.mean[0, 1] == b.mean[0, 1]
    assert merged.m2[0, 1] == pytest.approx(alpha * b.m2[0, 1])


def test_pack_unpack_round_trip_and_record_layout():
    rng = np.random.default_rng(4)
    m = random_moments(rng, 5, ("x", "y"))
    buf = m.pack()
    assert buf.dtype == np.float64 and buf.shape == (5 * m.record_size,) and m.record_size == 2 + 3 * 2
    np.testing.assert_array_equal(Moments.unpack(buf, m.names).pack(), buf)
    assert buf[m.record_size] == m.log_lmax[1]  # one contiguous record per galaxy
    best = BestFit(rng.normal(size=5), np.arange(5) * 7, rng.normal(size=5), rng.normal(size=(5, 2)))
    b = best.pack()
    assert b.shape == (5 * 5,)
    back = BestFit.unpack(b, n_extra=2)
    np.testing.assert_array_equal(back.index, best.index)
    np.testing.assert_array_equal(back.extra, best.extra)


def test_mpi_style_reductions_on_packed_buffers(problem, whole):
    """What the engine does: Allgather packed partials and fold them in rank order, or reduce record-aligned chunks
    with the packed merge as a user op (MPI may hand the op any whole number of records)."""
    params, models, phot, unit = problem
    cuts = SPLITS[4]
    parts = [fit_slice(phot, models, params, unit, a, b)[:2] for a, b in zip(cuts[:-1], cuts[1:])]
    names = parts[0][1].names
    q = len(names)
    gathered_best = np.stack([p[0].pack() for p in parts])  # (ranks, G * record)
    gathered_mom = np.stack([p[1].pack() for p in parts])
    folded_best, folded_mom = gathered_best[0], gathered_mom[0]
    for r in range(1, len(parts)):
        folded_best = merge_best_packed(folded_best, gathered_best[r], n_extra=len(PARAM_NAMES))
        folded_mom = merge_moments_packed(folded_mom, gathered_mom[r], q)
    best = BestFit.unpack(folded_best, n_extra=len(PARAM_NAMES))
    np.testing.assert_array_equal(best.index, whole[0].index)
    assert_moments_close(Moments.unpack(folded_mom, names), whole[1])

    # User-op style: inout = op(in, inout) applied chunk by chunk, chunks of 5 records.
    record = 2 + 3 * q
    inout = gathered_mom[3].copy()
    for r in (2, 1, 0):
        for start in range(0, phot.n_galaxies, 5):
            sl = slice(start * record, min(phot.n_galaxies, start + 5) * record)
            inout[sl] = merge_moments_packed(gathered_mom[r][sl], inout[sl], q)
    assert_moments_close(Moments.unpack(inout, names), whole[1])


def test_log_quantity_ignores_non_positive_scales():
    rng = np.random.default_rng(5)
    chi2 = rng.uniform(0, 10, (3, 50))
    scale = rng.uniform(1, 2, (3, 50))
    scale[1, :20] = 0.0  # a clamped (s >= 0) scale has no logarithm
    params = rng.normal(size=(50, 1))
    m = Moments.from_block(chi2, params, ["p"], scale=scale,
                           scale_quantities=[ScaleQuantity("logs"), ScaleQuantity("s", log10=False)])
    res = m.finalise()
    w = np.exp(-0.5 * (chi2[1] - chi2[1].min()))
    keep = scale[1] > 0
    assert res["logs"][0][1] == pytest.approx(np.average(np.log10(scale[1, keep]), weights=w[keep]), rel=1e-12)
    assert res["s"][0][1] == pytest.approx(np.average(scale[1], weights=w), rel=1e-12)
    assert m.weight[1, 1] == pytest.approx(w[keep].sum()) and m.weight[1, 0] == pytest.approx(w.sum())


def test_argument_checks():
    with pytest.raises(ValueError, match="names"):
        Moments.from_block(np.zeros((2, 3)), np.zeros((3, 2)), ["a"])
    with pytest.raises(ValueError, match="scale block"):
        Moments.from_block(np.zeros((2, 3)), np.zeros((3, 1)), ["a"], scale_quantities=[ScaleQuantity("m")])
    with pytest.raises(ValueError, match="cannot merge"):
        Moments.empty(2, ["a"]).merge(Moments.empty(2, ["b"]))
    with pytest.raises(ValueError, match="cannot merge"):
        merge_best_packed(np.zeros(6), np.zeros(9))
