"""Tests of hpcfit.models.blackbody: Planck limits, a known value, and the modified blackbody per dust mass."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from hpcfit.models import blackbody as bb


def frequency(wavelength_angstrom):
    return bb.C_LIGHT / (np.asarray(wavelength_angstrom) * 1e-10)


def test_rayleigh_jeans_limit():
    wave = np.array([1e9, 1e10])  # 10 cm, 1 m: h nu << k T at 20 K
    nu = frequency(wave)
    rj = 2 * nu**2 * bb.K_BOLTZMANN * 20.0 / bb.C_LIGHT**2
    x = bb.H_PLANCK * nu / (bb.K_BOLTZMANN * 20.0)
    value = bb.planck_nu(wave, 20.0)
    assert np.all(np.abs(value / rj - 1) < x)  # tends to Rayleigh-Jeans as x -> 0
    # and keeps full precision there: series x / (e^x - 1) = 1 - x/2 + x^2/12 - x^4/720
    np.testing.assert_allclose(value, rj * (1 - x / 2 + x**2 / 12 - x**4 / 720), rtol=1e-12)


def test_wien_limit_without_overflow():
    wave = np.array([1000.0, 3000.0])  # UV at 20 K: h nu / k T ~ 700 and 240
    nu = frequency(wave)
    x = bb.H_PLANCK * nu / (bb.K_BOLTZMANN * 20.0)
    wien = 2 * bb.H_PLANCK * nu**3 / bb.C_LIGHT**2 * np.exp(-x)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        value = bb.planck_nu(wave, 20.0)
    np.testing.assert_allclose(value, wien, rtol=1e-12)
    assert bb.planck_nu(np.array([10.0]), 10.0)[0] == 0.0  # underflows cleanly, no inf/nan


@pytest.mark.filterwarnings("ignore:overflow encountered")  # inside astropy's own Wien-tail evaluation
def test_known_value_against_astropy():
    from astropy import units as u
    from astropy.modeling.models import BlackBody

    wave = np.geomspace(1e4, 1e7, 7)
    for temperature in (15.0, 40.0, 5800.0):
        expected = BlackBody(temperature=temperature * u.K)(wave * u.AA).to_value(u.W / (u.m**2 * u.Hz * u.sr))
        np.testing.assert_allclose(bb.planck_nu(wave, temperature), expected, rtol=1e-10)


def test_modified_blackbody_at_reference_wavelength():
    # at lambda0, kappa = kappa0 whatever beta: L_nu = 4 pi kappa0 B_nu(T) M_sun
    lam0 = np.array([350e4])
    expected = 4 * np.pi * 0.192 * bb.planck_nu(lam0, 25.0) * bb.M_SUN_KG
    for beta in (1.0, 1.5, 2.0):
        np.testing.assert_allclose(bb.modified_blackbody_lnu(lam0, 25.0, beta), expected, rtol=1e-13)
    custom = bb.modified_blackbody_lnu(np.array([250e4]), 25.0, 2.0, kappa0=0.5, reference_wavelength_um=250.0)
    np.testing.assert_allclose(custom, 4 * np.pi * 0.5 * bb.planck_nu(np.array([250e4]), 25.0) * bb.M_SUN_KG)


def test_opacity_slope_in_the_rayleigh_jeans_limit():
    wave = np.array([250e4, 500e4])
    lnu = bb.modified_blackbody_lnu(wave, 1e3, 2.0)  # hot: both points near Rayleigh-Jeans
    # kappa ~ nu^beta and B ~ nu^2 (RJ): L_nu ~ nu^(2+beta) -> ratio 2^4 between 250 and 500 um
    assert lnu[0] / lnu[1] == pytest.approx(16.0, rel=0.05)


def test_modified_blackbody_against_planck_by_hand():
    """L_nu per solar mass of dust = 4 pi kappa0 (nu/nu0)^beta B_nu(T) M_sun, with B_nu written out from
    astropy's constants (plain exp, away from overflow) and the solar mass from astropy: an independent value."""
    from astropy import constants as const
    from astropy import units as u

    h, k, c = const.h.si.value, const.k_B.si.value, const.c.si.value
    wave = np.geomspace(8e4, 3e7, 25)  # 8 um .. 3 mm
    nu = c / (wave * 1e-10)
    nu0 = c / (350.0 * u.um).to_value(u.m)
    for temperature, beta in ((12.0, 1.5), (25.0, 2.0), (60.0, 1.8)):
        planck = 2 * h * nu**3 / c**2 / (np.exp(h * nu / (k * temperature)) - 1)
        expected = 4 * np.pi * 0.192 * (nu / nu0) ** beta * planck * const.M_sun.to_value(u.kg)
        np.testing.assert_allclose(bb.modified_blackbody_lnu(wave, temperature, beta), expected, rtol=1e-9)


def test_total_luminosity_scales_as_t_to_the_4_plus_beta():
    wave = np.geomspace(1e4, 1e8, 20000)
    nu = frequency(wave)[::-1]

    def total(t, beta):
        return np.trapezoid(bb.modified_blackbody_lnu(wave, t, beta)[..., ::-1], nu, axis=-1)

    for beta in (1.5, 2.0):
        ratio = total(30.0, beta) / total(15.0, beta)
        assert ratio == pytest.approx(2.0 ** (4 + beta), rel=1e-3)


def test_vectorised_over_parameters():
    wave = np.geomspace(1e5, 1e7, 50)
    temperature = np.array([[10.0], [20.0], [40.0]])
    beta = np.array([1.0, 1.5, 2.0, 2.5])
    out = bb.modified_blackbody_lnu(wave, temperature, beta)
    assert out.shape == (3, 4, 50)
    np.testing.assert_allclose(out[2, 1], bb.modified_blackbody_lnu(wave, 40.0, 1.5), rtol=1e-14)
    # peak of nu L_nu moves to shorter wavelength for hotter dust
    peaks = wave[np.argmax(out[:, 2] / wave, axis=-1)]
    assert np.all(np.diff(peaks) < 0)


def test_invalid_inputs():
    with pytest.raises(ValueError, match="temperature must be positive"):
        bb.planck_nu(np.array([1e4]), 0.0)
    with pytest.raises(ValueError, match="wavelengths must be positive"):
        bb.planck_nu(np.array([-1.0]), 10.0)
