"""calibrate job inputs: an overscan strip removes a pedestal that drifts from frame to frame and the trim keeps the
image (WCS reference pixel shifted in the FITS copies); extra IMAGETYP spellings; classification by folder."""

from __future__ import annotations

import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
from astropy.io import fits

from hpcfit.calibrate.kernels.synthetic import make_night
from hpcfit.cli import main

SHAPE = (48, 64)
OVERSCAN = 8


def _rewrite(path: Path, edit) -> None:
    """Re-save a raw frame (uint16, BZERO 32768) after ``edit(data, header)`` returns new data."""
    with fits.open(path) as hdul:
        data, header = hdul[0].data.astype(np.float64), hdul[0].header.copy()
    data = edit(data, header)
    header.remove("BZERO", ignore_missing=True)
    header.remove("BSCALE", ignore_missing=True)
    fits.PrimaryHDU(np.clip(np.rint(data), 0, 65535).astype(np.uint16), header=header).writeto(path, overwrite=True)


@pytest.fixture(scope="module")
def overscan_night(tmp_path_factory):
    """The synthetic night with a pedestal drifting by up to 40 ADU between frames, read in 8 overscan columns."""
    root = tmp_path_factory.mktemp("overscan")
    truth = make_night(root / "night", shape=SHAPE, n_science=3)
    rng = np.random.default_rng(5)

    def add_overscan(data, header):
        pedestal = rng.uniform(0, 40)
        strip = 1000 + pedestal + rng.normal(0, truth.read_noise_adu, (SHAPE[0], OVERSCAN))
        header["CRPIX1"], header["CRPIX2"] = 30.5, 20.5
        return np.hstack([data + pedestal, strip])

    for path in sorted((root / "night").rglob("*.fits")):
        _rewrite(path, add_overscan)
    return root, truth


def test_overscan_and_trim(overscan_night):
    root, truth = overscan_night
    trim = f"[1:{SHAPE[1]},2:{SHAPE[0]}]"  # drop the overscan columns and the first row
    (root / "o.yaml").write_text(f"""\
job: calibrate
output: o.h5
calibrate:
  inputs: [night]
  overscan: "[{SHAPE[1] + 1}:{SHAPE[1] + OVERSCAN},1:{SHAPE[0]}]"
  trim: "{trim}"
  fits_dir: fits
""")
    assert main(["run", str(root / "o.yaml")]) == 0
    with h5py.File(root / "o.h5") as h5:
        images = h5["science/images"][()]
        assert images.shape == (3, SHAPE[0] - 1, SHAPE[1]) and h5.attrs["calibrate_trim"] == trim
        bias = h5["masters/bias"][0]
        # the master bias is the bias structure without its level (the overscan took it): column pattern + ramp
        structure = (truth.bias - 1000)[1:]
        assert abs(np.median(bias - structure)) < 1.5
        # the master flat has median 1 over the trimmed image (the true flat over the whole one)
        level = np.median(truth.flats["V"][1:])
        for image, path in zip(images, h5["science/paths"][()].astype(str)):
            clean = ~truth.cosmic_rays[truth.key(path)][1:]
            residual = (image - truth.science_truth(path)[1:] * level)[clean]
            # without the overscan the drifting pedestal (0-40 ADU / flat) would bias every frame differently
            assert abs(np.median(residual)) < 1.5
        name = h5["science/names"][0].decode()
    header = fits.getheader(root / "fits" / name)
    assert header["NAXIS1"] == SHAPE[1] and header["NAXIS2"] == SHAPE[0] - 1
    assert header["CRPIX1"] == 30.5 and header["CRPIX2"] == 19.5  # trimmed one row: reference pixel moves down
    assert any("overscan" in str(h) for h in header["HISTORY"])


def test_imagetyp_spellings_and_folder_classification(tmp_path):
    make_night(tmp_path / "night", shape=SHAPE, n_science=2)
    for path in (tmp_path / "night" / "Flats").iterdir():
        fits.setval(path, "IMAGETYP", value="Twilight Sky")
    (tmp_path / "a.yaml").write_text("job: calibrate\noutput: a.h5\ncalibrate:\n  inputs: [night]\n"
                                     "  imagetyp: {'twilight-sky': flat}\n")
    assert main(["run", str(tmp_path / "a.yaml")]) == 0
    with h5py.File(tmp_path / "a.h5") as h5:
        assert len(h5["masters/flat_frames"]) == 7
    # without IMAGETYP at all, the folders (Bias, Darks, Flats, ScienceImages) classify the frames
    shutil.copytree(tmp_path / "night", tmp_path / "bare")
    for path in (tmp_path / "bare").rglob("*.fits"):
        fits.delval(path, "IMAGETYP")
    (tmp_path / "b.yaml").write_text("job: calibrate\noutput: b.h5\ncalibrate:\n  inputs: [bare]\n"
                                     "  classify_by: folder\n")
    assert main(["run", str(tmp_path / "b.yaml")]) == 0
    with h5py.File(tmp_path / "b.h5") as h5, h5py.File(tmp_path / "a.h5") as ref:
        assert [len(h5[f"masters/{k}_frames"]) for k in ("bias", "dark", "flat")] == [9, 7, 7]
        np.testing.assert_array_equal(h5["science/images"][()], ref["science/images"][()])
