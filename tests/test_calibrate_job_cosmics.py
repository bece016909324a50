"""calibrate's FITS copies open with ``CCDData.read(path)`` and go through ccdproc as they are; ``cosmic_rays``
(L.A.Cosmic through astroscrappy) flags the injected cosmic rays of the synthetic night at least as completely as
ccdproc's ``cosmicray_lacosmic`` on the same calibrated frames with the same settings, with no more false flags;
the settings are checked against astroscrappy's signature."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
from astropy.io import fits
from launch import hpcfit

from hpcfit.calibrate.kernels.cosmics import BAD, COSMIC_RAY, SATURATED, CosmicRayCleaner, frame_mask
from hpcfit.calibrate.kernels.synthetic import make_night
from hpcfit.cli import main

astroscrappy = pytest.importorskip("astroscrappy")
ccdproc = pytest.importorskip("ccdproc")
from astropy import units as u  # noqa: E402
from astropy.nddata import CCDData  # noqa: E402

SHAPE = (96, 120)
SETTINGS = {"sigclip": 4.5, "sigfrac": 0.3, "objlim": 5.0, "niter": 4}


def write_config(root: Path, name: str, extra: str) -> Path:
    path = root / f"{name}.yaml"
    path.write_text(f"job: calibrate\noutput: {name}.h5\ncalibrate:\n  inputs: [night]\n{extra}")
    return path


@pytest.fixture(scope="module")
def night(tmp_path_factory):
    root = tmp_path_factory.mktemp("cosmics")
    truth = make_night(root / "night", shape=SHAPE, n_science=4, cosmic_rays_per_frame=25)
    return root, truth


@pytest.fixture(scope="module")
def runs(night):
    root, _ = night
    cosmics = "{method: lacosmic, " + ", ".join(f"{k}: {v}" for k, v in SETTINGS.items()) + ", replace: %s}"
    for name, extra in [("plain", "  uncertainty: true\n  fits_dir: fits_plain\n"),
                        ("flag", f"  cosmic_rays: {cosmics % 'none'}\n"),
                        ("clean", f"  uncertainty: true\n  fits_dir: fits_clean\n  cosmic_rays: {cosmics % 'clean'}\n"),
                        ("nan", f"  cosmic_rays: {cosmics % 'nan'}\n")]:
        assert main(["run", str(write_config(root, name, extra))]) == 0
    return root


def test_fits_copies_open_with_ccddata_and_ccdproc(runs):
    with h5py.File(runs / "clean.h5") as h5:
        images, sigmas, masks = h5["science/images"][()], h5["science/uncertainty"][()], h5["science/mask"][()]
        names = [n.decode() for n in h5["science/names"][()]]
    frames = []
    for i, name in enumerate(names):
        path = runs / "fits_clean" / name
        with fits.open(path) as hdul:
            assert hdul[0].header["BUNIT"] == "adu"
            assert hdul["UNCERT"].header["UTYPE"] == "StdDevUncertainty"
            assert hdul["MASK"].data.dtype == np.uint8 and "BZERO" not in hdul[0].header
            np.testing.assert_array_equal(hdul["MASK"].data, masks[i])
        ccd = CCDData.read(path)  # no arguments
        assert ccd.unit == u.adu and type(ccd.uncertainty).__name__ == "StdDevUncertainty"
        np.testing.assert_array_equal(ccd.data, images[i])
        np.testing.assert_array_equal(ccd.uncertainty.array, sigmas[i])
        np.testing.assert_array_equal(ccd.mask, masks[i] != 0)
        frames.append(ccd)
    assert (masks & COSMIC_RAY).any()
    combined = ccdproc.combine(frames, method="median")
    assert combined.shape == SHAPE and combined.unit == u.adu
    assert ccdproc.trim_image(frames[0][2:50, 3:70]).shape == (48, 67)
    cleaned = ccdproc.cosmicray_lacosmic(frames[0], gain=1.5 * u.electron / u.adu, readnoise=9 * u.electron,
                                         gain_apply=False)
    assert cleaned.mask.any()  # (ccdproc labels it electron though gain_apply=False leaves the values in adu)
    # without cosmic rays the copies still carry the mask (bad pixels, saturation) and open the same way
    plain = CCDData.read(runs / "fits_plain" / names[0])
    assert plain.unit == u.adu and plain.mask is not None and not plain.mask.any()


def _ccdproc_masks(root: Path, truth) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray], list[str]]:
    """ccdproc's cosmicray_lacosmic, the ccdproc user's way, on hpcfit's calibrated frames without cleaning:
    gain-corrected to electrons first (gain_correct), then gain=1 and the read noise in electrons."""
    with h5py.File(root / "plain.h5") as h5:
        images, paths = h5["science/images"][()], [p.decode() for p in h5["science/paths"][()]]
    masks, cleaned = [], []
    for image in images:
        ccd = ccdproc.gain_correct(CCDData(image, unit="adu"), truth.gain * u.electron / u.adu)
        out = ccdproc.cosmicray_lacosmic(ccd, gain=1.0, readnoise=truth.read_noise, **SETTINGS)
        masks.append(out.mask)
        cleaned.append(out.data / truth.gain)
    return list(images), masks, cleaned, paths


def test_cosmic_rays_flagged_like_ccdproc(runs, night):
    _, truth = night
    images, theirs, their_clean, paths = _ccdproc_masks(runs, truth)
    with h5py.File(runs / "flag.h5") as h5:
        flagged = h5["science/mask"][()]
        unchanged = h5["science/images"][()]
    with h5py.File(runs / "clean.h5") as h5:
        cleaned = h5["science/images"][()]
    with h5py.File(runs / "nan.h5") as h5:
        nans = h5["science/images"][()]
    hit_total = ours_found = theirs_found = ours_false = theirs_false = 0
    for i, path in enumerate(paths):
        hits = truth.cosmic_rays[truth.key(path)]
        ours = (flagged[i] & COSMIC_RAY) != 0
        hit_total += hits.sum()
        ours_found += (ours & hits).sum()
        theirs_found += (theirs[i] & hits).sum()
        ours_false += (ours & ~hits).sum()
        theirs_false += (theirs[i] & ~hits).sum()
        # replace: none leaves the image alone; nan puts NaN on the flagged pixels; clean puts L.A.Cosmic's values
        np.testing.assert_array_equal(unchanged[i], images[i])
        assert np.isnan(nans[i][ours]).all() and np.array_equal(nans[i][~ours], images[i][~ours])
        np.testing.assert_array_equal(cleaned[i][~ours], images[i][~ours])
        np.testing.assert_allclose(cleaned[i][ours & theirs[i]], their_clean[i][ours & theirs[i]], rtol=1e-4, atol=0.05)
    print(f"cosmic rays: {hit_total} injected pixels; hpcfit found {ours_found}, false {ours_false}; ccdproc found "
          f"{theirs_found}, false {theirs_false}")
    assert hit_total > 100 and ours_found >= 0.8 * hit_total  # L.A.Cosmic finds most injected hits
    assert ours_found >= theirs_found and ours_false <= theirs_false


def test_mask_bits_and_cleaner_units():
    """Bits: saturated from the raw frame, bad from NaN; the cleaner hides bad pixels from L.A.Cosmic and its gain
    turns the ADU frame into electrons (same flags as the frame in electrons with gain 1)."""
    rng = np.random.default_rng(3)
    raw = rng.normal(300.0, 10.0, (60, 70)).astype(np.float32)
    raw[5, 5] = 70000
    mask = frame_mask(raw, 65535.0, np.empty(raw.shape, np.uint8))
    assert mask[5, 5] == SATURATED and mask.sum() == SATURATED
    image = rng.normal(200.0, 12.0, (60, 70)).astype(np.float32)
    image[10:12, 20] += 3000.0
    image[30, 30] = np.nan
    mask[30, 30] |= BAD
    adu = CosmicRayCleaner({"method": "lacosmic", "replace": "none"})
    found = adu.clean(image.copy(), mask_adu := mask.copy(), gain=2.0, read_noise=5.0)
    electrons = CosmicRayCleaner({"method": "lacosmic", "replace": "none", "gain": 1.0, "readnoise": 5.0})
    assert electrons.clean(image * 2, mask_e := mask.copy()) == found
    np.testing.assert_array_equal(mask_adu, mask_e)
    assert mask_adu[10, 20] & COSMIC_RAY and mask_adu[11, 20] & COSMIC_RAY and not mask_adu[30, 30] & COSMIC_RAY


@pytest.mark.parametrize("setting, key, words", [
    ("{sigclip: 4}", "calibrate.cosmic_rays.method", "lacosmic"),
    ("{method: lacosmic, sigclp: 4}", "calibrate.cosmic_rays.sigclp", "sigclip"),
    ("{method: lacosmic, replace: zero}", "calibrate.cosmic_rays.replace", "clean | nan | none"),
    ("{method: lacosmic, sigclip: -1}", "calibrate.cosmic_rays.sigclip", "positive"),
    ("{method: lacosmic, niter: 2.5}", "calibrate.cosmic_rays.niter", "whole number"),
    ("{method: lacosmic, cleantype: best}", "calibrate.cosmic_rays.cleantype", "meanmask"),
    ("{method: lacosmic, sepmed: 1}", "calibrate.cosmic_rays.sepmed", "true"),
    ("{method: lacosmic, inmask: x}", "calibrate.cosmic_rays.inmask", "detect_cosmics"),
])
def test_bad_cosmic_ray_settings_are_clear_errors(night, capsys, setting, key, words):
    root, _ = night
    config = write_config(root, "bad", f"  cosmic_rays: {setting}\n")
    assert main(["validate", str(config)]) == 2
    err = capsys.readouterr().err
    assert key in err and words in err, err


@pytest.mark.mpi
@pytest.mark.parametrize("serial_h5py", [False, True])
def test_cosmic_rays_same_file_on_two_ranks(runs, serial_h5py):
    name = f"clean2_{int(serial_h5py)}"
    text = (runs / "clean.yaml").read_text().replace("clean.h5", f"{name}.h5").replace("fits_clean", f"fits_{name}")
    (runs / f"{name}.yaml").write_text(text)
    result = hpcfit(["run", f"{name}.yaml"], n=2, cwd=runs, serial_h5py=serial_h5py)
    assert result.returncode == 0, result.output
    with h5py.File(runs / "clean.h5") as a, h5py.File(runs / f"{name}.h5") as b:
        for key in ("science/images", "science/mask", "science/uncertainty"):
            np.testing.assert_array_equal(a[key][()], b[key][()])
    for path in (runs / "fits_clean").iterdir():
        np.testing.assert_array_equal(fits.getdata(runs / f"fits_{name}" / path.name, "MASK"),
                                      fits.getdata(path, "MASK"))
