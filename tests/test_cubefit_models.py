"""cubefit with any astropy model and fitter: user model classes and instances named 'package.module:Name'
(fitted under mpiexec), maps of per-fit initial values (.npy), and the fitters outside the least-squares family
(LinearLSQFitter, FittingWithOutlierRemoval) run per spectrum through astropy, checked against astropy called
by hand on each spectrum."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest

import cubefit_user_models as user
from hpcfit.cli import main
from launch import REPO, hpcfit

TESTS = Path(__file__).resolve().parent
N_CHAN, NY, NX = 41, 5, 6
X = np.arange(N_CHAN, dtype=float)


def truth_maps() -> dict[str, np.ndarray]:
    yy, xx = np.mgrid[0:NY, 0:NX]
    return {"amplitude": 2.0 + 0.3 * xx, "x0": 17.0 + 1.5 * yy + 0.4 * xx, "fwhm": 4.0 + 0.5 * yy}


def write_cube(directory: Path, shape_fn, noise: float = 0.01, seed: int = 3) -> np.ndarray:
    """A (N_CHAN, NY, NX) cube of one line per spectrum, saved as cube.npy; returns it."""
    rng = np.random.default_rng(seed)
    cube = np.stack([[shape_fn(X, iy, ix) for ix in range(NX)] for iy in range(NY)]).transpose(2, 0, 1)
    cube = cube + rng.normal(0.0, noise, cube.shape)
    np.save(directory / "cube.npy", cube)
    return cube


CONFIG = """\
job: cubefit
output: out.h5
cubefit:
  data: {{path: cube.npy}}
  fitting_axes: 0
  world: pixel
  model:
{model}
  fitter: {fitter}
  solver: {solver}
  chunk_n_max: 7
run: {{progress: none}}
"""


def write_config(directory: Path, model: str, fitter: str = "TRFLSQFitter", solver: str = "batched",
                 name: str = "cfg.yaml") -> Path:
    path = directory / name
    path.write_text(CONFIG.format(model=model, fitter=fitter, solver=solver))
    return path


def read(output: Path, names) -> dict[str, np.ndarray]:
    with h5py.File(output) as h5:
        out = {n: h5[f"parameters/{n}"][()] for n in names}
        out["status"] = h5["status"][()]
        out["attrs"] = dict(h5.attrs)
    return out


def user_env() -> dict[str, str]:
    return {"PYTHONPATH": os.pathsep.join([str(REPO), str(TESTS)])}


# ---------------------------------------------------------------------------------------------------------
# User models


@pytest.mark.mpi
def test_custom_model_lorentzian_recovered_under_mpi(tmp_path):
    truth = truth_maps()
    write_cube(tmp_path, lambda x, iy, ix: user.lorentzian(x, *(truth[k][iy, ix] for k in ("amplitude", "x0", "fwhm"))))
    write_config(tmp_path, """\
    class: cubefit_user_models:Lorentzian
    parameters:
      amplitude: 1.0
      x0: {value: 20, bounds: [5, 35]}
      fwhm: {value: 3, bounds: [0.5, 20]}""")
    result = hpcfit(["run", "cfg.yaml"], n=2, cwd=tmp_path, env=user_env())
    assert result.returncode == 0, result.output
    got = read(tmp_path / "out.h5", ("amplitude", "x0", "fwhm"))
    assert np.all(got["status"] == 0)
    for name in ("amplitude", "x0", "fwhm"):
        np.testing.assert_allclose(got[name], truth[name], rtol=0.02)
    assert got["attrs"]["cubefit_solver"] == "batched" and got["attrs"]["n_ranks"] == 2


def test_fittable_model_subclass_matches_astropy_per_spectrum(tmp_path, monkeypatch):
    """A Fittable1DModel subclass with fit_deriv: the batched solver (analytic derivatives) lands where
    astropy's TRFLSQFitter does on every spectrum."""
    from astropy.modeling.fitting import TRFLSQFitter

    monkeypatch.syspath_prepend(str(TESTS))
    cube = write_cube(tmp_path, lambda x, iy, ix: user.SkewGaussian1D.evaluate(x, 2.0 + 0.1 * ix, 18.0 + iy, 3.0, 0.1 * (ix - 2)),
                      noise=0.05)
    write_config(tmp_path, """\
    class: cubefit_user_models:SkewGaussian1D
    parameters:
      amplitude: 1.0
      mean: {value: 20, bounds: [5, 35]}
      stddev: 4
      skew: 0""")
    assert main(["run", str(tmp_path / "cfg.yaml"), "-q"]) == 0
    names = ("amplitude", "mean", "stddev", "skew")
    got = read(tmp_path / "out.h5", names)
    from hpcfit.cubefit.astropy_batch import BatchModel

    assert BatchModel(user.SkewGaussian1D(1.0, 20.0, 4.0, 0.0)).derivative_source == "fit_deriv"
    model = user.SkewGaussian1D(1.0, 20.0, 4.0, 0.0, bounds={"mean": (5, 35)})
    fitter = TRFLSQFitter()
    for iy in range(NY):
        for ix in range(NX):
            ref = fitter(model, X, cube[:, iy, ix]).parameters
            np.testing.assert_allclose([got[n][iy, ix] for n in names], ref, rtol=1e-5, atol=1e-8)


