"""User model grids for the gridfit tests (``grid.model: plugins.toy_grid:<name>``): callables that take a parameter
table and the bands' filters and return band luminosities per unit normalisation."""

from __future__ import annotations

import astropy.units as u
import numpy as np

HC_OVER_K_UM_K = 14387.77  # h c / k in micron kelvin


def greybody(params, bands):
    """A modified-blackbody-like shape at the bands' wavelengths, as a Quantity in erg/s/Hz (converted by hpcfit),
    with the luminosity per unit normalisation (L_sun) as the second element."""
    lam = np.array([b.quote_wavelength for b in bands]) / 1e4  # micron
    t = np.asarray(params["temperature"], dtype=float)[:, None]
    beta = np.asarray(params["beta"], dtype=float)[:, None]
    shape = (lam / 100.0) ** (-3.0 - beta) / np.expm1(HC_OVER_K_UM_K / (lam * t))
    return 1e27 * shape * u.erg / u.s / u.Hz, (t[:, 0] / 20.0) ** 6 * u.solLum


def plain(params, bands):
    """Plain numbers (in the config's luminosity_unit), no luminosity."""
    return greybody(params, bands)[0].to_value(u.W / u.Hz)


def wrong_shape(params, bands):
    return np.ones((len(params), len(bands) + 1))


def not_finite(params, bands):
    out = np.ones((len(params), len(bands)))
    out[len(params) - 1, 0] = np.nan
    return out


NOT_CALLABLE = 3
