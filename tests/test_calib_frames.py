"""Planning raw CCD frames from headers (classification, nights, corrupt files, master selection) and reading row
bands of them (BZERO, trim, overscan), on a synthetic night and on the five real M13 frames."""

from __future__ import annotations

import datetime as dt
import itertools
import os
import shutil

import numpy as np
import pytest
from astropy.io import fits

from hpcfit.calibrate.kernels import frames as F
from hpcfit.calibrate.kernels import reading as R
from hpcfit.calibrate.kernels.synthetic import make_night, write_raw_frame

M13 = [f"m13_raw/M13_blue_000{i}.fits" for i in range(1, 6)]


@pytest.fixture(scope="module")
def night(tmp_path_factory):
    return make_night(tmp_path_factory.mktemp("night"), shape=(24, 32), n_bias=3, n_dark=3, n_flat=3, n_science=3,
                      filters=("B", "V"), n_stars=3, cosmic_rays_per_frame=2)


def _copy_tree(night, tmp_path):
    dest = tmp_path / "night"
    shutil.copytree(night.root, dest)
    return dest


# ------------------------------------------------------------------------------------------------- classification
def test_synthetic_night_is_classified_by_header_and_by_folder(night):
    paths = F.find_frames([night.root])
    assert len(paths) == sum(len(v) for v in night.paths.values())
    for classify_by in ("header", "folder"):
        frames = F.scan_frames(paths, F.ScanOptions(classify_by=classify_by))
        assert all(f.ok and not f.notes for f in frames), [(f.name, f.problems, f.notes) for f in frames]
        by_kind = {k: sorted(os.path.abspath(f.path) for f in frames if f.kind == k) for k in night.paths}
        for kind, expected in night.paths.items():
            assert by_kind[kind] == sorted(os.path.abspath(p) for p in expected)


@pytest.mark.parametrize(
    "imagetyp, kind",
    [("Bias Frame", "bias"), ("BIAS", "bias"), ("zero", "bias"), ("Dark Frame", "dark"), ("DARK", "dark"),
     ("Flat Field", "flat"), ("FLAT", "flat"), ("Sky Flat", "flat"), ("flat_field", "flat"),
     ("Light Frame", "science"), ("LIGHT", "science"), ("object", "science"), ("science", "science"),
     ("Tricolor Image", None), (None, None)],
)
def test_imagetyp_spellings(imagetyp, kind):
    assert F.header_kind(imagetyp) == kind


def test_imagetyp_mapping_is_overridable_and_validated():
    options = F.ScanOptions(imagetyp_map={"Tricolor Image": "science", "zero": "dark"})
    assert F.header_kind("Tricolor Image", options) == "science"
    assert F.header_kind("ZERO", options) == "dark"  # overrides the default meaning
    assert F.header_kind("Bias Frame", options) == "bias"  # defaults kept
    with pytest.raises(ValueError, match="'arc' is not a valid Kind"):
        F.ScanOptions(imagetyp_map={"Lamp": "arc"})
    with pytest.raises(ValueError, match="classify_by must be 'header' or 'folder', not 'filename'"):
        F.ScanOptions(classify_by="filename")


def test_misfoldered_dark_inside_flats_is_caught_by_its_header(night, tmp_path):
    root = _copy_tree(night, tmp_path)
    dark = next(p for p in (root / "Darks").iterdir())
    moved = root / "Flats" / dark.name
    shutil.move(dark, moved)
    by_header = F.read_frame(moved)
    assert by_header.kind == "dark" and by_header.folder_kind == "flat" and by_header.ok
    assert any("says dark" in n and "says flat" in n for n in by_header.notes)
    by_folder = F.read_frame(moved, F.ScanOptions(classify_by="folder"))
    assert by_folder.kind == "flat" and any("says dark" in n for n in by_folder.notes)


def test_folder_classification_when_the_header_has_no_type(tmp_path):
    path = write_raw_frame(tmp_path / "Biases" / "b.fits", np.zeros((4, 5)), EXPTIME=0.0,
                           **{"DATE-OBS": "2024-01-01T20:00:00"})
    frame = F.read_frame(path)
    assert frame.kind == "bias" and frame.ok and any("by folder" in n for n in frame.notes)
    unknown = F.read_frame(write_raw_frame(tmp_path / "misc" / "x.fits", np.zeros((4, 5)), IMAGETYP="Tricolor"))
    assert unknown.kind == "unknown" and not unknown.ok and "unclassifiable" in unknown.problems[0]


