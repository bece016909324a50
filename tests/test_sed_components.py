"""Unit tests of the SED building blocks: SFH weights, attenuation curves, IGM, AGN shapes, cosmology, rebinning."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.cosmology import Planck18, WMAP9

from hpcfit.models.sed import agn, attenuation, igm, sfh
from hpcfit.models.sed.constants import PARSEC_M
from hpcfit.models.sed.cosmology import DistanceTable
from hpcfit.models.sed.grid import bin_average, default_wavelength_grid, frequency_weights
from hpcfit.models.sed.ssp import default_age_edges

EDGES = default_age_edges()


@pytest.mark.parametrize("kind", sfh.SFH_KINDS)
def test_sfh_weights_sum_to_one_and_vanish_before_the_start(kind):
    tage = np.array([0.001, 0.05, 1.0, 5.0, 13.8])
    tau = np.array([30.0, 0.1, 1.0, 0.3, 10.0])
    w = sfh.sfh_weights(tage, tau, EDGES, kind)
    np.testing.assert_allclose(w.sum(axis=1), 1.0, rtol=1e-12)
    assert np.all(w >= 0)
    for b in range(tage.size):
        older = EDGES[:-1] >= tage[b] * 1e9
        assert np.all(w[b, older] == 0)


def test_delayed_tau_weights_match_the_integral_of_t_exp_minus_t_over_tau():
    tage, tau = 3.0, 0.7
    w = sfh.sfh_weights(np.array([tage]), np.array([tau]), EDGES)[0]
    # independent check: integrate psi(t) = t exp(-t/tau) numerically over each bin's lookback ages
    for k in (20, 30, 35):
        a = np.linspace(EDGES[k], min(EDGES[k + 1], tage * 1e9), 20001) / 1e9
        t = tage - a
        num = np.trapezoid(t * np.exp(-t / tau), a)
        total = tau**2 * (1 - (1 + tage / tau) * np.exp(-tage / tau))
        assert w[k] == pytest.approx(num / total, rel=1e-6)


def test_short_tau_puts_the_mass_in_the_oldest_populated_bin():
    w = sfh.sfh_weights(np.array([10.0]), np.array([0.001]), EDGES)[0]
    oldest = np.flatnonzero(w)[-1]
    assert w[oldest] > 0.99


def test_calzetti_normalisation_and_shape():
    wave = np.array([1500.0, 5500.0, 22000.0, 50000.0])
    k = attenuation.calzetti_k(wave)
    assert k[1] == pytest.approx(4.05, abs=0.01)  # k(V) = R_V by construction of the curve
    assert k[0] == pytest.approx(10.33, abs=0.05)  # Calzetti (2000) k(1500 A)
    assert k[3] == 0.0
    np.testing.assert_allclose(attenuation.calzetti_shape(np.array([5500.0])), 1.0)


def test_pei_curves_reproduce_their_own_colour_excess():
    for which in ("smc", "mw"):
        a = attenuation.pei92_a_over_ebv(np.array([4400.0, 5500.0]), which)
        assert a[0] - a[1] == pytest.approx(1.0)
    # Milky-Way dust: A_V / tau(9.7 um) ~ 16-20 (silicate feature), a 2175 A bump that the SMC lacks
    mw = attenuation.pei92_shape_v(np.array([97000.0]), "mw")[0]
    assert 16 < 1.086 / mw < 20
    bump = attenuation.pei92_a_over_ebv(np.array([1800.0, 2175.0, 2700.0]), "mw")
    assert bump[1] > bump[0] and bump[1] > bump[2]
    smc = attenuation.pei92_a_over_ebv(np.array([1800.0, 2175.0, 2700.0]), "smc")
    assert smc[0] > smc[1] > smc[2]


def test_charlot_fall_parts_split_bins_at_10_myr():
    wave = np.array([5500.0])
    parts = attenuation.attenuation_parts(wave, EDGES, "charlot_fall", birth_cloud_ratio=1.5)
    young, old = parts.fractions
    np.testing.assert_allclose(young + old, 1.0)
    assert young[0] == 1.0 and young[-1] == 0.0
    trans = parts.transmission(0.4)[:, 0]
    assert trans[0] == pytest.approx(np.exp(-0.4 * 2.5)) and trans[-1] == pytest.approx(np.exp(-0.4))


def test_madau_igm_is_transparent_at_low_z_and_opaque_blueward_of_lyman_alpha_at_high_z():
    wave = np.array([4000.0, 5000.0, 6500.0, 9000.0])
    np.testing.assert_array_equal(igm.madau95_transmission(wave, 0.1), 1.0)
    t4 = igm.madau95_transmission(wave, 4.0)
    assert t4[0] < 0.05 and t4[1] < 0.6 and t4[2] == 1.0 and t4[3] == 1.0
    t6 = igm.madau95_transmission(wave, 6.0)
    assert np.all(t6[:2] > 0) and np.all(t6[:2] < 1e-5)  # never exactly zero


def test_agn_shapes_have_unit_luminosity_and_the_documented_slopes():
    wave = default_wavelength_grid(r_fine=300.0)
    fw = frequency_weights(wave)
    for shape in (agn.disk_shape(wave), agn.torus_face_on_shape(wave)):
        assert shape @ fw == pytest.approx(1.0, rel=1e-12)
    disk = agn.disk_shape(wave)
    i1, i2 = np.searchsorted(wave, [2000.0, 8000.0])
    slope = np.log(disk[i2] / disk[i1]) / np.log(wave[i2] / wave[i1])
    assert slope == pytest.approx(0.5, abs=0.01)  # f_nu ~ nu^-0.5 -> L_nu ~ lambda^0.5
    obscured = agn.torus_obscured_shape(wave, 40.0)
    assert np.all(obscured <= agn.torus_face_on_shape(wave) + 1e-300)
    np.testing.assert_allclose(agn.torus_covering(np.array([0.0, 45.0, 67.5, 90.0]), 45.0), [0, 0, 0.5, 1], atol=1e-12)


def test_distance_table_matches_astropy_and_floors_at_10_pc():
    table = DistanceTable("Planck18", z_max=8.0)
    z = np.array([1e-5, 0.003, 0.42, 2.5, 7.9])
    np.testing.assert_allclose(table.luminosity_distance_m(z), Planck18.luminosity_distance(z).to_value("m"), rtol=1e-6)
    assert table.luminosity_distance_m(np.array([0.0]))[0] == pytest.approx(10 * PARSEC_M)
    other = DistanceTable("WMAP9", z_max=3.0)
    assert other.luminosity_distance_m(np.array([1.0]))[0] == pytest.approx(WMAP9.luminosity_distance(1.0).to_value("m"), rel=1e-6)
    with pytest.raises(ValueError, match="cosmology"):
        DistanceTable("NotACosmology")


def test_bin_average_conserves_the_integral_of_a_piecewise_linear_function():
    x = np.linspace(0.0, 10.0, 101)
    y = np.sin(x) + 2.0
    edges = np.array([0.0, 0.35, 2.0, 7.77, 10.0])
    avg = bin_average(x, y, edges)
    assert np.sum(avg * np.diff(edges)) == pytest.approx(np.trapezoid(y, x), rel=1e-12)
