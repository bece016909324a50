"""gridfit end to end on a small modified-blackbody problem: the whole job against a brute-force double loop
(best indices, scales, chi2, likelihood-weighted estimates, the full chi2 array), the output layout and results
table, upper limits and missing bands, and identical files for 1, 2 and 4 ranks and the serial-h5py fallback."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
from astropy.table import Table

from gridfit_helpers import ERROR_FLOOR, brute_force, mbb_luminosity_numeric, write_config, write_inputs
from h5compare import assert_ran_with, assert_same_datasets, datasets
from hpcfit.cli import main
from hpcfit.gridfit.catalog import BandSpec, read_catalog
from launch import hpcfit


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("gridfit")
    write_inputs(path)
    return path


@pytest.fixture(scope="module")
def serial_run(workdir) -> Path:
    config = write_config(workdir, "serial.yaml", "serial.h5")
    assert main(["run", str(config)]) == 0
    return workdir / "serial.h5"


@pytest.fixture(scope="module")
def reference(workdir, serial_run):
    """The brute-force fit of the catalogue, on the band fluxes the job wrote (checked separately below)."""
    names = [p.stem for p in sorted((workdir / "filters").glob("*.dat"), key=lambda p: int(p.stem[3:]))]
    bands = [BandSpec(n, f"{n}_flux", f"{n}_err") for n in names]
    catalog = read_catalog(workdir / "catalog.ecsv", bands, distance_column="distance")
    with h5py.File(serial_run) as h5:
        fluxes = h5["grid/band_fluxes"][()]
        params = h5["grid/parameters"][()]
        luminosity = h5["grid/luminosity_per_mass"][()]
    factor = catalog.flux_factor("W/Hz")
    chi2, scale, best, bayes = brute_force(catalog, fluxes, factor, ERROR_FLOOR, params,
                                           ["temperature", "beta"], luminosity)
    return catalog, chi2, scale, best, bayes


def test_best_fit_matches_brute_force(serial_run, reference):
    catalog, chi2, scale, best, _ = reference
    rows = np.arange(catalog.n_galaxies)
    with h5py.File(serial_run) as h5:
        np.testing.assert_array_equal(h5["best/model_index"][()], best)
        np.testing.assert_allclose(h5["best/chi2"][()], chi2[rows, best], rtol=1e-10)
        np.testing.assert_allclose(h5["best/scale"][()], scale[rows, best], rtol=1e-10)
        np.testing.assert_array_equal(h5["best/dust_mass"][()], h5["best/scale"][()])
        params = h5["grid/parameters"][()]
        np.testing.assert_array_equal(h5["best/temperature"][()], params[best, 0])
        np.testing.assert_array_equal(h5["best/beta"][()], params[best, 1])
        n_used = catalog.valid.sum(axis=1)
        np.testing.assert_array_equal(h5["n_bands"][()], n_used)
        np.testing.assert_allclose(h5["best/reduced_chi2"][()], chi2[rows, best] / (n_used - 1), rtol=1e-10)
        model = h5["best/fluxes"][()]
        expected = (scale[rows, best] * catalog.flux_factor("W/Hz"))[:, None] * h5["grid/band_fluxes"][()][best]
        np.testing.assert_allclose(model, expected, rtol=1e-12)


def test_bayesian_estimates_match_brute_force(serial_run, reference):
    *_, bayes = reference
    with h5py.File(serial_run) as h5:
        assert sorted(h5["bayes"]) == sorted([f"{n}{s}" for n in bayes for s in ("", "_err")])
        for name, (mean, std) in bayes.items():
            np.testing.assert_allclose(h5[f"bayes/{name}"][()], mean, rtol=1e-8, err_msg=name)
            np.testing.assert_allclose(h5[f"bayes/{name}_err"][()], std, rtol=1e-8, err_msg=name)


def test_full_chi2_array(serial_run, reference):
    catalog, chi2, *_ = reference
    with h5py.File(serial_run) as h5:
        stored = h5["chi2"]
        assert stored.shape == chi2.shape and stored.chunks is not None
        # chi2 = Ff - A s is exact to ~1e-16 Ff (Ff = sum w f^2 per galaxy); the minimum is re-evaluated exactly.
        ff = np.nansum(np.where(catalog.valid & ~catalog.upper, catalog.flux / catalog.error, 0.0) ** 2, axis=1)
        np.testing.assert_allclose(stored[()], chi2, rtol=1e-10, atol=1e-13 * ff.max())
        assert np.all(stored[()].min(axis=1) >= h5["best/chi2"][()] - 1e-12 * ff)


def test_upper_limits_and_missing_bands_fit(serial_run, reference):
    catalog, chi2, *_ = reference
    with h5py.File(serial_run) as h5:
        upper = h5["n_upper_limits"][()]
        assert upper[3] == 1 and upper[7] == 1 and upper.sum() == 2
        assert h5["n_bands"][5] == 5 and np.all(h5["n_bands"][()][[0, 3, 7]] == 6)
        assert h5["observed/upper"][3, 0] == 1
        for g in (3, 5, 7):
            assert np.isfinite(h5["best/dust_mass"][g]) and h5["best/dust_mass"][g] > 0
            assert np.isfinite(h5["bayes/log_dust_mass"][g]) and h5["bayes/log_dust_mass_err"][g] > 0
        # the fitted model of galaxy 3 respects its limit: the model flux is at most a few sigma above it
        limit, sigma = h5["observed/flux"][3, 0], h5["observed/error"][3, 0]
        assert h5["best/fluxes"][3, 0] < limit + 3 * sigma
        # identical photometry gives identical answers wherever the galaxy sits in a block
        for name in ("best/model_index", "best/chi2", "best/scale", "bayes/temperature", "bayes/log_dust_mass_err"):
            assert h5[name][10] == h5[name][11], name


def test_grid_tables(serial_run, workdir):
    from gridfit_helpers import mbb_problem

    _, filters, spec, _, _ = mbb_problem(workdir / "check")
    with h5py.File(serial_run) as h5:
        params = h5["grid/parameters"]
        assert list(params.attrs["names"]) == ["temperature", "beta"] and params.shape == (87, 2)
        np.testing.assert_array_equal(params[()], spec.parameters(0, 87))
        # band fluxes: each box curve integrated independently on a 20x finer wavelength grid (the model grid
        # of 3000 log-spaced points is good to ~1e-5 where the spectrum falls steeply)
        from hpcfit.models.blackbody import modified_blackbody_lnu

        fine = np.geomspace(4e5, 1e7, 60000)
        for n in (0, 40, 86):
            lnu = modified_blackbody_lnu(fine, *params[n])
            direct = [f.quoted_flux(fine, lnu) for f in filters]
            np.testing.assert_allclose(h5["grid/band_fluxes"][n], direct, rtol=3e-5)  # Wien side at 12 K
            np.testing.assert_allclose(h5["grid/luminosity_per_mass"][n], mbb_luminosity_numeric(*params[n]),
                                       rtol=1e-8)
        ids = h5["ids"][()].astype(str)
        assert ids[0] == "gal00000" and h5["distance_mpc"].attrs["unit"] == "Mpc"
        assert list(h5["bands/name"][()].astype(str)) == ["box70", "box100", "box160", "box250", "box350", "box500"]
        assert set(h5["bands/convention"][()].astype(str)) == {"photon"}
        assert not h5["bands/quoted"][()].any()  # top-hat curves have no reference spectrum: band averages
        assert h5.attrs["gridfit_model"] == "modified_blackbody" and h5.attrs["gridfit_chunk_models"] == 17
        assert h5.attrs["gridfit_block_galaxies"] == 8  # several blocks and chunks were really exercised


def test_results_table_mirrors_the_file(serial_run, workdir):
    table = Table.read(workdir / "serial_results.fits")
    found = datasets(serial_run)
    assert list(table["id"].astype(str)) == list(found["ids"].astype(str))
    assert table.colnames[:6] == ["id", "n_bands", "n_upper_limits", "best.model_index", "best.chi2",
                                  "best.reduced_chi2"]
    np.testing.assert_array_equal(table["best.dust_mass"], found["best/dust_mass"])
    np.testing.assert_array_equal(table["best.box250"], found["best/fluxes"][:, 3])
    np.testing.assert_array_equal(table["bayes.log_dust_mass_err"], found["bayes/log_dust_mass_err"])
    assert str(table["best.dust_mass"].unit) == "solMass" and str(table["best.box70"].unit) == "mJy"


@pytest.fixture(scope="module")
def best_run(workdir) -> Path:
    config = write_config(workdir, "best.yaml", "best.h5", chi2="best", extra="    results_table: ecsv\n")
    assert main(["run", str(config)]) == 0
    return workdir / "best.h5"


def test_chi2_best_gives_the_same_answers_without_the_array(workdir, serial_run, best_run):
    full, best = datasets(serial_run), datasets(best_run)
    assert "chi2" not in best and set(full) - set(best) == {"chi2"}
    for name in best:
        np.testing.assert_array_equal(best[name], full[name], err_msg=name)
    assert Table.read(workdir / "best_results.ecsv")["best.chi2"].shape == (30,)


def test_plot_uses_stored_or_recomputed_chi2(serial_run, best_run, tmp_path):
    from hpcfit.gridfit.plot import _read, plot_galaxy

    stored, recomputed = _read(serial_run, "gal00003"), _read(best_run, 3)
    assert stored["chi2_stored"] and not recomputed["chi2_stored"]
    np.testing.assert_allclose(recomputed["chi2"], stored["chi2"], rtol=1e-10, atol=1e-9)
    assert recomputed["upper"][0] and recomputed["best_index"] == stored["best_index"]
    png = plot_galaxy(best_run, "gal00003", tmp_path / "g3.png")
    assert png.read_bytes()[:4] == b"\x89PNG"
    assert plot_galaxy(serial_run, 5).name == "serial_gal00005.png"


@pytest.mark.mpi
@pytest.mark.parametrize("n", [2, 4])
def test_same_file_for_any_rank_count(workdir, serial_run, n):
    config = write_config(workdir, f"mpi{n}.yaml", f"mpi{n}.h5")
    result = hpcfit(["run", config.name], n=n, cwd=workdir)
    assert result.returncode == 0, result.output
    assert_same_datasets(serial_run, workdir / f"mpi{n}.h5")
    assert_ran_with(workdir / f"mpi{n}.h5", n_ranks=n, mode="mpio")
    np.testing.assert_array_equal(Table.read(workdir / f"mpi{n}_results.fits")["bayes.temperature"],
                                  Table.read(workdir / "serial_results.fits")["bayes.temperature"])


@pytest.mark.mpi
def test_serial_h5py_fallback_gives_the_same_file(workdir, serial_run):
    config = write_config(workdir, "serialh5.yaml", "serialh5.h5")
    result = hpcfit(["run", config.name], n=2, cwd=workdir, serial_h5py=True)
    assert result.returncode == 0, result.output
    assert_same_datasets(serial_run, workdir / "serialh5.h5")
    assert_ran_with(workdir / "serialh5.h5", n_ranks=2, mode="serial")
