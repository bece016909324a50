"""Sample priors beyond uniform: each prior's empirical distribution (KS tests, fixed seed), the default (uniform)
output unchanged bit for bit, the same draws for 1 and 2 ranks, the prior recorded in the file, and the
validation messages naming the key and the allowed values."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
from scipy import stats

import hpcfit
from h5compare import assert_ran_with, assert_same_datasets, datasets
from hpcfit.sample.priors import Prior
from launch import hpcfit as launch

N = 6000


def config(output: Path, free: dict, *, method: str = "uniform", seed: int = 11) -> dict:
    return {"job": "sample", "output": str(output), "run": {"overwrite": True, "progress": "none"},
            "sample": {"free_params": free,
                       "sampling": {"n_samples": N, "seed": seed, "method": method, "batch_size": 1000,
                                    "filters": "dustpedia_ir"},
                       "model": "plugins.toy_sed:factory"}}


BASE = {"redshift": [0.0, 6.0], "log_mass": [8.0, 12.0], "dust2": [0.0, 2.0], "tage": [0.5, 13.0],
        "log_tau": [-1.0, 1.5]}
PRIORS = {"redshift": {"bounds": [0.0, 6.0], "prior": "clipped_normal", "mu": 1.0, "sigma": 0.8},
          "log_mass": {"bounds": [8.0, 12.0], "prior": "normal", "mu": 10.0, "sigma": 0.3},
          "dust2": {"bounds": [0.01, 2.0], "prior": "log_uniform"},
          "tage": [0.5, 13.0], "log_tau": {"bounds": [-1.0, 1.5]}}


@pytest.fixture(autouse=True)
def plugin_path(monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).parent))


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("priors")


@pytest.fixture(scope="module")
def prior_file(workdir) -> Path:
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    return hpcfit.run(config(workdir / "priors.h5", PRIORS)).path


def _column(path: Path, name: str) -> np.ndarray:
    result = hpcfit.open(path)
    return np.asarray(result.theta)[:, result.names.index(name)]


def test_each_prior_has_its_distribution(prior_file):
    z = _column(prior_file, "redshift")
    a, b = (0.0 - 1.0) / 0.8, (6.0 - 1.0) / 0.8
    assert z.min() >= 0.0 and z.max() <= 6.0
    assert stats.kstest(z, stats.truncnorm(a, b, loc=1.0, scale=0.8).cdf).pvalue > 1e-3
    mass = _column(prior_file, "log_mass")
    assert stats.kstest(mass, stats.norm(loc=10.0, scale=0.3).cdf).pvalue > 1e-3
    dust = _column(prior_file, "dust2")
    assert dust.min() >= 0.01 and dust.max() <= 2.0
    assert stats.kstest(dust, stats.loguniform(0.01, 2.0).cdf).pvalue > 1e-3
    # the wrong distribution is told apart: the test has power
    assert stats.kstest(dust, stats.uniform(0.01, 1.99).cdf).pvalue < 1e-6
    assert stats.kstest(z, stats.norm(loc=1.0, scale=0.8).cdf).pvalue < 1e-6
    tage = _column(prior_file, "tage")
    assert stats.kstest(tage, stats.uniform(0.5, 12.5).cdf).pvalue > 1e-3


def test_priors_map_the_same_unit_draws(prior_file):
    """theta is each prior's inverse CDF of normalised_theta (the counter-based draws, unchanged)."""
    result = hpcfit.open(prior_file)
    theta, unit = np.asarray(result.theta), np.asarray(result.normalised_theta)
    for j, name in enumerate(result.names):
        entry = result.priors[name]
        prior = Prior(entry["prior"], entry["low"], entry["high"], entry.get("mu"), entry.get("sigma"))
        np.testing.assert_allclose(theta[:, j], prior.ppf(unit[:, j]), rtol=1e-12, err_msg=name)


def test_prior_is_recorded_and_bounds_stay_the_bounds(prior_file):
    result = hpcfit.open(prior_file)
    assert result.priors["redshift"] == {"prior": "clipped_normal", "low": 0.0, "high": 6.0, "mu": 1.0,
                                         "sigma": 0.8}
    assert result.priors["dust2"]["prior"] == "log_uniform" and result.priors["tage"]["prior"] == "uniform"
    low, high = result.bounds
    np.testing.assert_array_equal(low, [0.0, 8.0, 0.01, 0.5, -1.0])
    np.testing.assert_array_equal(high, [6.0, 12.0, 2.0, 13.0, 1.5])
    with h5py.File(prior_file) as h5:
        attrs = h5["samples/theta"].attrs
        assert [p.decode() if isinstance(p, bytes) else p for p in attrs["prior"]] == [
            "clipped_normal", "normal", "log_uniform", "uniform", "uniform"]
        np.testing.assert_array_equal(attrs["mu"][:2], [1.0, 10.0])
        assert np.isnan(attrs["mu"][2:]).all()