# ---------------------------------------------------------------------------------------------------------- nights
def test_night_spans_midnight(night):
    frames = F.scan_frames(F.find_frames(night.root))
    science = [f for f in frames if f.kind == "science"]
    dates = {f.date_obs.date() for f in science}
    assert len(dates) == 2, "the synthetic science run should cross midnight UTC"
    assert {f.night for f in frames} == {dt.date(2024, 3, 10)}
    groups = F.group_frames(frames)
    assert sorted((k.kind, k.filter) for k in groups) == [
        ("bias", None), ("dark", None), ("flat", "B"), ("flat", "V"), ("science", "B"), ("science", "V")]


@pytest.mark.parametrize("stamp, offset, night", [
    ("2024-03-11T09:59:59", 10, dt.date(2024, 3, 10)),
    ("2024-03-11T10:00:00", 10, dt.date(2024, 3, 11)),
    ("2024-03-11T01:00:00", 0, dt.date(2024, 3, 11)),
    ("2024-03-10T23:00:00", -3, dt.date(2024, 3, 11)),
])
def test_night_offset(stamp, offset, night):
    assert F.night_of(dt.datetime.fromisoformat(stamp), offset) == night


def test_date_obs_forms():
    h = fits.Header({"DATE-OBS": "2013-05-05T04:09:39.25Z"})
    assert F.parse_date_obs(h) == dt.datetime(2013, 5, 5, 4, 9, 39, 250000)
    h = fits.Header({"DATE-OBS": "2013-05-05", "TIME-OBS": "04:09:39"})
    assert F.parse_date_obs(h) == dt.datetime(2013, 5, 5, 4, 9, 39)
    h = fits.Header({"DATE-OBS": "05/05/93", "UT": "22:00:00"})
    assert F.parse_date_obs(h) == dt.datetime(1993, 5, 5, 22, 0, 0)
    assert F.parse_date_obs(fits.Header({"DATE-OBS": "yesterday"})) is None
    assert F.parse_date_obs(fits.Header()) is None


# ---------------------------------------------------------------------------------------------------- bad frames
def test_corrupt_and_truncated_files_are_reported_not_raised(night, tmp_path):
    good = night.paths["science"][0]
    truncated = tmp_path / "ScienceImages" / "truncated.fits"
    truncated.parent.mkdir()
    truncated.write_bytes(good.read_bytes()[: 2880 + 100])
    garbage = tmp_path / "ScienceImages" / "garbage.fits"
    garbage.write_bytes(b"this is not FITS" * 300)
    empty = tmp_path / "ScienceImages" / "empty.fits"
    empty.write_bytes(b"")
    no_end = tmp_path / "ScienceImages" / "noend.fits"
    no_end.write_bytes(good.read_bytes()[:2880].replace(b"END     ", b"XEND    "))
    frames = {f.name: f for f in F.scan_frames([truncated, garbage, empty, no_end, good])}
    assert frames[good.name].ok
    assert "truncated" in frames["truncated.fits"].problems[0]
    assert frames["truncated.fits"].kind == "science"  # the header was readable
    for name in ("garbage.fits", "empty.fits", "noend.fits"):
        assert not frames[name].ok and frames[name].problems[0].startswith("corrupt"), frames[name]
    assert "truncated.fits" not in {f.name for fs in F.group_frames(frames.values()).values() for f in fs}


def test_missing_exposure_time_and_wrong_shape(tmp_path):
    cards = {"DATE-OBS": "2024-01-01T20:00:00"}
    dark = F.read_frame(write_raw_frame(tmp_path / "d.fits", np.zeros((4, 5)), IMAGETYP="Dark Frame", **cards))
    bias = F.read_frame(write_raw_frame(tmp_path / "b.fits", np.zeros((4, 5)), IMAGETYP="Bias Frame", **cards))
    assert not dark.ok and "exposure time" in dark.problems[0]
    assert bias.ok and bias.exptime is None
    sci = [F.read_frame(write_raw_frame(tmp_path / f"s{i}.fits", np.zeros(shape), IMAGETYP="Light Frame",
                                        EXPTIME=1.0, **cards)) for i, shape in enumerate([(4, 5), (4, 5), (5, 4)])]
    checked = F.check_shapes(sci + [bias])
    assert [f.ok for f in checked] == [True, True, False, True]
    assert "differs from the expected (4, 5)" in checked[2].problems[0]


