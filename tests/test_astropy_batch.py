"""The astropy adapter: batched fits of astropy models agree with astropy's own fitters, fit by fit."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from astropy import units as u
from astropy.modeling import custom_model, fitting, models

from hpcfit.cubefit.astropy_batch import BatchModel, NotBatchable
from hpcfit.cubefit.batched_lm import STATUS_CONVERGED, STATUS_FAILED

X = np.linspace(-5.0, 5.0, 45)


def astropy_fits(model, coords, y, weights=None, fitter_cls=fitting.TRFLSQFitter, **kwargs):
    """Parameters and param_cov of astropy's fitter, one row at a time (the reference)."""
    params, covs = [], []
    for i, row in enumerate(y):
        fitter = fitter_cls()
        inputs = [c if c.ndim == 1 else c[i] for c in coords]
        w = None if weights is None else weights[i]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fitted = fitter(model, *inputs, row, weights=w, **kwargs)
        params.append(fitted.parameters)
        covs.append(fitter.fit_info["param_cov"])
    return np.array(params), np.array(covs)


def noisy(model_fn, seed, noise):
    rng = np.random.default_rng(seed)
    clean = model_fn(rng)
    return clean + rng.normal(0, noise, clean.shape)


def test_gaussian1d_matches_trf_with_bounds_and_covariance():
    model = models.Gaussian1D(1.0, 0.0, 1.0)
    model.mean.bounds = (-1.0, 1.0)
    rng = np.random.default_rng(1)
    true = np.c_[rng.uniform(0.5, 3, 25), rng.uniform(-1.5, 1.5, 25), rng.uniform(0.3, 1.5, 25)]
    y = models.Gaussian1D.evaluate(X, true[:, :1], true[:, 1:2], true[:, 2:3]) + rng.normal(0, 0.2, (25, X.size))
    batch = BatchModel(model)
    assert batch.derivative_source == "fit_deriv"
    assert batch.free_names == ("amplitude", "mean", "stddev")
    assert batch.lower[2] > 0  # astropy's own stddev bound is kept
    fit = batch.fit((X,), y, absolute_weights=False)
    ref, ref_cov = astropy_fits(model, (X,), y)
    np.testing.assert_allclose(fit.params, ref, rtol=1e-7)
    assert np.all(fit.status == STATUS_CONVERGED)
    assert np.any(np.isclose(np.abs(fit.params[:, 1]), 1.0))  # some fits sit on the bound
    np.testing.assert_allclose(fit.result.covariance, ref_cov, rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(fit.uncertainties, np.sqrt(np.diagonal(ref_cov, axis1=1, axis2=2)), rtol=1e-6)


def test_weights_give_absolute_covariance():
    model = models.Gaussian1D(1.0, 0.0, 1.0)
    rng = np.random.default_rng(2)
    y = models.Gaussian1D.evaluate(X, 2.0, 0.3, 0.8) + rng.normal(0, 0.1, (6, X.size))
    weights = np.full_like(y, 10.0)
    weights[:, ::7] = 5.0
    fit = BatchModel(model).fit((X,), y, weights, absolute_weights=True)
    ref, ref_cov = astropy_fits(model, (X,), y, weights)
    np.testing.assert_allclose(fit.params, ref, rtol=1e-7)
    np.testing.assert_allclose(fit.result.covariance, ref_cov, rtol=1e-6, atol=1e-14)


def test_compound_two_gaussians_plus_constant():
    model = models.Gaussian1D(1.0, -1.5, 0.6) + models.Gaussian1D(1.0, 1.5, 0.6) + models.Const1D(0.0)

    def truth(rng):
        amp = rng.uniform(1, 2, (20, 2))
        cen = np.c_[rng.uniform(-2, -1, 20), rng.uniform(1, 2, 20)]
        return (amp[:, :1] * np.exp(-0.5 * (X - cen[:, :1]) ** 2 / 0.5**2)
                + amp[:, 1:] * np.exp(-0.5 * (X - cen[:, 1:]) ** 2 / 0.7**2) + 0.3)

    y = noisy(truth, 3, 0.05)
    batch = BatchModel(model)
    assert batch.derivative_source == "fit_deriv"  # assembled from the leaves' fit_deriv
    fit = batch.fit((X,), y, absolute_weights=False)
    ref, ref_cov = astropy_fits(model, (X,), y)
    np.testing.assert_allclose(fit.params, ref, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(fit.result.covariance, ref_cov, rtol=1e-5, atol=1e-12)
    assert set(fit.parameters()) == set(model.param_names)


def test_gaussian2d_on_image_planes():
    model = models.Gaussian2D(1.0, 6.0, 5.0, 2.0, 2.0, 0.0)
    yy, xx = np.mgrid[0:12, 0:11].astype(float)
    x, y = xx.ravel(), yy.ravel()
    rng = np.random.default_rng(4)
    planes = np.stack([
        models.Gaussian2D.evaluate(x, y, rng.uniform(1, 3), rng.uniform(4, 7), rng.uniform(4, 7),
                                   rng.uniform(1.5, 2.5), rng.uniform(1.0, 2.0), rng.uniform(-0.5, 0.5))
        for _ in range(12)
    ]) + rng.normal(0, 0.02, (12, x.size))
    fit = BatchModel(model).fit((x, y), planes, absolute_weights=False)
    ref = []
    for plane in planes:  # astropy fits 2-D models on (ny, nx) images
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ref.append(fitting.TRFLSQFitter()(model, xx, yy, plane.reshape(xx.shape)).parameters)
    np.testing.assert_allclose(fit.params, np.array(ref), rtol=1e-6, atol=1e-9)


def test_per_spectrum_coordinates():
    model = models.Gaussian1D(1.0, 0.0, 1.0)
    rng = np.random.default_rng(5)
    xs = X[None, :] * rng.uniform(0.8, 1.2, (10, 1)) + rng.uniform(-1, 1, (10, 1))
    y = models.Gaussian1D.evaluate(xs, 1.5, 0.2, 0.9) + rng.normal(0, 0.05, xs.shape)
    fit = BatchModel(model).fit((xs,), y)
    ref, _ = astropy_fits(model, (xs,), y)
    np.testing.assert_allclose(fit.params, ref, rtol=1e-7)


def test_fixed_parameters_stay_fixed_and_can_vary_per_item():
    model = models.Gaussian1D(1.0, 0.0, 0.7)
    model.stddev.fixed = True
    rng = np.random.default_rng(6)
    y = models.Gaussian1D.evaluate(X, 2.0, 0.4, 0.7) + rng.normal(0, 0.1, (8, X.size))
    batch = BatchModel(model)
    assert batch.free_names == ("amplitude", "mean")
    fit = batch.fit((X,), y)
    assert np.all(fit.params[:, 2] == 0.7)
    assert np.all(np.isnan(fit.uncertainties[:, 2])) and np.all(np.isfinite(fit.uncertainties[:, :2]))
    ref, _ = astropy_fits(model, (X,), y)
    np.testing.assert_allclose(fit.params, ref, rtol=1e-7)
    # per-item values of a fixed parameter (e.g. a map of initial values)
    widths = np.linspace(0.5, 1.0, 8)
    fit = batch.fit((X,), y, initial={"stddev": widths, "mean": np.full(8, 0.3)})
    np.testing.assert_array_equal(fit.parameters()["stddev"], widths)


def test_without_fit_deriv_uses_finite_differences_like_astropy():
    @custom_model
    def Bump(x, height=1.0, centre=0.0, width=1.0):  # noqa: N802 - astropy model naming
        return height / (1.0 + ((x - centre) / width) ** 2)

    model = Bump(1.0, 0.0, 1.0)
    rng = np.random.default_rng(7)
    y = Bump.evaluate(X, 2.0, 0.5, 1.2) + rng.normal(0, 0.05, (8, X.size))
    batch = BatchModel(model)
    assert batch.derivative_source.startswith("finite differences")
    fit = batch.fit((X,), y)
    ref, _ = astropy_fits(model, (X,), y)
    np.testing.assert_allclose(fit.params, ref, rtol=1e-6)
    forced = BatchModel(models.Gaussian1D(1.0, 0.0, 1.0)).fit((X,), y, estimate_jacobian=True)
    assert np.all(forced.status == STATUS_CONVERGED)


def test_refuses_what_it_cannot_reproduce():
    tied = models.Gaussian1D(1.0, 0.0, 1.0) + models.Gaussian1D(1.0, 2.0, 1.0)
    tied.stddev_1.tied = lambda m: m.stddev_0
    with pytest.raises(NotBatchable, match="tied"):
        BatchModel(tied)
    with pytest.raises(NotBatchable, match="unit"):
        BatchModel(models.Gaussian1D(1.0 * u.Jy, 0.0 * u.m, 1.0 * u.m))

    @custom_model
    def Scalar(x, a=1.0):  # evaluate that cannot take an array of parameter sets
        return np.full_like(x, float(a))

    with pytest.raises(NotBatchable, match="broadcast"):
        BatchModel(Scalar(2.0))


def test_failed_fits_are_nan_and_fit_info_maps_codes():
    model = models.Gaussian1D(1.0, 0.0, 1.0)
    y = models.Gaussian1D.evaluate(X, 1.0, 0.1, 1.0) + np.zeros((3, X.size))
    weights = np.ones_like(y)
    weights[1] = 0.0
    fit = BatchModel(model).fit((X,), y, weights)
    assert fit.status[1] == STATUS_FAILED and np.all(np.isnan(fit.params[1]))
    assert np.all(np.isnan([fit.fit_info(k)[1] for k in ("nfev", "status", "cost")]))
    assert np.all(np.isin(fit.fit_info("status")[[0, 2]], [1, 2, 3, 4]))
    assert np.all(np.isin(fit.fit_info("ierr", "LevMarLSQFitter")[[0, 2]], [1, 2, 3, 4]))


def test_l1448_cube_agrees_with_trf(shared_path):
    """The guide's model on real spectra (a spread-out subset): every fit agrees with TRFLSQFitter."""
    from astropy.io import fits
    from astropy.wcs import WCS

    with fits.open(shared_path("l1448_13co.fits")) as hdul:
        data = np.asarray(hdul[0].data, dtype=float)
        wcs = WCS(hdul[0].header)
    x = wcs.pixel_to_world(0, 0, np.arange(data.shape[0]))[1].to_value(u.m / u.s)
    spectra = data.reshape(data.shape[0], -1).T[::61]
    model = models.Gaussian1D(1.0, 4000.0, 500.0)
    model.mean.bounds = (3000.0, 6000.0)
    fit = BatchModel(model, coords=(x,)).fit((x,), spectra, absolute_weights=False)
    ref, _ = astropy_fits(model, (x,), spectra)
    rel = np.abs(fit.params - ref) / np.abs(ref)
    assert np.all(rel < 1e-3)


@pytest.mark.parametrize("fitter_name", ["LevMarLSQFitter", "LMLSQFitter"])
def test_levenberg_marquardt_fitters_with_clipped_bounds(fitter_name):
    """astropy's LM fitters clip bounded parameters inside the objective (and LevMar in its result too)."""
    model = models.Gaussian1D(1.0, 0.0, 1.0)
    model.mean.bounds = (-0.5, 0.5)
    rng = np.random.default_rng(8)
    true = np.c_[rng.uniform(0.5, 3, 20), rng.uniform(-1.5, 1.5, 20), rng.uniform(0.3, 1.5, 20)]
    y = models.Gaussian1D.evaluate(X, true[:, :1], true[:, 1:2], true[:, 2:3]) + rng.normal(0, 0.2, (20, X.size))
    fit = BatchModel(model).fit((X,), y, fitter=fitter_name, absolute_weights=False)
    ref, ref_cov = astropy_fits(model, (X,), y, fitter_cls=getattr(fitting, fitter_name))
    np.testing.assert_allclose(fit.params, ref, rtol=1e-6, atol=1e-12)
    beyond = np.abs(fit.result.params[:, 1]) > 0.5  # the solver's own (unclipped) values
    assert beyond.any()
    returned_mean = fit.params[beyond, 1]
    if fitter_name == "LevMarLSQFitter":
        assert np.all(np.abs(returned_mean) == 0.5)
    else:
        assert np.all(np.abs(returned_mean) > 0.5)
    ok = fit.status == STATUS_CONVERGED
    # leastsq's covariance comes from the Jacobian of MINPACK's last outer iteration, ours from the result
    rtol = 1e-2 if fitter_name == "LevMarLSQFitter" else 1e-5
    np.testing.assert_allclose(fit.result.covariance[ok & ~beyond], ref_cov[ok & ~beyond], rtol=rtol, atol=1e-9)
