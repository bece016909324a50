"""Tests of hpcfit.models.filters: conventions, AB zero point, matrix projection, redshifting, file loading."""

from __future__ import annotations

import numpy as np
import pytest

from hpcfit.models import filters as F
from hpcfit.models.blackbody import planck_nu

IR_NAMES = ("MIPS1", "PACS_blue", "PACS_green", "PACS_red", "PSW", "PMW", "PLW")
IR_CONVENTIONS = {"MIPS1": "energy", "PACS_blue": "energy", "PACS_green": "photon", "PACS_red": "photon",
                  "PSW": "energy", "PMW": "energy", "PLW": "energy"}


def box_filter(name: str, lo: float, hi: float, convention: str = "photon", n: int = 200) -> F.Filter:
    """A tabulated top-hat with linear ramps, independent of any package."""
    wave = np.linspace(lo, hi, n)
    trans = np.clip(np.minimum(wave - lo, hi - wave) / (0.1 * (hi - lo)), 0.0, 1.0)
    return F.Filter(name, wave, trans, convention=convention)


def synthetic_set() -> F.FilterSet:
    return F.FilterSet((box_filter("a", 4000, 5500), box_filter("b", 6000, 8000, "energy"),
                        box_filter("c", 11000, 16000)))


def direct_average(filt: F.Filter, grid: np.ndarray, fnu: np.ndarray, n_fine: int = 200001) -> float:
    """Brute-force integral on a very fine grid: int f T_ph dlam/lam / int T_ph dlam/lam."""
    fine = np.linspace(filt.wavelength[0], filt.wavelength[-1], n_fine)
    t = np.interp(fine, filt.wavelength, filt.transmission)
    if filt.convention == "energy":
        t = t / fine
    f = np.interp(fine, grid, fnu)
    return np.trapezoid(f * t / fine, fine) / np.trapezoid(t / fine, fine)


def test_flat_3631_jy_is_ab_zero_in_every_band():
    fs = synthetic_set()
    grid = np.geomspace(1000, 30000, 3000)
    proj = fs.projector(grid)
    flux = proj(np.full((3, grid.size), F.AB_ZEROPOINT_JY))
    np.testing.assert_allclose(F.fnu_to_maggies(flux, "Jy"), 1.0, rtol=1e-12)
    np.testing.assert_allclose(F.ab_magnitude(flux, "Jy"), 0.0, atol=1e-12)
    np.testing.assert_allclose(F.ab_magnitude(flux * 1e3, "mJy"), 0.0, atol=1e-12)
    np.testing.assert_allclose(F.ab_to_maggies(F.maggies_to_ab(np.array([0.5, 2.0]))), [0.5, 2.0])


def test_package_filter_sets_give_ab_zero_for_flat_spectrum():
    if not F._sedpy_names():
        pytest.skip("astro-sedpy (optional) not installed")
    fs = F.load_filter_set("des")
    assert fs.names == list(F.FILTER_SETS["des"])
    grid = np.geomspace(1000, 40000, 4000)  # the VISTA curves keep their weak red leaks out to 3.5 um
    maggies = F.fnu_to_maggies(fs.projector(grid)(np.full(grid.size, 3631.0)))
    np.testing.assert_allclose(maggies, 1.0, rtol=1e-12)
    assert np.all(np.diff(fs.pivot_wavelengths) > 0)
    assert 4700 < fs.pivot_wavelengths[0] < 4900  # DECam g


def test_speclite_euclid_set():
    if not F._speclite_names():
        pytest.skip("speclite (optional) not installed")
    fs = F.load_filter_set("euclid")
    assert len(fs) == 4 and 6000 < fs["Euclid-VIS"].pivot_wavelength < 8000


