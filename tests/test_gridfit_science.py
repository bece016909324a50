"""gridfit science checks: parameters recovered within their quoted errors at the expected rate, the same dust mass
from Jy and mJy tables, a modified blackbody of known mass, temperature and distance giving back that mass, and the
21 DustPedia galaxies against the Draine & Li (2007) grid (with the plot)."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
from astropy import units as u
from astropy.table import Table

from gridfit_helpers import band_lines, mbb_luminosity_numeric
from hpcfit.cli import main
from hpcfit.gridfit.grid import BandProjector, modified_blackbody_spec, spectral_model
from hpcfit.gridfit.synthetic import synthetic_catalog, write_box_filters
from hpcfit.models.blackbody import modified_blackbody_lnu
from hpcfit.models.filters import FilterSet, read_filter_file

REPO = Path(__file__).resolve().parent.parent

MBB_CONFIG = """\
job: gridfit
output: {output}
gridfit:
  catalog:
    path: {catalog}
    distance_column: distance
{catalog_extra}  bands:
{bands}
  grid:
    model: modified_blackbody
    modified_blackbody:
      temperature: {temperature}
      beta: {beta}
  fit:
    estimate: [temperature, beta, dust_mass, log_dust_mass, log_dust_luminosity]
    results_table: none
"""


def run_mbb(directory: Path, name: str, paths: dict, *, temperature: str, beta: str, catalog: str,
            catalog_extra: str = "") -> dict[str, np.ndarray]:
    config = directory / f"{name}.yaml"
    config.write_text(MBB_CONFIG.format(catalog=catalog, catalog_extra=catalog_extra, bands=band_lines(paths),
                                        temperature=temperature, beta=beta, output=f"{name}.h5"))
    assert main(["run", str(config)]) == 0
    with h5py.File(directory / f"{name}.h5") as h5:
        found = {}
        h5.visititems(lambda key, obj: found.__setitem__(key, obj[()]) if isinstance(obj, h5py.Dataset) else None)
    return found


@pytest.fixture(scope="module")
def filters_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("gridfit_science")
    paths = write_box_filters(directory / "filters")
    filters = FilterSet(tuple(read_filter_file(p) for p in paths.values()))
    return directory, paths, filters


def test_recovery_within_quoted_errors(filters_dir):
    directory, paths, filters = filters_dir
    temperatures, betas = np.linspace(10, 40, 61), [1.5, 1.75, 2.0, 2.25]
    spec = modified_blackbody_spec({"temperature": list(temperatures), "beta": betas}, {})
    model = spectral_model(spec, filters)
    projector = BandProjector(filters, model.wavelength, [True] * len(filters))
    rng = np.random.default_rng(11)
    # true models away from the grid edges, where the posterior would be truncated by the prior
    t_index = rng.integers(10, 52, 400)
    b_index = rng.integers(1, 3, 400)
    table = synthetic_catalog(spec, model, projector, list(paths), n_galaxies=400, seed=12, snr=10.0,
                              models=t_index * len(betas) + b_index)
    table.write(directory / "recovery.ecsv", overwrite=True)
    found = run_mbb(directory, "recovery", paths, temperature="{linspace: [10, 40, 61]}",
                    beta="[1.5, 1.75, 2.0, 2.25]", catalog="recovery.ecsv")
    truth = {"temperature": table["true_temperature"], "beta": table["true_beta"],
             "log_dust_mass": np.log10(table["true_dust_mass"].value)}
    for name, true in truth.items():
        pull = np.abs(found[f"bayes/{name}"] - true) / found[f"bayes/{name}_err"]
        within1, within2 = np.mean(pull < 1), np.mean(pull < 2)
        # Gaussian errors: 68 % within 1 sigma, 95 % within 2 (400 galaxies: +-2.3 % binomial scatter)
        assert 0.58 < within1 < 0.80 and within2 > 0.88, (name, within1, within2)
    # the likelihood-weighted temperature is better than the grid step on average at S/N 10
    assert np.median(np.abs(found["bayes/temperature"] - truth["temperature"])) < 2.0


def test_jy_and_mjy_tables_give_the_same_dust_mass(filters_dir):
    directory, paths, filters = filters_dir
    spec = modified_blackbody_spec({"temperature": [15, 20, 25, 30], "beta": [1.8, 2.0]}, {})
    model = spectral_model(spec, filters)
    projector = BandProjector(filters, model.wavelength, [True] * len(filters))
    table = synthetic_catalog(spec, model, projector, list(paths), n_galaxies=20, seed=4, snr=15.0)
    table.write(directory / "mjy.ecsv", overwrite=True)
    jy = table.copy()
    for name in paths:
        for col in (f"{name}_flux", f"{name}_err"):
            jy[col] = jy[col].to(u.Jy)
    jy.write(directory / "jy.ecsv", overwrite=True)
    bare = jy.copy()
    for name in paths:
        for col in (f"{name}_flux", f"{name}_err"):
            bare[col] = bare[col].value  # no unit in the table: the config says Jy
    bare.write(directory / "bare.csv", format="ascii.csv", overwrite=True)
    axes = dict(temperature="[15, 20, 25, 30]", beta="[1.8, 2.0]")
    a = run_mbb(directory, "mjy", paths, catalog="mjy.ecsv", **axes)
    b = run_mbb(directory, "jy", paths, catalog="jy.ecsv", **axes)
    c = run_mbb(directory, "bare", paths, catalog="bare.csv", catalog_extra="    flux_unit: Jy\n", **axes)
    assert table["distance"].unit == u.Mpc
    for other in (b, c):
        np.testing.assert_array_equal(other["best/model_index"], a["best/model_index"])
        np.testing.assert_allclose(other["best/dust_mass"], a["best/dust_mass"], rtol=1e-12)
        np.testing.assert_allclose(other["bayes/log_dust_mass"], a["bayes/log_dust_mass"], rtol=1e-12)
        np.testing.assert_allclose(other["observed/flux"], a["observed/flux"], rtol=1e-12)  # stored in mJy
    # and the masses are the true ones to within the noise
    assert np.median(np.abs(np.log10(a["best/dust_mass"] / table["true_dust_mass"].value))) < 0.1


def test_modified_blackbody_of_known_mass_temperature_and_distance(filters_dir):
    directory, paths, filters = filters_dir
    mass, temperature, beta, distance_mpc = 2.5e7, 23.5, 1.8, 12.3
    # Photometry computed independently of the job: the spectrum on a fine grid through each filter, and the
    # inverse-square law with explicit constants (1 W m^-2 Hz^-1 = 1e29 mJy; 1 Mpc = 3.0856775814913673e22 m).
    fine = np.geomspace(4e5, 1e7, 60000)
    lnu = modified_blackbody_lnu(fine, temperature, beta) * mass
    distance_m = distance_mpc * 3.0856775814913673e22
    flux = np.array([f.quoted_flux(fine, lnu) for f in filters]) / (4 * np.pi * distance_m**2) * 1e29
    table = Table({"id": ["known"], "distance": [distance_mpc]})
    for b, name in enumerate(paths):
        table[f"{name}_flux"] = [flux[b]]
        table[f"{name}_err"] = [0.01 * flux[b]]
    table.write(directory / "known.ecsv", overwrite=True)
    found = run_mbb(directory, "known", paths, temperature="[15, 18, 20, 23.5, 25, 30]", beta="[1.6, 1.8, 2.0]",
                    catalog="known.ecsv")
    assert found["best/temperature"][0] == temperature and found["best/beta"][0] == beta
    np.testing.assert_allclose(found["best/dust_mass"][0], mass, rtol=1e-4)
    assert found["best/chi2"][0] < 1e-6
    np.testing.assert_allclose(found["best/dust_luminosity"][0], mass * mbb_luminosity_numeric(temperature, beta),
                               rtol=1e-4)
    # the data single out the true model: the posterior collapses onto it
    np.testing.assert_allclose(found["bayes/log_dust_mass"][0], np.log10(mass), atol=1e-4)


@pytest.fixture(scope="module")
def dustpedia_run(tmp_path_factory):
    from hpcfit.shared_data import shared_file

    for name in ("dustpedia_21galaxies.csv", "dl07", "filters_ir"):
        if shared_file(name) is None:
            pytest.skip(f"shared data file '{name}' not found")
    directory = tmp_path_factory.mktemp("dustpedia")
    output = directory / "dustpedia.h5"
    code = main(["run", str(REPO / "configs" / "gridfit_dustpedia.yaml"), "--set", f"output={output}"])
    assert code == 0
    return output


def test_dustpedia_with_dl07(dustpedia_run):
    table = Table.read(dustpedia_run.with_name("dustpedia_results.fits"))
    assert len(table) == 21 and np.all(table["n_bands"] == 7)
    assert np.all(table["best.reduced_chi2"] < 3.0)
    mass = table["best.dust_mass"]
    assert np.all((mass > 1e5) & (mass < 1e9))
    # the likelihood-weighted mass agrees with the best one within a few quoted errors
    pull = np.abs(table["bayes.log_dust_mass"] - np.log10(mass)) / table["bayes.log_dust_mass_err"]
    assert np.median(pull) < 2.0
    with h5py.File(dustpedia_run) as h5:
        assert h5.attrs["gridfit_model"] == "dl07"
        assert list(h5["grid/parameters"].attrs["names"]) == ["umin", "umax", "gamma", "qpah"]
        # U=1 single-field DL07 dust emits ~135-139 L_sun per M_sun (the templates' normalisation)
        params, lpm = h5["grid/parameters"][()], h5["grid/luminosity_per_mass"][()]
        at_one = (params[:, 0] == 1.0) & (params[:, 2] == 0.0)
        assert np.all((lpm[at_one] > 130) & (lpm[at_one] < 145))


def test_plot_of_a_dustpedia_galaxy(dustpedia_run, tmp_path):
    from hpcfit.gridfit.plot import plot_galaxy

    png = plot_galaxy(dustpedia_run, "NGC3521", tmp_path / "ngc3521.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000
    with pytest.raises(KeyError, match="NGC9999"):
        plot_galaxy(dustpedia_run, "NGC9999", tmp_path / "none.png")


def test_demo_without_shared_data_recovers_the_synthetic_truth(tmp_path, monkeypatch):
    empty = tmp_path / "no_shared_data"
    empty.mkdir()
    monkeypatch.setenv("HPCFIT_SHARED_DATA", str(empty))
    assert main(["demo", "gridfit", "--output-dir", str(tmp_path / "demo")]) == 0
    truth = Table.read(tmp_path / "demo" / "synthetic_mbb.ecsv")
    found = Table.read(tmp_path / "demo" / "synthetic_mbb_results.fits")
    assert list(found["id"]) == list(truth["id"])
    pull = np.abs(found["bayes.temperature"] - truth["true_temperature"]) / found["bayes.temperature_err"]
    assert np.mean(pull < 2) > 0.85
    assert np.median(np.abs(np.log10(found["best.dust_mass"] / truth["true_dust_mass"]))) < 0.1
