"""hpcfit.parallel_fit: astropy's parallel_fit_dask keywords and answers, in this process and under mpiexec."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from astropy import units as u
from astropy.io import fits
from astropy.modeling import fitting, models
from astropy.stats import sigma_clip
from astropy.wcs import WCS

from h5compare import assert_ran_with
from launch import REPO, find_mpiexec

import cubefit_user_models

import hpcfit
from hpcfit.cubefit.synthetic import make_cube


@pytest.fixture(scope="module")
def cube():
    """A small synthetic cube (30 channels, 6 x 7 spectra, two blank spectra, no scattered NaN) and its WCS."""
    data, truth, header = make_cube((30, 6, 7), n_blank=2, nan_fraction=0.0, seed=3)
    return data, WCS(header), truth


def guide_model() -> models.Gaussian1D:
    model = models.Gaussian1D(amplitude=1 * u.one, mean=4000 * u.m / u.s, stddev=500 * u.m / u.s)
    model.mean.bounds = (3000, 6000) * u.km / u.s  # as in astropy's guide (km/s: effectively unbounded in m/s)
    return model


def assert_same_maps(ours, theirs, *, rtol: float = 1e-6) -> None:
    """Same parameter names and units; equal values (within rtol) where both fits converged; NaN at the same
    places otherwise."""
    assert ours.param_names == theirs.param_names
    for name in ours.param_names:
        a, b = getattr(ours, name), getattr(theirs, name)
        assert a.unit == b.unit, name
        assert a.value.shape == b.value.shape, name
        both = np.isfinite(a.value) & np.isfinite(b.value)
        assert both.sum() >= 0.9 * a.value.size, name
        np.testing.assert_allclose(a.value[both], b.value[both], rtol=rtol, err_msg=name)


def test_import_hpcfit_imports_neither_numpy_nor_astropy():
    code = ("import sys, hpcfit; heavy = [m for m in ('numpy', 'astropy', 'h5py', 'scipy') if m in sys.modules]; "
            "assert not heavy, heavy; f = hpcfit.parallel_fit; assert callable(f); "
            "assert 'numpy' in sys.modules; print('ok')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr
    assert "parallel_fit" in dir(hpcfit)
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        hpcfit.nothing  # noqa: B018


def test_same_maps_as_parallel_fit_dask(cube):
    data, wcs, truth = cube
    kwargs = dict(data=data, world=wcs, fitting_axes=0, data_unit=u.one)
    ours = hpcfit.parallel_fit(model=guide_model(), fitter=fitting.TRFLSQFitter(), **kwargs)
    theirs = fitting.parallel_fit_dask(model=guide_model(), fitter=fitting.TRFLSQFitter(), scheduler="synchronous",
                                       **kwargs)
    assert_same_maps(ours, theirs)
    assert ours.mean.unit == u.m / u.s and ours.amplitude.unit == u.one
    assert ours.mean.shape == (6, 7)
    # blank spectra fail in both: NaN
    np.testing.assert_array_equal(np.isnan(ours.mean.value), truth["blank"])
    good = ~truth["blank"]
    np.testing.assert_allclose(ours.mean.value[good], truth["mean"][good], atol=60)


def test_quantity_data_tuple_world_and_fit_info_as_astropy(cube):
    data, wcs, _ = cube
    velocity = wcs.spectral.pixel_to_world_values(np.arange(data.shape[0])) * u.m / u.s
    model = models.Gaussian1D(amplitude=1 * u.K, mean=4.0 * u.km / u.s, stddev=0.5 * u.km / u.s)
    ours_fitter, theirs_fitter = fitting.TRFLSQFitter(), fitting.TRFLSQFitter()
    ours = hpcfit.parallel_fit(model=model, fitter=ours_fitter, data=data * u.K, world=(velocity,), fitting_axes=0,
                               fit_info=True)
    theirs = fitting.parallel_fit_dask(model=model, fitter=theirs_fitter, data=data * u.K, world=(velocity,),
                                       fitting_axes=0, scheduler="synchronous", fit_info=True)
    assert_same_maps(ours, theirs)
    assert ours.mean.unit == u.km / u.s and ours.amplitude.unit == u.K
    info, ref = ours_fitter.fit_info, theirs_fitter.fit_info
    assert type(info).__name__ == "FitInfoArrayContainer" and info.shape == (6, 7)
    assert {"message", "param_cov", "nfev", "status", "cost"} <= set(info.properties)
    k = tuple(int(i) for i in np.argwhere(np.isfinite(ours.mean.value))[5])
    assert info[k]["nfev"] == ref[k]["nfev"] and info[k].status == ref[k].status
    assert info[k].message == ref[k].message
    np.testing.assert_allclose(info[k].param_cov, ref[k].param_cov, rtol=1e-5)
    cost = info.get_property_as_array("cost")
    for index in np.argwhere(np.isfinite(ours.mean.value)):
        # (astropy's own get_property_as_array fails here: it leaves a 0 for blank spectra)
        np.testing.assert_allclose(cost[tuple(index)], ref[tuple(index)].cost, rtol=1e-6)
    failed = tuple(int(i) for i in np.argwhere(np.isnan(ours.mean.value))[0])
    assert info[failed] is None  # a failed fit has no fit_info (astropy: None for a fit that raised)


def test_fit_info_subset_and_untouched_without(cube):
    data, wcs, _ = cube
    fitter = fitting.TRFLSQFitter()
    before = fitter.fit_info
    hpcfit.parallel_fit(model=guide_model(), fitter=fitter, data=data, world=wcs, fitting_axes=0, data_unit=u.one)
    assert fitter.fit_info is before
    hpcfit.parallel_fit(model=guide_model(), fitter=fitter, data=data, world=wcs, fitting_axes=0, data_unit=u.one,
                        fit_info=("nfev", "message"))
    assert fitter.fit_info.properties == ("message", "nfev")
    assert fitter.fit_info[2, 2].message.endswith("satisfied.")
    assert isinstance(fitter.fit_info[2, 2].nfev, int)
    with pytest.raises(AttributeError, match="has no attribute 'jac'"):
        hpcfit.parallel_fit(model=guide_model(), fitter=fitter, data=data, world=wcs, fitting_axes=0,
                            data_unit=u.one, fit_info=("jac",))


def test_nddata_mask_weights_and_nd_world(cube):
    from astropy.nddata import NDData, StdDevUncertainty

    data, wcs, _ = cube
    sigma = np.full(data.shape, 0.05)
    mask = np.zeros(data.shape, dtype=bool)
    mask[:5] = True  # the first channels are masked everywhere
    nd = NDData(data, wcs=wcs, uncertainty=StdDevUncertainty(sigma), mask=mask, unit=u.K)
    model = models.Gaussian1D(amplitude=1 * u.K, mean=4000 * u.m / u.s, stddev=500 * u.m / u.s)
    ours = hpcfit.parallel_fit(model=model, fitter=fitting.TRFLSQFitter(), data=nd, fitting_axes=0)
    theirs = fitting.parallel_fit_dask(model=model, fitter=fitting.TRFLSQFitter(), data=nd, fitting_axes=0,
                                       scheduler="synchronous")
    assert_same_maps(ours, theirs)
    # the same coordinates given as an N-d array broadcast over the map fit to the same answer
    velocity = wcs.spectral.pixel_to_world_values(np.arange(data.shape[0]))
    nd_world = hpcfit.parallel_fit(model=model, fitter=fitting.TRFLSQFitter(), data=data * u.K,
                                   world=(velocity[:, None, None] * u.m / u.s,), fitting_axes=0,
                                   weights=1 / sigma, mask=mask)
    assert_same_maps(nd_world, ours, rtol=1e-9)


def test_diagnostics_and_callable(tmp_path, cube):
    data, wcs, truth = cube
    seen = []

    def callback(folder, world, values, weights, model, kwargs):
        seen.append((folder.name, model))
        (folder / "mine.txt").write_text("called")

    hpcfit.parallel_fit(model=guide_model(), fitter=fitting.TRFLSQFitter(), data=data, world=wcs, fitting_axes=0,
                        data_unit=u.one, diagnostics="error", diagnostics_path=tmp_path / "diag",
                        diagnostics_callable=callback)
    blank = sorted(f"{i}_{j}" for i, j in zip(*np.nonzero(truth["blank"])))
    assert sorted(name for name, _ in seen) == blank
    assert all(model is None for _, model in seen)
    for name in blank:
        assert (tmp_path / "diag" / name / "error.log").exists()
        assert (tmp_path / "diag" / name / "mine.txt").read_text() == "called"


def test_clear_errors(cube):
    data, wcs, _ = cube
    ok = dict(model=guide_model(), fitter=fitting.TRFLSQFitter(), data=data, world=wcs, fitting_axes=0,
              data_unit=u.one)
    class HomeMadeFitter(fitting.TRFLSQFitter):
        """A subclass may change anything: hpcfit cannot reproduce it."""

    with pytest.raises(TypeError, match="HomeMadeFitter is not one of .*allowed: TRFLSQFitter"):
        hpcfit.parallel_fit(**{**ok, "fitter": HomeMadeFitter()})
    with pytest.raises(TypeError, match="the fitter FittingWithOutlierRemoval wraps: HomeMadeFitter"):
        hpcfit.parallel_fit(**{**ok, "fitter": fitting.FittingWithOutlierRemoval(HomeMadeFitter(), sigma_clip)})
    with pytest.raises(TypeError, match="outlier function 'median_clip' is not supported"):
        def median_clip(values, **kwargs):
            return values
        hpcfit.parallel_fit(**{**ok, "fitter": fitting.FittingWithOutlierRemoval(fitting.TRFLSQFitter(),
                                                                                 median_clip)})
    with pytest.raises(TypeError, match="maxiters for sigma_clip not supported"):
        hpcfit.parallel_fit(**{**ok, "fitter": fitting.FittingWithOutlierRemoval(fitting.TRFLSQFitter(), sigma_clip,
                                                                                 maxiters=2)})
    with pytest.raises(ValueError, match="shape \\(3,\\), which do not broadcast .*\\(6, 7\\)"):
        hpcfit.parallel_fit(**{**ok, "model": models.Gaussian1D(amplitude=[1.0, 2.0, 3.0], mean=4000, stddev=500)})
    with pytest.raises(ValueError, match="'amplitude': .*non-finite"):
        hpcfit.parallel_fit(**{**ok, "model": models.Gaussian1D(amplitude=np.full((6, 7), np.nan), mean=4000,
                                                                stddev=500)})
    with pytest.raises(TypeError, match="fitter_kwargs: weird not supported"):
        hpcfit.parallel_fit(**ok, fitter_kwargs={"weird": 1})
    with pytest.raises(ValueError, match="diagnostics_path should be set"):
        hpcfit.parallel_fit(**ok, diagnostics="error")
    with pytest.raises(ValueError, match="out of range"):
        hpcfit.parallel_fit(**{**ok, "fitting_axes": 3})
    with pytest.raises(ValueError, match="ranks must be"):
        hpcfit.parallel_fit(**ok, ranks=0)
    with pytest.raises(ValueError, match="diagnostics_callable runs in this process"):
        hpcfit.parallel_fit(**ok, ranks=2, diagnostics_callable=print)
    with pytest.raises(ValueError, match="only kept with ranks=None"):
        hpcfit.parallel_fit(**ok, ranks=2, fit_info=("param_cov",))
    with pytest.raises(ValueError, match="must contain '{n}'"):
        hpcfit.parallel_fit(**ok, ranks=2, launcher=["mpiexec", "-n", "2"])


MPIEXEC = find_mpiexec()
needs_mpi = pytest.mark.skipif(MPIEXEC is None, reason="no mpiexec on PATH (set HPCFIT_MPIEXEC)")


@needs_mpi
def test_ranks_2_gives_the_same_maps_as_in_process(tmp_path, cube):
    data, wcs, _ = cube
    kwargs = dict(data=data, world=wcs, fitting_axes=0, data_unit=u.one, chunk_n_max=10)
    here_fitter, mpi_fitter = fitting.TRFLSQFitter(), fitting.TRFLSQFitter()
    here = hpcfit.parallel_fit(model=guide_model(), fitter=here_fitter, fit_info=("nfev", "cost"), **kwargs)
    there = hpcfit.parallel_fit(model=guide_model(), fitter=mpi_fitter, fit_info=("nfev", "cost"), ranks=2,
                                launcher=[MPIEXEC, "-n", "{n}"], workdir=tmp_path / "run", **kwargs)
    assert_ran_with(tmp_path / "run" / "parallel_fit.h5", n_ranks=2, mode=None)
    from hpcfit.cubefit.result import CubefitResult

    opened = hpcfit.open(tmp_path / "run" / "parallel_fit.h5")
    assert type(opened) is CubefitResult
    np.testing.assert_array_equal(opened.maps["mean"].value, there.mean.value)
    for name in here.param_names:
        assert getattr(here, name).unit == getattr(there, name).unit
        np.testing.assert_array_equal(getattr(here, name).value, getattr(there, name).value)
    for key in ("nfev", "cost"):
        a = here_fitter.fit_info.get_property_as_array(key)
        b = mpi_fitter.fit_info.get_property_as_array(key)
        np.testing.assert_array_equal(a, b)


@needs_mpi
def test_ranks_2_compound_model_from_a_path(tmp_path):
    """A compound model (two lines and a constant, one bound) written into the config of a ranks=2 run; the data
    given as a FITS path (the file's own WCS and BUNIT)."""
    data, truth, header = make_cube((30, 4, 5), n_blank=1, nan_fraction=0.0, seed=5)
    path = tmp_path / "cube.fits"
    fits.PrimaryHDU(data, header=header).writeto(path)
    model = (models.Gaussian1D(amplitude=1 * u.K, mean=3800 * u.m / u.s, stddev=300 * u.m / u.s)
             + models.Gaussian1D(amplitude=0.1 * u.K, mean=4400 * u.m / u.s, stddev=200 * u.m / u.s)
             + models.Const1D(amplitude=0 * u.K))
    model.mean_1.bounds = (4000 * u.m / u.s, 5000 * u.m / u.s)
    model.amplitude_2.fixed = True
    here = hpcfit.parallel_fit(model=model, fitter=fitting.TRFLSQFitter(), data=str(path), fitting_axes=0)
    there = hpcfit.parallel_fit(model=model, fitter=fitting.TRFLSQFitter(), data=path, fitting_axes=0, ranks=2,
                                launcher=f"{MPIEXEC} -n {{n}}")
    assert here.param_names == there.param_names == model.param_names
    for name in here.param_names:
        assert getattr(here, name).unit == getattr(there, name).unit
        assert getattr(here, name).unit == (u.K if "amplitude" in name else u.m / u.s)
        np.testing.assert_array_equal(getattr(here, name).value, getattr(there, name).value)
    assert np.all(here.amplitude_2.value[~truth["blank"]] == 0)


@needs_mpi
def test_ranks_failure_is_reported(tmp_path, cube):
    data, wcs, _ = cube
    with pytest.raises(RuntimeError, match="failed with exit code"):
        hpcfit.parallel_fit(model=guide_model(), fitter=fitting.TRFLSQFitter(), data=data, world=wcs,
                            fitting_axes=0, data_unit=u.one, ranks=2,
                            launcher=[sys.executable, "-c", "import sys; sys.exit(3)", "{n}"])


def test_l1448_guide_matches_parallel_fit_dask(shared_path):
    """The guide's code on a sub-cube of L1448, parallel_fit_dask replaced by hpcfit.parallel_fit."""
    filename = shared_path("l1448_13co.fits")
    with fits.open(filename) as hdulist:
        data = hdulist[0].data
        wcs = WCS(hdulist[0].header)
    data = data[:, 25:75, 35:85][:, :12, :12]
    wcs = wcs[:, 25:75, 35:85][:, :12, :12]
    model = models.Gaussian1D(amplitude=1 * u.one, mean=4000 * u.m / u.s, stddev=500 * u.m / u.s)
    fitter = fitting.TRFLSQFitter()
    model.mean.bounds = (3000, 6000) * u.km / u.s
    model_fit = hpcfit.parallel_fit(model=model, fitter=fitter, data=data, world=wcs, fitting_axes=0,
                                    data_unit=u.one)
    reference = fitting.parallel_fit_dask(model=model, fitter=fitter, data=data, world=wcs, fitting_axes=0,
                                          data_unit=u.one, scheduler="synchronous")
    assert_same_maps(model_fit, reference)
    assert model_fit.mean.unit == u.m / u.s and model_fit.mean.shape == (12, 12)


def test_mask_only_covariance_as_astropy(cube):
    """astropy turns a mask into 0/1 weights: the covariance is then not rescaled by the reduced chi-square."""
    data, wcs, _ = cube
    mask = np.zeros(data.shape, dtype=bool)
    mask[-4:] = True
    ours_fitter, ref_fitter = fitting.TRFLSQFitter(), fitting.TRFLSQFitter()
    kwargs = dict(data=data, world=wcs, fitting_axes=0, data_unit=u.one, mask=mask, fit_info=("param_cov",))
    hpcfit.parallel_fit(model=guide_model(), fitter=ours_fitter, **kwargs)
    fitting.parallel_fit_dask(model=guide_model(), fitter=ref_fitter, scheduler="synchronous", **kwargs)
    compared = 0
    for k in [(0, 1), (2, 3), (5, 6)]:
        if ours_fitter.fit_info[k] is not None:
            # (astropy's FitInfoSubset breaks its own container's indexing: read its array directly)
            reference = ref_fitter.fit_info._fit_info_array[k]["param_cov"]
            np.testing.assert_allclose(ours_fitter.fit_info[k].param_cov, reference, rtol=1e-5)
            compared += 1
    assert compared >= 2


RANKS = [None, pytest.param(2, marks=needs_mpi)]


def _ranks_kwargs(ranks, tmp_path):
    return {} if ranks is None else dict(ranks=ranks, launcher=[MPIEXEC, "-n", "{n}"], workdir=tmp_path / "run")


@pytest.mark.parametrize("ranks", RANKS)
def test_linear_fitter_as_parallel_fit_dask(tmp_path, cube, ranks):
    data, _, truth = cube
    model = models.Polynomial1D(degree=2, c0=0.1)
    ours_fitter = fitting.LinearLSQFitter()
    ours = hpcfit.parallel_fit(model=model, fitter=ours_fitter, data=data, fitting_axes=0, fit_info=("rank",),
                               **_ranks_kwargs(ranks, tmp_path))
    theirs = fitting.parallel_fit_dask(model=model, fitter=fitting.LinearLSQFitter(), data=data, fitting_axes=0,
                                       scheduler="synchronous")
    assert_same_maps(ours, theirs, rtol=1e-9)
    np.testing.assert_array_equal(np.isnan(ours.c0.value), truth["blank"])
    rank = ours_fitter.fit_info.get_property_as_array("rank")
    assert np.all(rank[~truth["blank"]] == 3)
    if ranks is None:  # what astropy's LinearLSQFitter reports: a rank, no message, no param_cov
        fitter = fitting.LinearLSQFitter()
        hpcfit.parallel_fit(model=model, fitter=fitter, data=data, fitting_axes=0, fit_info=True)
        assert fitter.fit_info.properties == ("rank",)
        assert isinstance(fitter.fit_info[0, 0].rank, int)
        with pytest.raises(AttributeError, match="no attribute 'message'"):
            hpcfit.parallel_fit(model=model, fitter=fitter, data=data, fitting_axes=0, fit_info=("message",))


@pytest.mark.parametrize("ranks", RANKS)
def test_outlier_removal_as_astropy_per_spectrum(tmp_path, ranks):
    """FittingWithOutlierRemoval(LinearLSQFitter, sigma_clip): the line of each spectrum is clipped away from the
    baseline fit, as astropy's fitter does spectrum by spectrum (parallel_fit_dask itself cannot take it: the
    fitter returns a tuple)."""
    data, truth, _ = make_cube((30, 3, 4), n_blank=1, nan_fraction=0.0, seed=7)
    data = data + 0.02 * np.arange(30)[:, None, None]  # a sloped baseline under each line
    model = models.Polynomial1D(degree=1)
    fitter = fitting.FittingWithOutlierRemoval(fitting.LinearLSQFitter(), sigma_clip, niter=4, sigma=2.0)
    ours = hpcfit.parallel_fit(model=model, fitter=fitter, data=data, fitting_axes=0, fit_info=("niter",),
                               **_ranks_kwargs(ranks, tmp_path))
    x = np.arange(30.0)
    niter = fitter.fit_info.get_property_as_array("niter")
    for i, j in np.ndindex(3, 4):
        if truth["blank"][i, j]:
            assert np.isnan(ours.c0.value[i, j])
            continue
        reference = fitting.FittingWithOutlierRemoval(fitting.LinearLSQFitter(), sigma_clip, niter=4, sigma=2.0)
        fitted, clipped = reference(model, x, data[:, i, j])
        assert clipped.sum() > 0  # the line was clipped: not the plain linear fit
        np.testing.assert_allclose([ours.c0.value[i, j], ours.c1.value[i, j]], fitted.parameters, rtol=1e-9)
        assert niter[i, j] == reference.fit_info["niter"]
        if ranks is None:
            assert isinstance(fitter.fit_info[i, j].niter, int)
    if ranks is not None:
        import yaml

        config = yaml.safe_load((tmp_path / "run" / "parallel_fit.yaml").read_text())
        assert config["cubefit"]["fitter"] == {"class": "FittingWithOutlierRemoval", "fitter": "LinearLSQFitter",
                                               "outlier": "sigma_clip", "niter": 4, "sigma": 2.0,
                                               **{k: config["cubefit"]["fitter"][k]
                                                  for k in ("maxiter", "acc", "epsilon", "estimate_jacobian")}}


def _two_line_cube():
    """Spectra with two equal lines (channels 10 and 30): a one-line fit ends at the line it starts nearest."""
    x = np.arange(40.0)
    rng = np.random.default_rng(11)
    line = np.exp(-0.5 * ((x - 10) / 1.5) ** 2) + np.exp(-0.5 * ((x - 30) / 1.5) ** 2)
    data = line[:, None, None] + 0.01 * rng.standard_normal((40, 3, 4))
    start = np.where(np.arange(12).reshape(3, 4) % 2 == 0, 11.0, 29.0)  # half start near each line
    amplitude = np.linspace(0.5, 1.6, 12).reshape(3, 4)
    return data, start, amplitude


@pytest.mark.parametrize("ranks", RANKS)
def test_array_initial_values(tmp_path, ranks):
    data, start, amplitude = _two_line_cube()
    model = models.Gaussian1D(amplitude=amplitude, mean=start, stddev=2.0)
    model.amplitude.fixed = True
    ours = hpcfit.parallel_fit(model=model, fitter=fitting.TRFLSQFitter(), data=data, fitting_axes=0,
                               **_ranks_kwargs(ranks, tmp_path))
    np.testing.assert_array_equal(ours.amplitude.value, amplitude)  # fixed per pixel: back exactly
    near = np.where(start < 20, 10.0, 30.0)  # free: each fit went to the line it started by
    np.testing.assert_allclose(ours.mean.value, near, atol=0.5)
    theirs = fitting.parallel_fit_dask(model=model, fitter=fitting.TRFLSQFitter(), data=data, fitting_axes=0,
                                       scheduler="synchronous")
    assert_same_maps(ours, theirs, rtol=1e-6)
    if ranks is not None:
        import yaml

        config = yaml.safe_load((tmp_path / "run" / "parallel_fit.yaml").read_text())
        value = config["cubefit"]["model"]["parameters"]["mean"]["value"]
        assert value.endswith("initial_mean.npy")
        np.testing.assert_array_equal(np.load(value), start)


@pytest.mark.parametrize("ranks", RANKS)
@pytest.mark.parametrize("name", ["Lorentzian", "SkewGaussian1D"])
def test_user_model_classes(tmp_path, cube, name, ranks):
    """A user's class (custom_model, or a Fittable1DModel subclass) from an importable module: each rank imports
    it as cubefit_user_models:<Name>; the maps are those of parallel_fit_dask (the skewed line, weakly constrained
    here, through astropy's fitter per spectrum: the batched TRF may settle elsewhere in its flat valley)."""
    data, _, truth = cube
    data = data[:, :3, :4]
    cls = getattr(cubefit_user_models, name)
    model = cls(amplitude=1.0, x0=14.0, fwhm=5.0) if name == "Lorentzian" else cls(amplitude=1.0, mean=14.0,
                                                                                      stddev=2.0)
    solver = "batched" if name == "Lorentzian" else "astropy"
    ours = hpcfit.parallel_fit(model=model, fitter=fitting.TRFLSQFitter(), data=data, fitting_axes=0, solver=solver,
                               **_ranks_kwargs(ranks, tmp_path))
    theirs = fitting.parallel_fit_dask(model=model, fitter=fitting.TRFLSQFitter(), data=data, fitting_axes=0,
                                       scheduler="synchronous")
    assert_same_maps(ours, theirs, rtol=1e-5)
    if ranks is not None:
        import yaml

        config = yaml.safe_load((tmp_path / "run" / "parallel_fit.yaml").read_text())
        assert config["cubefit"]["model"]["class"] == f"cubefit_user_models:{name}"


def test_model_class_from_main_is_refused_for_ranks(cube):
    data, _, _ = cube
    main_class = type("MainLine", (models.Gaussian1D,), {"__module__": "__main__"})
    local = type("LocalLine", (models.Gaussian1D,), {"__module__": __name__})  # not an attribute of its module
    kwargs = dict(fitter=fitting.TRFLSQFitter(), data=data[:, :2, :2], fitting_axes=0)
    here = hpcfit.parallel_fit(model=main_class(amplitude=1.0, mean=14.0, stddev=2.0), **kwargs)
    assert np.isfinite(here.mean.value).any()
    with pytest.raises(ValueError, match="MainLine is defined in '__main__'.*importable on every rank"):
        hpcfit.parallel_fit(model=main_class(amplitude=1.0, mean=14.0, stddev=2.0), ranks=2,
                            launcher=["false", "{n}"], **kwargs)
    with pytest.raises(ValueError, match="LocalLine is not reachable .*importable on every rank"):
        hpcfit.parallel_fit(model=local(amplitude=1.0, mean=14.0, stddev=2.0), ranks=2,
                            launcher=["false", "{n}"], **kwargs)