def test_photon_and_energy_conventions_differ_in_the_expected_direction():
    photon = box_filter("p", 5000, 9000, "photon")
    energy = photon.with_convention("energy")
    grid = np.geomspace(3000, 12000, 2000)
    nu = 1.0 / grid
    blue = (nu / nu.mean()) ** 2  # f_nu rising to high frequency: energy weighting favours high nu
    red = (nu / nu.mean()) ** -2
    assert energy.band_average(grid, blue) > photon.band_average(grid, blue)
    assert energy.band_average(grid, red) < photon.band_average(grid, red)
    flat = np.ones_like(grid)
    assert energy.band_average(grid, flat) == pytest.approx(photon.band_average(grid, flat), rel=1e-12)


def test_matrix_projection_equals_direct_integral():
    fs = synthetic_set()
    rng = np.random.default_rng(1)
    grid = np.sort(rng.uniform(2000, 20000, 800))  # irregular, coarser than the filters in places
    lam = grid[np.newaxis, :]
    spectra = 1.0 + 0.5 * np.sin(lam / (300.0 + 200.0 * rng.random((4, 1)))) + (lam / 1e4) ** rng.uniform(-2, 2, (4, 1))
    got = fs.projector(grid)(spectra)
    expected = np.array([[direct_average(f, grid, s) for f in fs] for s in spectra])
    np.testing.assert_allclose(got, expected, rtol=2e-6)
    # the sparse row range and the full matrix agree
    proj = fs.projector(grid)
    np.testing.assert_allclose(spectra @ proj.full_weights, got, rtol=1e-13)


def test_projector_batch_shapes_and_float32():
    fs = synthetic_set()
    grid = np.geomspace(1000, 30000, 500)
    spectra = np.random.default_rng(2).random((2, 5, grid.size))
    proj64 = fs.projector(grid)
    assert proj64(spectra).shape == (2, 5, 3)
    proj32 = fs.projector(grid, dtype=np.float32)
    out32 = proj32(spectra.astype(np.float32))
    assert out32.dtype == np.float32
    np.testing.assert_allclose(out32, proj64(spectra), rtol=1e-5)


def test_filter_beyond_grid_raises_or_counts_zero():
    filt = box_filter("wide", 900, 5000)
    grid = np.linspace(1000, 6000, 300)
    with pytest.raises(ValueError, match="extends beyond"):
        filt.weights(grid)
    weights = filt.weights(grid, outside="zero")
    assert 0.9 < weights.sum() < 1.0


def test_redshifting_moves_a_break_through_a_band():
    rest = np.geomspace(500, 40000, 3000)
    spectrum = np.where(rest > 4000, 1.0, 0.1)[np.newaxis, :]  # a 4000 A break in f_nu
    fs = F.FilterSet((box_filter("r", 5500, 7000),))
    proj = fs.redshift_projector(rest, 0.0, 2.0)
    z = np.array([0.0, 0.3, 0.5, 0.6, 1.0, 2.0])
    flux = proj(np.repeat(spectrum, z.size, axis=0), z)[:, 0]
    # observed break at 4000 (1+z): below the band -> bright, inside -> partial, above the band -> faint
    assert flux[0] == pytest.approx(1.0, rel=1e-9) and flux[1] == pytest.approx(1.0, rel=1e-9)
    assert 0.1 < flux[3] < 1.0
    assert flux[4] == pytest.approx(0.1, rel=1e-9) and flux[5] == pytest.approx(0.1, rel=1e-9)
    assert np.all(np.diff(flux) <= 1e-12)


def test_redshift_projector_matches_exact_and_direct_shift():
    fs = synthetic_set()
    rest = np.geomspace(300, 40000, 2500)
    rng = np.random.default_rng(3)
    n = 64
    z = np.sort(rng.uniform(0.0, 1.5, n))
    # smooth spectra with a break; observed-frame values per row
    slope = rng.uniform(-1, 1, (n, 1))
    spectra = (rest / 5000.0) ** slope * np.where(rest > 3650, 1.0, 0.5)
    proj = fs.redshift_projector(rest, 0.0, 1.5, dlnz=0.002)
    fast = proj(spectra, z)
    exact = proj.exact(spectra, z)
    np.testing.assert_allclose(fast, exact, rtol=2e-3)
    # exact weights equal a plain projector on the stretched grid
    row = 7
    direct = fs.projector(rest * (1 + z[row]))(spectra[row])
    np.testing.assert_allclose(exact[row], direct, rtol=1e-12)
    # at a node the interpolation is exact
    node_z = proj.z_nodes[:3]
    np.testing.assert_allclose(proj(spectra[:3], node_z), proj.exact(spectra[:3], node_z), rtol=1e-12)
    with pytest.raises(ValueError, match="outside"):
        proj(spectra[:1], np.array([1.6]))


