"""Catalogue reading: formats, units to mJy, upper limits and missing bands, validation errors naming the column."""

from __future__ import annotations

import astropy.units as u
import numpy as np
import pytest
from astropy.cosmology import Planck18
from astropy.table import Table

from hpcfit.gridfit.chi2 import chi2_block, prepare_photometry
from hpcfit.gridfit.catalog import BandSpec, CatalogError, read_catalog

DUSTPEDIA = "dustpedia_21galaxies.csv"
DP_BANDS = ["MIPS24", "PACS70", "PACS100", "PACS160", "SPIRE250", "SPIRE350", "SPIRE500"]


def dp_bands():
    return [{"name": b, "flux_column": f"{b}_mJy", "error_column": f"{b}_err_mJy"} for b in DP_BANDS]


def small_table(unit=None, scale=1.0):
    """Three galaxies, two bands; fluxes given in mJy divided by ``scale`` (scale=1000 -> values in Jy)."""
    t = Table()
    t["id"] = ["a", "b", "c"]
    t["distance"] = [10.0, 20.0, 5.0]
    t["f1"] = np.array([100.0, 50.0, 30.0]) / scale
    t["e1"] = np.array([10.0, 5.0, 3.0]) / scale
    t["f2"] = np.array([200.0, 80.0, 60.0]) / scale
    t["e2"] = np.array([20.0, 8.0, 6.0]) / scale
    if unit is not None:
        for c in ("f1", "e1", "f2", "e2"):
            t[c].unit = unit
    return t


BANDS2 = [BandSpec("b1", "f1", "e1"), BandSpec("b2", "f2", "e2")]


def test_dustpedia_csv(shared_path):
    path = shared_path(DUSTPEDIA)
    cat = read_catalog(path, dp_bands(), id_column="name", distance_column="distance_mpc", flux_unit="mJy")
    raw = Table.read(path)
    assert cat.n_galaxies == 21 and cat.n_bands == 7 and cat.band_names == DP_BANDS
    assert cat.valid.all() and not cat.upper.any()
    np.testing.assert_array_equal(cat.ids, np.asarray(raw["name"]))
    np.testing.assert_allclose(cat.flux[:, 3], raw["PACS160_mJy"], rtol=1e-15)
    np.testing.assert_allclose(cat.error[:, 6], raw["SPIRE500_err_mJy"], rtol=1e-15)
    np.testing.assert_allclose(cat.distance_mpc, raw["distance_mpc"], rtol=1e-15)


@pytest.mark.parametrize("fmt, suffix", [("ascii.ecsv", ".ecsv"), ("fits", ".fits"), ("votable", ".xml")])
def test_formats_with_units_jy_and_mjy_give_the_same_fit(tmp_path, fmt, suffix):
    """The same photometry stored in Jy and in mJy: identical mJy arrays and identical best scales."""
    cats = []
    for unit, scale in (("Jy", 1000.0), ("mJy", 1.0)):
        path = tmp_path / f"cat_{unit}{suffix}"
        small_table(unit, scale).write(path, format=fmt)
        cats.append(read_catalog(path, BANDS2))
    jy, mjy = cats
    np.testing.assert_allclose(jy.flux, mjy.flux, rtol=1e-14)
    np.testing.assert_allclose(jy.error, mjy.error, rtol=1e-14)
    np.testing.assert_allclose(mjy.flux[:, 0], [100.0, 50.0, 30.0])
    models = np.array([[1.0, 2.0], [1.0, 1.5], [2.0, 1.0]])
    fits = [chi2_block(prepare_photometry(c.flux, c.error, c.valid, c.upper, model_factor=c.flux_factor()), models)
            for c in cats]
    np.testing.assert_allclose(fits[0][1], fits[1][1], rtol=1e-13)
    np.testing.assert_allclose(fits[0][0], fits[1][0], rtol=1e-12)


def test_unitless_columns_take_the_callers_unit(tmp_path):
    path = tmp_path / "jy.csv"
    small_table(None, 1000.0).write(path, format="ascii.csv")
    default = read_catalog(path, BANDS2)  # default mJy: values taken as they are
    in_jy = read_catalog(path, BANDS2, flux_unit="Jy")
    per_band = read_catalog(path, [BandSpec("b1", "f1", "e1", unit="Jy"), BandSpec("b2", "f2", "e2", unit="Jy")])
    np.testing.assert_allclose(default.flux[:, 0], [0.1, 0.05, 0.03])
    np.testing.assert_allclose(in_jy.flux[:, 0], [100.0, 50.0, 30.0])
    np.testing.assert_array_equal(per_band.flux, in_jy.flux)


def test_conflicting_or_wrong_units_name_the_column():
    t = small_table("Jy")
    with pytest.raises(CatalogError, match="'f1'.*'Jy'.*'mJy'") as err:
        read_catalog(t, [BandSpec("b1", "f1", "e1", unit="mJy")])
    assert err.value.key == "f1" and err.value.kind == "column"
    t["f2"].unit = "erg / s"
    with pytest.raises(CatalogError, match="not a flux density") as err:
        read_catalog(t, BANDS2)
    assert err.value.key == "f2"