def test_find_frames_dirs_globs_and_missing_inputs(night):
    by_dir = F.find_frames(night.root)
    by_glob = F.find_frames([str(night.root / "**" / "*.fits")])
    assert by_dir == by_glob and len(by_dir) > 0
    darks = F.find_frames([night.root / "Darks", str(night.root / "Darks" / "*.fits")])  # de-duplicated
    assert len(darks) == len(night.paths["dark"])
    with pytest.raises(FileNotFoundError, match=r"inputs\[1\]"):
        F.find_frames([night.root, str(night.root / "nothing*.fits")])


# ----------------------------------------------------------------------------------------------- master selection
def _frame(kind, when, filt=None):
    date = dt.datetime.fromisoformat(when)
    return F.Frame(path=f"/x/{kind}_{when}_{filt}.fits", kind=F.Kind(kind), night=F.night_of(date), filter=filt,
                   exptime=1.0, shape=(4, 5), date_obs=date)


def test_master_selection_same_night_else_nearest():
    frames = [
        _frame("bias", "2024-03-10T20:00:00"), _frame("bias", "2024-03-13T20:00:00"),
        _frame("dark", "2024-03-08T20:00:00"), _frame("dark", "2024-03-15T20:00:00"),
        _frame("flat", "2024-03-10T19:00:00", "V"), _frame("flat", "2024-03-12T19:00:00", "B"),
        _frame("science", "2024-03-11T01:00:00", "V"),  # night of 2024-03-10
        _frame("science", "2024-03-11T02:00:00", "R"),
    ]
    choice = F.assign_masters(frames)
    v, r = choice[frames[6].path], choice[frames[7].path]
    assert v["bias"].key.night == dt.date(2024, 3, 10) and v["bias"].reason.startswith("same night")
    assert v["dark"].key.night == dt.date(2024, 3, 8)  # 2.2 d before beats 4.8 d after
    assert "nearest in time" in v["dark"].reason and "2024-03-08" in v["dark"].reason
    assert v["flat"].key == F.GroupKey("flat", dt.date(2024, 3, 10), "V")
    assert r["flat"].key is None and "'R'" in r["flat"].reason  # no R flats: named, not silently replaced
    assert F.select_master(frames[6], "flat", {}).key is None


def test_real_m13_headers(shared_path):
    frames = F.scan_frames([shared_path(p) for p in M13])
    for f in frames:
        assert f.ok and f.kind == "science" and f.imagetyp == "Light Frame"
        assert f.exptime == 5.0 and f.shape == (1040, 1392) and f.night == dt.date(2013, 5, 4)
        assert f.layout.bitpix == 16 and f.layout.bzero == 32768.0 and f.layout.data_offset == 2880
        assert f.filter is None  # these frames carry no FILTER card
    assert sorted(f.date_obs for f in frames) == [f.date_obs for f in frames]


# ------------------------------------------------------------------------------------------------------- reading
def test_row_bands_equal_the_full_read(night):
    path = night.paths["flat"][0]
    full = fits.getdata(path).astype(np.float64)
    assert np.array_equal(R.read_image(path, dtype=np.float64), full)
    ny = full.shape[0]
    for parts in (1, 2, 3, 5):
        bands = [R.read_rows(path, r0, r1) for r0, r1 in R.row_bands(ny, parts)]
        assert np.array_equal(np.concatenate(bands), full.astype(np.float32))
    stack = R.read_stack(night.paths["flat"], 5, 9)
    assert np.array_equal(stack[1], fits.getdata(night.paths["flat"][1])[5:9])