def test_flat_spectrum_is_redshift_invariant():
    fs = synthetic_set()
    rest = np.geomspace(300, 40000, 1000)
    z = np.linspace(0, 1.5, 11)
    flux = fs.redshift_projector(rest, 0.0, 1.5)(np.full((z.size, rest.size), 3631.0), z)
    np.testing.assert_allclose(flux, 3631.0, rtol=1e-12)


def test_pivot_wavelength_of_top_hat():
    wave = np.linspace(5000, 6000, 1001)
    filt = F.Filter("hat", wave, np.ones_like(wave))
    expected = np.sqrt((6000**2 - 5000**2) / 2 / np.log(6000 / 5000))
    assert filt.pivot_wavelength == pytest.approx(expected, rel=1e-6)
    assert filt.effective_wavelength == pytest.approx(5500.0, rel=1e-9)


@pytest.mark.parametrize("name", IR_NAMES)
def test_ir_files_load_with_header_convention(shared_path, name):
    path = shared_path(f"filters_ir/{name}.dat")
    filt = F.read_filter_file(path)
    assert filt.name == name
    assert filt.convention == IR_CONVENTIONS[name]
    assert filt.nominal_wavelength is not None and filt.reference is not None
    # pivot within 10 % of the nominal wavelength
    assert abs(filt.pivot_wavelength / filt.nominal_wavelength - 1) < 0.1
    assert F.load_filter(name).convention == filt.convention  # name lookup in the shared directory


def test_quoted_flux_reproduces_the_reference_spectrum(shared_path):
    shared_path("filters_ir/PSW.dat")
    fs = F.load_filter_set("dustpedia_ir")
    grid = np.geomspace(1e5, 1e7, 3000)
    proj = fs.projector(grid, quoted=True)
    for i, filt in enumerate(fs):
        reference = filt.reference.fnu(grid)
        quoted = proj(reference)[i]
        assert quoted == pytest.approx(filt.reference.fnu(np.array([filt.nominal_wavelength]))[0], rel=1e-12)
    # a nu^-1 spectrum quoted in SPIRE 250 equals its value at 250 um; the plain band average does not
    nu_minus_one = grid / 2.5e6
    i = fs.names.index("PSW")
    assert proj(nu_minus_one)[i] == pytest.approx(1.0, rel=1e-12)
    assert abs(fs.projector(grid)(nu_minus_one)[i] - 1.0) > 1e-3
    # MIPS: a 10^4 K blackbody is reproduced, a cold modified blackbody gets the expected colour correction sign
    mips = fs["MIPS1"]
    hot = planck_nu(grid, 1e4)
    at_nominal = planck_nu(np.array([mips.nominal_wavelength]), 1e4)[0]
    assert mips.quoted_flux(grid, hot) == pytest.approx(at_nominal, rel=1e-12)


def test_plain_two_column_file(tmp_path):
    path = tmp_path / "box.txt"
    wave = np.linspace(4000, 5000, 50)
    np.savetxt(path, np.column_stack([wave / 1e4, np.ones_like(wave)]))
    filt = F.read_filter_file(path, wavelength_unit="um")
    assert filt.name == "box" and filt.convention == "photon"
    np.testing.assert_allclose(filt.wavelength[[0, -1]], [4000, 5000])
    assert F.load_filter(str(path), convention="energy").convention == "energy"