def test_model_instance_by_name_uses_its_values_and_bounds(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(TESTS))
    from astropy.modeling.models import Gaussian1D

    write_cube(tmp_path, lambda x, iy, ix: Gaussian1D.evaluate(x, 3.0, 19.0 + 0.5 * ix, 2.5))
    write_config(tmp_path, "    class: cubefit_user_models:WIDE_GAUSSIAN")
    assert main(["run", str(tmp_path / "cfg.yaml"), "-q"]) == 0
    got = read(tmp_path / "out.h5", ("amplitude", "mean", "stddev"))
    np.testing.assert_allclose(got["mean"], 19.0 + 0.5 * np.arange(NX)[None, :] + 0 * got["mean"], atol=0.02)
    assert "stddev=4.0" in got["attrs"]["cubefit_model"].replace(" ", "") or "4." in got["attrs"]["cubefit_model"]
    assert user.WIDE_GAUSSIAN.mean.value == 20.0  # the instance was copied, never changed


@pytest.mark.parametrize("reference, fragment", [
    ("nosuchpackage.lines:Lorentz", "cannot import module 'nosuchpackage.lines'"),
    ("cubefit_user_models:NoSuchModel", "module 'cubefit_user_models' has no attribute 'NoSuchModel'"),
    ("cubefit_user_models:NOT_A_MODEL", "is a dict, not an astropy model class or instance"),
    ("cubefit_user_models:", "is not of the form 'package.module:Name'"),
])
def test_user_model_reference_errors(tmp_path, capsys, monkeypatch, reference, fragment):
    monkeypatch.syspath_prepend(str(TESTS))
    write_cube(tmp_path, lambda x, iy, ix: np.zeros_like(x))
    write_config(tmp_path, f"    class: '{reference}'")
    assert main(["validate", str(tmp_path / "cfg.yaml")]) == 2
    err = capsys.readouterr().err
    assert "cfg.yaml:8: cubefit.model.class:" in err, err
    assert fragment in err, err


def test_spec_from_model_in_python():
    """The Python path: an instance with units and an array parameter becomes a unitless template plus a map."""
    from astropy import units as u
    from astropy.modeling.models import Gaussian1D

    from hpcfit.cubefit.model_spec import build_model, spec_from_model

    means = np.full((NY, NX), 4.2) * u.km / u.s
    model = Gaussian1D(amplitude=1 * u.K, mean=means, stddev=500 * u.m / u.s)
    model.mean.bounds = (3, 6) * u.km / u.s
    built = build_model(spec_from_model(model), input_units=[u.m / u.s], data_unit=u.K, iter_shape=(NY, NX))
    assert built.model.mean.bounds == (3000.0, 6000.0) and built.model.stddev.value == 500.0
    np.testing.assert_allclose(built.initial_maps["mean"], 4200.0)
    assert model.mean.unit == u.km / u.s  # untouched


# ---------------------------------------------------------------------------------------------------------
# Maps of initial values


def _fixed_mean_cube(tmp_path) -> np.ndarray:
    from astropy.modeling.models import Gaussian1D

    means = 15.0 + np.arange(NY * NX, dtype=float).reshape(NY, NX) * 0.3
    write_cube(tmp_path, lambda x, iy, ix: Gaussian1D.evaluate(x, 2.0, means[iy, ix], 3.0))
    np.save(tmp_path / "means.npy", means)
    return means


@pytest.mark.parametrize("solver", ["batched", "astropy"])
def test_npy_initial_values_start_each_fit(tmp_path, solver):
    """With the mean fixed, each fit keeps its own initial value: the output map is the input map."""
    means = _fixed_mean_cube(tmp_path)
    write_config(tmp_path, """\
    class: Gaussian1D
    parameters:
      amplitude: 1.0
      mean: {value: means.npy, fixed: true}
      stddev: 2""", solver=solver)
    assert main(["run", str(tmp_path / "cfg.yaml"), "-q"]) == 0
    got = read(tmp_path / "out.h5", ("amplitude", "mean", "stddev"))
    np.testing.assert_array_equal(got["mean"], means)
    np.testing.assert_allclose(got["amplitude"], 2.0, rtol=0.02)


@pytest.mark.parametrize("saved, fragment", [
    (np.zeros((NX, NY)), f"has shape ({NX}, {NY}), but initial values need the shape of the iterating "
                         f"(non-fitting) axes ({NY}, {NX})"),
    (np.full((NY, NX), np.nan), "non-finite value(s)"),
    (np.full((NY, NX), 99.0), "lie outside the bounds [5, 35]"),
])
def test_npy_initial_values_errors(tmp_path, capsys, saved, fragment):
    _fixed_mean_cube(tmp_path)
    np.save(tmp_path / "bad.npy", saved)
    write_config(tmp_path, """\
    class: Gaussian1D
    parameters:
      amplitude: 1.0
      mean: {value: bad.npy, bounds: [5, 35]}""")
    assert main(["validate", str(tmp_path / "cfg.yaml")]) == 2
    err = capsys.readouterr().err
    assert "cubefit.model.parameters.mean.value:" in err, err
    assert fragment in err, err