def test_redshift_gives_luminosity_distance():
    t = small_table()
    t["z"] = [0.01, 0.02, 0.05]
    cat = read_catalog(t, BANDS2, redshift_column="z", cosmology="Planck18")
    np.testing.assert_allclose(cat.distance_mpc, Planck18.luminosity_distance(t["z"]).to_value(u.Mpc), rtol=1e-12)
    np.testing.assert_array_equal(cat.redshift, t["z"])
    with pytest.raises(CatalogError, match="unknown cosmology") as err:
        read_catalog(t, BANDS2, redshift_column="z", cosmology="NoSuchCosmology")
    assert err.value.key == "cosmology" and err.value.kind == "option"
    kpc = small_table()
    kpc["distance"].unit = "kpc"
    np.testing.assert_allclose(read_catalog(kpc, BANDS2).distance_mpc, [0.01, 0.02, 0.005])


def test_flux_factor_is_inverse_square_in_mjy():
    cat = read_catalog(small_table(), BANDS2)
    expected = 1.0 / (4 * np.pi * (cat.distance_mpc * 3.0856775814913673e22) ** 2) / 1e-29  # W/Hz -> mJy
    np.testing.assert_allclose(cat.flux_factor(), expected, rtol=1e-12)
    np.testing.assert_allclose(cat.flux_factor("erg / (s Hz)"), expected * 1e-7, rtol=1e-12)


def test_upper_limits_and_missing_values():
    t = Table()
    t["id"] = [1, 2, 3, 4, 5, 6]
    t["distance"] = [1.0] * 6
    nan = np.nan
    t["f"] = [10.0, nan, -2.0, nan, 12.0, 4.0]
    t["e"] = [1.0, 2.0, 1.0, nan, nan, 1.0]
    t["flag"] = [False, False, False, False, False, True]
    cat = read_catalog(t, [BandSpec("b", "f", "e", upper_limit_column="flag")])
    # detection / NaN flux + error -> limit 3 sigma / negative flux -> limit / nothing / flux without error /
    # flagged with a positive flux -> limit at that flux.
    assert cat.valid[:, 0].tolist() == [True, True, True, False, False, True]
    assert cat.upper[:, 0].tolist() == [False, True, True, False, False, True]
    np.testing.assert_allclose(cat.flux[[0, 1, 2, 5], 0], [10.0, 6.0, 3.0, 4.0])
    np.testing.assert_allclose(cat.error[[0, 1, 2, 5], 0], [1.0, 2.0, 1.0, 1.0])
    assert np.isnan(cat.flux[3, 0]) and np.isnan(cat.flux[4, 0])

    measured = read_catalog(t, [BandSpec("b", "f", "e")], negative_flux="measurement", upper_limit_nsigma=5)
    assert measured.upper[:, 0].tolist() == [False, True, False, False, False, False]
    assert measured.flux[2, 0] == -2.0 and measured.flux[1, 0] == 10.0


def test_masked_entries_are_missing(tmp_path):
    path = tmp_path / "holes.csv"
    path.write_text("id,distance,f1,e1,f2,e2\na,1,,,5,1\nb,2,3,0.5,,\n")
    cat = read_catalog(path, BANDS2)
    assert cat.valid.tolist() == [[False, True], [True, False]]
    phot = prepare_photometry(cat.flux, cat.error, cat.valid, cat.upper)
    assert phot.n_used.tolist() == [1, 1]


def test_missing_column_lists_available_columns(tmp_path):
    path = tmp_path / "cat.ecsv"
    small_table("mJy").write(path)
    with pytest.raises(CatalogError, match="column 'e_1': column not found; did you mean 'e1'") as err:
        read_catalog(path, [BandSpec("b1", "f1", "e_1")])
    exc = err.value
    assert exc.key == "e_1" and exc.path == str(path)
    assert "available columns: id, distance, f1, e1, f2, e2" in str(exc) and "did you mean 'e1'" in str(exc)
    assert str(path) in str(exc)
    located = exc.with_location("run.yaml line 14")
    assert "run.yaml line 14" in str(located) and located.key == "e_1"


def test_bad_errors_distances_and_ids_name_the_column():
    t = small_table()
    t["e2"][1] = 0.0
    t["e2"][2] = -1.0
    with pytest.raises(CatalogError, match=r"errors must be positive: 2 rows \(ids: b, c\)") as err:
        read_catalog(t, BANDS2)
    assert err.value.key == "e2"

    t = small_table()
    t["distance"][0] = 0.0
    with pytest.raises(CatalogError, match=r"distance must be > 0.*ids: a") as err:
        read_catalog(t, BANDS2)
    assert err.value.key == "distance"

    t = small_table()
    t["id"][2] = "a"
    with pytest.raises(CatalogError, match="duplicate ids: a") as err:
        read_catalog(t, BANDS2)
    assert err.value.key == "id"


def test_band_config_problems_name_the_key(tmp_path):
    t = small_table()
    with pytest.raises(CatalogError, match="unknown key") as err:
        read_catalog(t, [{"name": "b1", "flux_column": "f1", "error_column": "e1", "colour": "red"}])
    assert err.value.key == "bands[0].colour" and err.value.kind == "option"
    with pytest.raises(CatalogError, match="duplicate band names: b1"):
        read_catalog(t, [BANDS2[0], BANDS2[0]])
    with pytest.raises(CatalogError, match="file not found"):
        read_catalog(tmp_path / "nope.fits", BANDS2)
    with pytest.raises(CatalogError, match="is required") as err:
        read_catalog(t, [{"name": "b1", "flux_column": "f1"}])
    assert err.value.key == "bands[0].error_column"


def test_subset_gives_a_galaxy_block():
    cat = read_catalog(small_table(), BANDS2)
    block = cat.subset(slice(1, 3))
    assert block.ids.tolist() == ["b", "c"] and block.flux.shape == (2, 2)
    np.testing.assert_array_equal(block.distance_mpc, cat.distance_mpc[1:3])