@pytest.mark.parametrize("method", ["uniform", "latin_hypercube"])
def test_default_uniform_output_is_unchanged(workdir, method):
    """[low, high] and {bounds, prior: uniform} give the same file, whose theta is low + (high - low) * unit in
    floating point exactly (the formula of the job before priors existed, over the same unit draws)."""
    plain = hpcfit.run(config(workdir / f"plain_{method}.h5", BASE, method=method)).path
    spelled = {name: {"bounds": bounds, "prior": "uniform"} for name, bounds in BASE.items()}
    explicit = hpcfit.run(config(workdir / f"explicit_{method}.h5", spelled, method=method)).path
    assert_same_datasets(plain, explicit)
    data = datasets(plain)
    low = np.array([b[0] for b in BASE.values()])
    high = np.array([b[1] for b in BASE.values()])
    np.testing.assert_array_equal(data["samples/theta"], low + (high - low) * data["samples/normalised_theta"])


@pytest.mark.mpi
def test_same_draws_for_one_and_two_ranks(workdir, prior_file):
    import yaml

    cfg = config(workdir / "priors_2.h5", PRIORS)
    path = workdir / "priors_2.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    result = launch(["run", str(path)], n=2, cwd=workdir)
    assert result.returncode == 0, result.output
    assert_ran_with(workdir / "priors_2.h5", n_ranks=2)
    a, b = datasets(prior_file), datasets(workdir / "priors_2.h5")
    for name in ("samples/theta", "samples/normalised_theta", "samples/simulated_y", "samples/sample_index"):
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def test_band_of_partition_axis_follows_the_prior():
    prior = Prior("clipped_normal", 0.0, 6.0, 1.0, 0.8)
    low, high = prior.band(1000, 2000, 4000)
    np.testing.assert_allclose([low, high], prior.ppf(np.array([0.25, 0.5])))
    uniform = Prior("uniform", 0.0, 6.0)
    assert uniform.band(1000, 2000, 4000) == (1.5, 3.0)
    assert Prior("normal", 0, 1, 5.0, 2.0).reach()[0] < 5.0 - 8 * 2.0


def test_validation_names_the_key_and_the_allowed_values(workdir):
    free = {"redshift": {"bounds": [0.0, 6.0], "prior": "gauss"},
            "log_mass": {"bound": [8.0, 12.0]},
            "dust2": [0.0, 2.0], "tage": [0.5, 13.0], "log_tau": [-1.0, 1.5]}
    with pytest.raises(hpcfit.ConfigError) as info:
        hpcfit.run(config(workdir / "bad.h5", free))
    text = str(info.value)
    assert "sample.free_params.redshift.prior: 'gauss' is not one of the choices (allowed: uniform, log_uniform, " \
           "normal, clipped_normal)" in text
    assert "sample.free_params.log_mass.bound: unknown key (did you mean 'bounds'?)" in text
    assert "sample.free_params.log_mass.bounds: missing required key" in text
    free = {"redshift": {"bounds": [0.0, 6.0], "prior": "normal", "mu": 1.0},
            "log_mass": [8.0, 12.0],
            "dust2": {"bounds": [0.0, 2.0], "prior": "log_uniform", "sigma": 1.0},
            "tage": {"bounds": [0.5, 13.0], "prior": "clipped_normal", "mu": 3.0, "sigma": 0.0},
            "log_tau": {"bounds": [-1.0, 1.5], "prior": "log_uniform"}}
    with pytest.raises(hpcfit.ConfigError) as info:
        hpcfit.run(config(workdir / "bad.h5", free))
    paths = [issue.path for issue in info.value.issues]
    assert paths == ["sample.free_params.redshift.sigma", "sample.free_params.dust2.sigma",
                     "sample.free_params.dust2.bounds", "sample.free_params.tage.sigma",
                     "sample.free_params.log_tau.prior"], paths
    assert not (workdir / "bad.h5").exists()