# ---------------------------------------------------------------------------------------------------------
# Fitters outside the least-squares family


def test_linear_fitter_polynomial_matches_astropy(tmp_path):
    from astropy.modeling.fitting import LinearLSQFitter
    from astropy.modeling.models import Polynomial1D

    cube = write_cube(tmp_path, lambda x, iy, ix: 0.5 + 0.1 * iy - 0.02 * ix * x + 1e-3 * x**2, noise=0.05)
    write_config(tmp_path, """\
    class: Polynomial1D
    options: {degree: 2}""", fitter="LinearLSQFitter")
    assert main(["run", str(tmp_path / "cfg.yaml"), "-q"]) == 0
    got = read(tmp_path / "out.h5", ("c0", "c1", "c2"))
    assert got["attrs"]["cubefit_solver"] == "astropy"
    assert "LinearLSQFitter" in got["attrs"]["cubefit_solver_note"]
    fitter = LinearLSQFitter()
    for iy in range(NY):
        for ix in range(NX):
            ref = fitter(Polynomial1D(2), X, cube[:, iy, ix]).parameters
            np.testing.assert_allclose([got[n][iy, ix] for n in ("c0", "c1", "c2")], ref, rtol=1e-10, atol=1e-12)


def test_outlier_removal_matches_astropy(tmp_path):
    from astropy.modeling.fitting import FittingWithOutlierRemoval, LevMarLSQFitter
    from astropy.modeling.models import Gaussian1D
    from astropy.stats import sigma_clip

    rng = np.random.default_rng(5)
    spikes = rng.random((N_CHAN, NY, NX)) < 0.05

    cube = write_cube(tmp_path, lambda x, iy, ix: Gaussian1D.evaluate(x, 2.0, 18.0 + 0.3 * ix, 3.0), noise=0.05)
    cube = cube + 5.0 * spikes
    np.save(tmp_path / "cube.npy", cube)
    write_config(tmp_path, """\
    class: Gaussian1D
    parameters: {amplitude: 1.0, mean: 20, stddev: 2}""",
                 fitter="{class: FittingWithOutlierRemoval, fitter: LevMarLSQFitter, outlier: sigma_clip, niter: 3, "
                        "sigma: 2.5}")
    assert main(["run", str(tmp_path / "cfg.yaml"), "-q"]) == 0
    got = read(tmp_path / "out.h5", ("amplitude", "mean", "stddev"))
    assert got["attrs"]["cubefit_solver"] == "astropy"
    fitter = FittingWithOutlierRemoval(LevMarLSQFitter(), sigma_clip, niter=3, sigma=2.5)
    plain = LevMarLSQFitter()
    differs = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for iy in range(NY):
            for ix in range(NX):
                model = Gaussian1D(1.0, 20.0, 2.0)
                ref = fitter(model, X, cube[:, iy, ix])[0].parameters
                np.testing.assert_allclose([got[n][iy, ix] for n in ("amplitude", "mean", "stddev")], ref,
                                           rtol=1e-7)
                differs += not np.allclose(plain(model, X, cube[:, iy, ix]).parameters, ref, rtol=1e-3)
    assert differs > 0  # the clipping mattered: a plain fit would not have matched


def test_user_component_in_compound_model_expression_order(tmp_path, monkeypatch):
    """A custom_model component beside a built-in one, the expression naming them in another order than the
    list: each output map still holds its own component's parameter."""
    monkeypatch.syspath_prepend(str(TESTS))
    write_cube(tmp_path, lambda x, iy, ix: user.lorentzian(x, 2.0, 18.0 + 0.5 * ix, 4.0) + 0.7)
    write_config(tmp_path, """\
    components:
      - {class: 'cubefit_user_models:Lorentzian', name: line, parameters: {amplitude: 1, x0: 20, fwhm: 3}}
      - {class: Const1D, name: base, parameters: {amplitude: 0.1}}
    expression: base + line""")
    assert main(["run", str(tmp_path / "cfg.yaml"), "-q"]) == 0
    got = read(tmp_path / "out.h5", ("line.amplitude", "line.x0", "line.fwhm", "base.amplitude"))
    np.testing.assert_allclose(got["base.amplitude"], 0.7, atol=0.02)
    np.testing.assert_allclose(got["line.amplitude"], 2.0, rtol=0.02)
    np.testing.assert_allclose(got["line.x0"], 18.0 + 0.5 * np.arange(NX)[None, :] + 0 * got["line.x0"], atol=0.05)
    with h5py.File(tmp_path / "out.h5") as h5:
        assert h5["parameters/base.amplitude"].attrs["astropy_name"] == "amplitude_0"
        assert h5["parameters/line.x0"].attrs["astropy_name"] == "x0_1"
