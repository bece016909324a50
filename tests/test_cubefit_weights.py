"""cubefit's ``weights.kind``: the same per-sample noise given as weights (1/sigma), uncertainty (sigma), variance
or inverse variance gives, with both solvers, the parameters astropy's TRFLSQFitter finds when called per spectrum
with ``weights=1/sigma`` (astropy's weights multiply the residuals)."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
from astropy.io import fits

from hpcfit.cli import main
from hpcfit.cubefit.synthetic import make_cube

SHAPE = (30, 3, 4)
PIXELS = [(j, i) for j in range(SHAPE[1]) for i in range(SHAPE[2])]

CONFIG = """\
job: cubefit
output: {output}
cubefit:
  data: {{path: cube.fits}}
  weights: {{path: {kind}.npy, kind: {kind}}}
  model:
    class: Gaussian1D
    parameters:
      amplitude: 1.0
      mean: {{value: 4000, unit: m/s, bounds: [2500, 6300]}}
      stddev: {{value: 300, unit: m/s}}
  solver: {solver}
"""

KINDS = {"weights": lambda s: 1.0 / s, "uncertainty": lambda s: s, "variance": lambda s: s ** 2,
         "inverse_variance": lambda s: 1.0 / s ** 2}


def noise_sigma() -> np.ndarray:
    """Per-sample 1-sigma noise, strongly uneven along each spectrum (so that weighting changes the fit), with
    the largest sigma on the line's peak side in some spectra and elsewhere in others."""
    rng = np.random.default_rng(5)
    return np.exp(rng.uniform(np.log(0.01), np.log(0.5), SHAPE))


@pytest.fixture(scope="module")
def case(tmp_path_factory) -> tuple[Path, np.ndarray, np.ndarray, np.ndarray]:
    """A directory with the cube (noise drawn with the per-sample sigma) and the sigma in every kind."""
    path = tmp_path_factory.mktemp("weights")
    clean, _, header = make_cube(shape=SHAPE, noise=0.0, n_blank=0, nan_fraction=0.0)
    sigma = noise_sigma()
    cube = (clean + np.random.default_rng(9).normal(0.0, sigma)).astype(np.float32)
    fits.PrimaryHDU(cube, header=header).writeto(path / "cube.fits")
    for kind, convert in KINDS.items():
        np.save(path / f"{kind}.npy", convert(sigma))
    from astropy.wcs import WCS

    velocity = WCS(header).sub([3]).pixel_to_world_values(np.arange(SHAPE[0]))
    return path, cube.astype(np.float64), sigma, velocity


def astropy_fit(spectrum: np.ndarray, velocity: np.ndarray, weights: np.ndarray | None) -> np.ndarray:
    """astropy's TRFLSQFitter on one spectrum, the model and bounds of CONFIG: the 3 parameters, then their
    1-sigma uncertainties (absolute when weights are given: astropy does not rescale the covariance then)."""
    from astropy.modeling.fitting import TRFLSQFitter
    from astropy.modeling.models import Gaussian1D

    model = Gaussian1D(1.0, 4000.0, 300.0, bounds={"mean": (2500.0, 6300.0)})
    fitter = TRFLSQFitter(calc_uncertainties=True)
    fitted = fitter(model, velocity, spectrum, weights=weights)
    return np.concatenate([fitted.parameters, np.sqrt(np.diag(fitter.fit_info["param_cov"]))])


@pytest.fixture(scope="module")
def reference(case) -> dict[str, np.ndarray]:
    """astropy's parameters per pixel with weights = 1/sigma, and without weights (to show the weights matter)."""
    _, cube, sigma, velocity = case
    weighted = np.array([astropy_fit(cube[:, j, i], velocity, 1.0 / sigma[:, j, i]) for j, i in PIXELS])
    plain = np.array([astropy_fit(cube[:, j, i], velocity, None) for j, i in PIXELS])
    # the case discriminates: weighting by 1/sigma or by sigma gives other answers than each other
    wrong = np.array([astropy_fit(cube[:, j, i], velocity, sigma[:, j, i]) for j, i in PIXELS])
    assert np.median(np.abs(wrong[:, 1] - weighted[:, 1])) > 10.0  # m/s, on the line centre
    assert np.median(np.abs(plain[:, 1] - weighted[:, 1])) > 1.0
    return weighted


@pytest.mark.parametrize("solver", ["astropy", "batched"])
@pytest.mark.parametrize("kind", list(KINDS))
def test_weight_kinds_agree_with_astropy(case, reference, kind, solver):
    """Every kind is converted to astropy's weights (1/sigma) before fitting: same parameters and same
    (absolute) uncertainties as astropy's fitter given weights=1/sigma."""
    path = case[0]
    config = path / f"{kind}-{solver}.yaml"
    config.write_text(CONFIG.format(output=f"{kind}-{solver}.h5", kind=kind, solver=solver))
    assert main(["run", str(config)]) == 0
    with h5py.File(path / f"{kind}-{solver}.h5") as h5:
        assert np.all(h5["status"][()] == 0)
        names = ("amplitude", "mean", "stddev")
        fitted = np.array([[h5[f"parameters/{name}"][j, i] for name in names] for j, i in PIXELS])
        errors = np.array([[h5[f"uncertainties/{name}"][j, i] for name in names] for j, i in PIXELS])
    np.testing.assert_allclose(fitted, reference[:, :3], rtol=1e-6)
    np.testing.assert_allclose(errors, reference[:, 3:], rtol=1e-5)