def test_cigale_header_without_space(tmp_path):
    path = tmp_path / "custom.dat"
    path.write_text("#MYBAND\n#energy\n#a test band\n1000 0\n2000 1\n3000 0\n")
    filt = F.read_filter_file(path)
    assert (filt.name, filt.convention) == ("MYBAND", "energy")


def test_unknown_filter_lists_allowed_names():
    with pytest.raises(F.UnknownFilterError, match="unknown filter 'no_such_band_xyz'") as info:
        F.load_filter_set(["no_such_band_xyz"])
    assert info.value.name == "no_such_band_xyz"
    assert "des" in info.value.allowed and "euclid" in info.value.allowed
    assert "allowed:" in str(info.value)
    with pytest.raises(F.UnknownFilterError, match="unknown filter 'speclite:no_such_band'"):
        F.load_filter("speclite:no_such_band")
    with pytest.raises(FileNotFoundError, match="filter file not found: missing_dir/absent.dat"):
        F.load_filter("missing_dir/absent.dat")


def test_duplicate_names_rejected():
    with pytest.raises(ValueError, match="duplicated"):
        F.FilterSet((box_filter("x", 1, 2), box_filter("x", 3, 4)))


def test_template_table_combines_linearly():
    fs = synthetic_set()
    rest = np.geomspace(300, 40000, 1500)
    templates = np.stack([(rest / 5000.0) ** a for a in (-1.0, 0.0, 1.5)])
    proj = fs.redshift_projector(rest, 0.2, 1.2, dlnz=0.004)
    table = proj.template_table(templates)
    assert table.shape == (proj.z_nodes.size, 3, 3)
    rng = np.random.default_rng(4)
    z = rng.uniform(0.2, 1.2, 20)
    coefficients = rng.random((20, 3))
    via_table = np.einsum("bt,btf->bf", coefficients, proj.interpolate_table(table, z))
    via_spectra = proj(coefficients @ templates, z)
    np.testing.assert_allclose(via_table, via_spectra, rtol=1e-12)


def _dl07_header_band_values(path) -> dict[float, float]:
    """j_nu(band) of the SST-MIPS rows of a DL07 file header, keyed by wavelength (um)."""
    values = {}
    for line in open(path):
        parts = line.split()
        if len(parts) == 4 and parts[3] == "SST-MIPS":
            values[float(parts[0])] = float(parts[2])
    return values


def test_mips_quoted_flux_matches_draine_li_band_values(shared_path):
    """DL07 tabulate MIPS band fluxes of their own spectra in the MIPS convention: an independent check."""
    path = shared_path("dl07/U1.00/U1.00_1.00_MW3.1_00.txt")
    shared_path("filters_ir/MIPS1.dat")
    from hpcfit.models.dl07 import parse_dl07_file

    template = parse_dl07_file(path)
    bands = _dl07_header_band_values(path)
    grid = template.wavelength_um * 1e4
    mips24 = F.load_filter("MIPS1")
    assert mips24.quoted_flux(grid, template.jnu) == pytest.approx(bands[23.68], rel=0.01)
    if F._sedpy_names():
        for name, wavelength in (("spitzer_mips_70", 71.42), ("spitzer_mips_160", 155.9)):
            assert F.load_filter(name).quoted_flux(grid, template.jnu) == pytest.approx(bands[wavelength], rel=0.01)


def test_a_name_looks_on_disk_only_for_its_own_shared_curve(shared_path, monkeypatch):
    """Start-up cost: resolving a package filter checks no shared file, a shared far-IR name only its own."""
    shared_path("filters_ir/PSW.dat")
    looked: list[str] = []
    original = F.shared_file
    monkeypatch.setattr(F, "shared_file", lambda relative: looked.append(relative) or original(relative))
    F._load_shared_ir.cache_clear()
    assert F.load_filter("decam_g").name == "decam_g" and looked == []
    assert F.load_filter("PSW").name == "PSW"
    assert looked == [f"{F.IR_SHARED_DIR}/PSW.dat"] * 2  # the lookup, then the (cached) load
