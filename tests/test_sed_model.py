"""Physics of the built-in SED model, on synthetic filters and (mostly) the synthetic SSP library so that it runs
without the optional BC03 data; tests/test_sed_bc03.py repeats the key checks on the real library."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.cosmology import Planck18

from hpcfit.models.filters import Filter, FilterSet
from hpcfit.models.sed.builtin import BuiltinSEDModel
from hpcfit.models.sed.constants import AB_ZERO_POINT_SI, C_LIGHT_AA_S, L_SUN_W
from hpcfit.models.sed.grid import default_wavelength_grid
from hpcfit.models.sed.ssp import SSPLibrary, default_age_edges

BOUNDS = {"redshift": (0.0, 4.5), "dust2": (0.0, 2.0), "agn_eb_v": (0.0, 0.5), "tage": (0.001, 13.8)}


def top_hat(name: str, lo: float, hi: float) -> Filter:
    wave = np.linspace(lo - 10.0, hi + 10.0, 200)
    return Filter(name, wave, ((wave >= lo) & (wave <= hi)).astype(float))


FILTERS = FilterSet((top_hat("blue", 4500.0, 5500.0), top_hat("red", 6500.0, 8000.0), top_hat("nir", 15000.0, 18000.0),
                     top_hat("mir", 1.0e5, 1.2e5)))


def model(**options) -> BuiltinSEDModel:
    options = {"ssp": "synthetic", "dlnz": 0.01, "wave_resolution": 300.0, "dtype": "float64", **options}
    return BuiltinSEDModel(FILTERS, bounds=options.pop("bounds", BOUNDS), **options)


@pytest.fixture(scope="module")
def default_model() -> BuiltinSEDModel:
    return model()


def draw(n: int, seed: int = 0, z_max: float = 4.5) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "redshift": rng.uniform(0.0, z_max, n), "mass": 10 ** rng.uniform(8, 12, n),
        "agn_mass": 10 ** rng.uniform(-7, np.log10(15), n), "agn_torus_mass": 10 ** rng.uniform(-7, np.log10(15), n),
        "dust2": rng.uniform(0, 2, n), "tage": rng.uniform(0.001, 13.8, n), "tau": 10 ** rng.uniform(-1, np.log10(30), n),
        "agn_eb_v": rng.uniform(0, 0.5, n), "inclination": rng.uniform(0, 90, n),
    }


def test_flux_proportional_to_mass(default_model):
    p = draw(40)
    heavier = dict(p, mass=p["mass"] * 7.5)
    np.testing.assert_allclose(default_model(heavier), 7.5 * default_model(p), rtol=1e-10)


def flat_library(lnu_value: float) -> SSPLibrary:
    wave = default_wavelength_grid(r_fine=300.0)
    edges = default_age_edges()
    return SSPLibrary(wave, edges, np.full((edges.size - 1, wave.size), lnu_value), np.ones(edges.size - 1), "flat")


def test_flux_scales_as_one_plus_z_over_dl_squared_for_a_flat_spectrum():
    # A flat L_nu has the same band average at every redshift, so only (1+z) / (4 pi D_L^2) can change the maggies.
    lnu = 1e21  # W/Hz per Msun formed
    flat = model(ssp_library=flat_library(lnu), igm=False, dust_emission="none")
    z = np.array([0.01, 0.1, 0.5, 1.0, 2.0, 4.0])
    p = {"redshift": z, "mass": np.full(z.size, 1e10), "tage": np.full(z.size, 3.0), "tau": np.full(z.size, 1.0)}
    got = flat(p)
    d_l = Planck18.luminosity_distance(z).to_value("m")
    expected = (1 + z) * 1e10 * lnu / (4 * np.pi * d_l**2) / AB_ZERO_POINT_SI
    np.testing.assert_allclose(got, np.repeat(expected[:, None], len(FILTERS), axis=1), rtol=1e-6)
    # and the z = 0 limit is the 10 pc absolute-magnitude convention, finite
    at_zero = flat({**{k: v[:1] for k, v in p.items()}, "redshift": np.zeros(1)})
    np.testing.assert_allclose(at_zero, 1e10 * lnu / (4 * np.pi * (3.0856775814913673e17) ** 2) / AB_ZERO_POINT_SI,
                               rtol=1e-12)


def test_known_power_law_through_top_hat_gives_analytic_ab_magnitude():
    # L_nu = A lambda^2 (f_nu ~ nu^-2): photon-counting band average over [a, b] of lambda_obs^2 is
    # (b^2 - a^2) / (2 ln(b / a)); the observed f_nu is (1+z) L_nu(lambda_obs / (1+z)) / (4 pi D_L^2).
    wave = default_wavelength_grid(r_fine=300.0)
    edges = default_age_edges()
    a_coef = 1e12  # W/Hz per Msun per AA^2
    lib = SSPLibrary(wave, edges, np.tile(a_coef * wave**2, (edges.size - 1, 1)), np.ones(edges.size - 1), "power law")
    m = model(ssp_library=lib, igm=False, dust_emission="none")
    z, mass = 0.7, 2e9
    p = {"redshift": np.array([z]), "mass": np.array([mass]), "tage": np.array([1.0]), "tau": np.array([1.0])}
    d_l = Planck18.luminosity_distance(z).to_value("m")
    lo, hi = 6500.0, 8000.0
    band_mean = (hi**2 - lo**2) / (2 * np.log(hi / lo)) / (1 + z) ** 2
    expected_mag = -2.5 * np.log10((1 + z) * mass * a_coef * band_mean / (4 * np.pi * d_l**2) / AB_ZERO_POINT_SI)
    got_mag = -2.5 * np.log10(m(p)[0, FILTERS.names.index("red")])
    assert abs(got_mag - expected_mag) < 2e-4


@pytest.mark.parametrize("emission", ["auto", "mbb"])
def test_dust_emission_luminosity_equals_absorbed_luminosity(default_model, emission):
    m = default_model if emission == "auto" else model(dust_emission=emission)
    p = draw(12, seed=3)
    rest = m.rest_frame_spectra(p)
    nu = C_LIGHT_AA_S / m.wave
    # integrate independently of the model's quadrature weights: trapezoid in nu on the same grid
    emitted = -np.trapezoid(rest["dust"], nu, axis=1)
    absorbed = -np.trapezoid(rest["stars_intrinsic"] - rest["stars"], nu, axis=1)
    assert np.all(absorbed > 0)
    np.testing.assert_allclose(emitted, absorbed, rtol=1e-9)
    # a few hundred Lsun per Msun at most: a sanity bound on the scale of the absorbed energy
    assert np.all(absorbed / p["mass"] < 1e3 * L_SUN_W)


def test_dust_emission_in_fast_path_matches_the_exact_spectrum():
    # the model's default node spacing (the fixture's coarse dlnz = 0.01 is for speed, not accuracy)
    default_model = model(dlnz=0.005)
    p = draw(8, seed=4)
    fast = default_model.components(p)["dust"]
    rest = default_model.rest_frame_spectra(p)
    scale = (1 + p["redshift"]) / (4 * np.pi * Planck18.luminosity_distance(p["redshift"]).to_value("m") ** 2
                                   * AB_ZERO_POINT_SI)
    for b in range(8):
        observed = default_model.wave * (1 + p["redshift"][b])
        exact = [rest["dust"][b] * scale[b] @ f.weights(observed) for f in FILTERS]
        np.testing.assert_allclose(fast[b, -1], exact[-1], rtol=5e-3)  # the mid-IR band sees the dust


def test_agn_flux_rises_with_agn_mass(default_model):
    base = {k: v[:1].repeat(5) for k, v in draw(1, seed=5).items()}
    base["agn_mass"] = np.geomspace(1e-7, 15, 5)
    flux = default_model(base)
    assert np.all(np.diff(flux, axis=0) > 0)
    disk = default_model.components(base)["agn_disk"]
    per_unit = disk / base["agn_mass"][:, None]
    np.testing.assert_allclose(per_unit, np.broadcast_to(per_unit[0], per_unit.shape), rtol=1e-10)


def test_torus_depends_on_inclination_as_documented(default_model):
    n = 7
    p = {"redshift": np.full(n, 0.05), "mass": np.full(n, 1e10), "tage": np.full(n, 5.0), "tau": np.full(n, 1.0),
         "agn_torus_mass": np.full(n, 1.0), "inclination": np.array([0, 20, 44, 50, 60, 75, 90.0])}
    torus = default_model.components(p)["agn_torus"]
    # face-on up to 90 - half_width (45 deg): unchanged; then monotonically fainter towards edge-on
    np.testing.assert_allclose(torus[1], torus[0], rtol=1e-12)
    np.testing.assert_allclose(torus[2], torus[0], rtol=1e-12)
    assert np.all(np.diff(torus[2:], axis=0) < 0)
    # the covering law: L(i) = L_face (1 - c) + L_obscured c, with c(60 deg) = sin^2(90 deg * 15 / 45) = 0.25
    edge = torus[-1]
    np.testing.assert_allclose(torus[4], 0.75 * torus[0] + 0.25 * edge, rtol=1e-10)
    # suppression is strongest at short wavelengths (hot dust seen through the torus)
    assert edge[2] / torus[0][2] < edge[3] / torus[0][3] < 1


def test_igm_dims_blue_flux_at_z4_but_not_at_z01():
    with_igm, without = model(), model(igm=False)
    for z, expect_dimmed in ((4.0, True), (0.1, False)):
        p = {k: v[:1] for k, v in draw(1, seed=6).items()}
        p["redshift"] = np.array([z])
        ratio = with_igm(p)[0] / without(p)[0]
        if expect_dimmed:
            assert ratio[0] < 0.5  # 4500-5500 A observed = 900-1100 A rest: Lyman series + continuum
            np.testing.assert_allclose(ratio[1:], 1.0, rtol=1e-12)  # red of Lyman-alpha (6080 A): untouched
        else:
            np.testing.assert_allclose(ratio, 1.0, rtol=1e-12)


def test_batch_equals_one_at_a_time(default_model):
    p = draw(25, seed=7)
    batch = default_model(p)
    single = np.concatenate([default_model({k: v[i : i + 1] for k, v in p.items()}) for i in range(25)])
    np.testing.assert_allclose(batch, single, rtol=1e-12)
    # the (B, D) array form in param_names order gives the same result
    array = np.stack([p[name] for name in default_model.param_names], axis=1)
    np.testing.assert_array_equal(default_model(array), batch)


def test_float32_tables_agree_with_float64(default_model):
    p = draw(200, seed=8)
    np.testing.assert_allclose(model(dtype="float32")(p), default_model(p), rtol=1e-5)


def test_fast_path_matches_exact_spectra_through_filters(default_model):
    p = draw(30, seed=9)
    fast, exact = default_model(p), default_model.photometry_exact(p)
    err = np.abs(fast / exact - 1)
    assert np.median(err) < 1e-3 and err.max() < 2e-2


def test_outputs_finite_and_positive_over_the_hypercube(default_model):
    p = draw(3000, seed=10)
    # include the corners of the hypercube
    for name, (lo, hi) in {"redshift": (0.0, 4.5), "dust2": (0.0, 2.0), "tage": (0.001, 13.8)}.items():
        p[name][:2] = (lo, hi)
    out = default_model(p)
    assert out.shape == (3000, len(FILTERS))
    assert np.all(np.isfinite(out)) and np.all(out > 0)


def test_charlot_fall_dims_young_populations_more():
    cf = model(attenuation="charlot_fall", birth_cloud_ratio=2.0)
    p = {"redshift": np.full(2, 0.1), "mass": np.full(2, 1e10), "tau": np.full(2, 1.0), "dust2": np.full(2, 0.5),
         "tage": np.array([0.005, 5.0])}
    no_dust = dict(p, dust2=np.zeros(2))
    dimming = cf.components(p)["stars"] / cf.components(no_dust)["stars"]
    assert np.all(dimming[0] < dimming[1])  # 5 Myr: in birth clouds, extra 2 x dust2 of attenuation


def test_parameters_outside_the_built_bounds_are_rejected(default_model):
    p = draw(3, seed=11)
    p["redshift"][0] = 5.0
    with pytest.raises(ValueError, match="redshift"):
        default_model(p)
    with pytest.raises(KeyError, match="tage"):
        default_model({k: v for k, v in draw(2).items() if k != "tage"})


def test_surviving_mass_definition_brightens_by_the_returned_fraction():
    formed, surviving = model(), model(mass_definition="surviving")
    p = draw(5, seed=12)
    ratio = surviving.components(p)["stars"] / formed.components(p)["stars"]
    assert np.all(ratio > 1.0)  # the same surviving mass needs more mass formed
    np.testing.assert_allclose(ratio, ratio[:, :1].repeat(len(FILTERS), axis=1), rtol=1e-9)


def test_large_batches_are_sliced_without_changing_results(default_model):
    p = draw(9000, seed=13)  # above the model's internal slice of 8192 rows
    whole = default_model(p)
    halves = np.concatenate([default_model({k: v[:4500] for k, v in p.items()}),
                             default_model({k: v[4500:] for k, v in p.items()})])
    np.testing.assert_allclose(whole, halves, rtol=1e-12)


def test_clip_tage_to_universe_uses_the_cosmic_age():
    clipped = model(clip_tage_to_universe=True)
    z = 3.0
    age = Planck18.age(z).to_value("Gyr")
    base = {"redshift": [z], "mass": [1e10], "tau": [1.0], "dust2": [0.2]}
    np.testing.assert_allclose(clipped({**base, "tage": [13.0]}), clipped({**base, "tage": [age]}), rtol=1e-4)
    assert not np.allclose(model()({**base, "tage": [13.0]}), model()({**base, "tage": [age]}), rtol=1e-3, atol=0)