def test_row_bands_cover_all_rows():
    for ny, parts in [(10, 3), (1040, 4), (3, 5)]:
        bands = R.row_bands(ny, parts)
        assert bands[0][0] == 0 and bands[-1][1] == ny
        assert all(a[1] == b[0] for a, b in itertools.pairwise(bands))
        assert max(b - a for a, b in bands) - min(b - a for a, b in bands) <= 1


def test_real_m13_band_read_applies_bzero(shared_path):
    path = shared_path(M13[0])
    with fits.open(path) as hdul:
        physical = hdul[0].data.astype(np.float32)  # astropy applies BZERO: uint16 values
    band = R.read_rows(path, 400, 410)
    assert band.dtype == np.float32 and np.array_equal(band, physical[400:410])
    assert band.min() >= 0  # the stored int16 are negative around 512 - 32768: BZERO really was applied


def test_blank_and_float_images(tmp_path):
    data = np.arange(12, dtype=np.int16).reshape(3, 4)
    hdu = fits.PrimaryHDU(data)
    hdu.header["BLANK"] = 5
    hdu.header["BSCALE"] = 2.0
    hdu.header["BZERO"] = 10.0
    hdu.writeto(tmp_path / "blank.fits")
    out = R.read_image(tmp_path / "blank.fits", dtype=np.float64)
    expected = 10.0 + 2.0 * data
    assert np.isnan(out[1, 1]) and np.array_equal(np.delete(out.ravel(), 5), np.delete(expected.ravel(), 5))
    fits.PrimaryHDU(np.linspace(0, 1, 12, dtype=np.float32).reshape(3, 4)).writeto(tmp_path / "f.fits")
    assert np.allclose(R.read_image(tmp_path / "f.fits"), np.linspace(0, 1, 12).reshape(3, 4))


def test_trim_and_overscan_sections(tmp_path):
    ny, nx = 12, 20
    rng = np.random.default_rng(1)
    level = 1000 + 10 * np.arange(ny)  # the overscan level drifts along the readout
    image = rng.integers(0, 500, (ny, nx)).astype(np.float64)
    raw = image + level[:, None]
    raw[:, 16:] = level[:, None]  # columns 17..20 (1-based) are overscan
    path = write_raw_frame(tmp_path / "o.fits", raw, IMAGETYP="Light Frame")
    trim, overscan = "[1:16,2:11]", "[17:20,*]"
    assert R.output_shape(path, trim) == (10, 16)
    out = R.read_image(path, trim=trim, overscan=overscan)
    assert np.array_equal(out, image[1:11, :16])
    band = R.read_rows(path, 3, 6, trim=trim, overscan=overscan, overscan_method="mean")
    assert np.array_equal(band, image[4:7, :16])
    raw2 = image + 7.0
    raw2[:2, :] = 7.0  # rows 1-2 are a horizontal overscan strip (one level per column)
    path2 = write_raw_frame(tmp_path / "o2.fits", raw2)
    assert np.array_equal(R.read_image(path2, trim="[*,3:12]", overscan="[*,1:2]"), image[2:])


@pytest.mark.parametrize("section,expected", [
    ("[1:5]", "is not of the form"), ("1:5,1:3", "is not of the form"), ("[a:b,1:2]", "is not of the form"),
    ("[0:5,1:3]", "x range 0:5 must satisfy 1 <= x1 <= x2 <= 20"),
    ("[5:3,1:3]", "x range 5:3 must satisfy"), ("[1:21,1:3]", "x range 1:21 must satisfy")])
def test_bad_sections_raise(section, expected):
    with pytest.raises(ValueError, match=expected):
        R.parse_section(section, (12, 20))


def test_frame_data_problems():
    stack = np.ones((3, 4, 5), dtype=np.float32)
    stack[1] = np.arange(20).reshape(4, 5)
    stack[2] = 65535.0
    stack[2, 0, 0] = 100.0
    halves = [R.band_stats(stack[:, :2], saturation=65535), R.band_stats(stack[:, 2:], saturation=65535)]
    stats = R.merge_band_stats(halves)
    assert np.array_equal(stats, R.band_stats(stack, saturation=65535))
    problems = R.stats_problems(stats, 20)
    assert "every pixel equals 1" in problems[0][0]
    assert problems[1] == []
    assert problems[2][0].startswith("saturated: 95 %")
