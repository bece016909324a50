"""calibrate's /science/mask (with cosmic_rays) in the direct-write scheme: created at setup with the images, written
per frame during the work, moved down with the images when a frame is rejected while calibrating — on 1 rank,
2 ranks (mpio and the serial-h5py fallback) and through job-array slices; and the science stage's traffic counts
the masks' bytes and, for compressed frames, the compressed bytes astropy reads."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
from astropy.io import fits
from h5compare import assert_same_datasets
from calibrate_helpers import add_saturated_frame
from launch import hpcfit

from hpcfit.calibrate.kernels.synthetic import make_night
from hpcfit.cli import main
from hpcfit.runtime import iostats

pytest.importorskip("astroscrappy")

SHAPE = (64, 80)
CONFIG = """\
job: calibrate
output: {name}.h5
calibrate:
  inputs: [night]
  batch_frames: 2
  fits_dir: fits_{name}
  cosmic_rays: {{method: lacosmic, sigclip: 4.5, niter: 2}}
"""


def write_config(root: Path, name: str) -> Path:
    path = root / f"{name}.yaml"
    path.write_text(CONFIG.format(name=name))
    return path


@pytest.fixture(scope="module")
def night(tmp_path_factory) -> Path:
    """5 science frames with cosmic rays; the second by DATE-OBS is followed by a saturated frame that passes
    planning and is rejected while calibrating, so the 3 frames after it move down one plane."""
    root = tmp_path_factory.mktemp("calibmasks")
    truth = make_night(root / "night", shape=SHAPE, n_bias=5, n_dark=3, n_flat=3, n_science=5,
                       cosmic_rays_per_frame=15)
    add_saturated_frame(root / "night", after=sorted(truth.paths["science"])[1], shape=SHAPE)
    assert main(["run", str(write_config(root, "serial"))]) == 0
    return root


def assert_masks_follow_their_frames(root: Path, name: str) -> None:
    """Each plane of /science/mask is the mask of the frame named in /science/names: the FITS copy's MASK,
    written from the rank's buffer whatever plane the frame ends up in."""
    with h5py.File(root / f"{name}.h5") as h5:
        names = [n.decode() for n in h5["science/names"][()]]
        masks, images = h5["science/mask"][()], h5["science/images"][()]
        assert h5["science/mask"].dtype == np.uint8 and h5["science/mask"].attrs["meaning"]
    assert len(names) == 5 and "saturated.fits" not in names and masks.shape == (5,) + SHAPE
    for i, frame in enumerate(names):
        with fits.open(root / f"fits_{name}" / frame) as hdul:
            np.testing.assert_array_equal(masks[i], hdul["MASK"].data, err_msg=f"{name}: plane {i} ({frame})")
            np.testing.assert_array_equal(images[i], hdul[0].data)
    assert all((m & 4).any() for m in masks)  # cosmic rays found in every frame


def test_masks_follow_their_frames_after_a_late_rejection(night):
    assert_masks_follow_their_frames(night, "serial")
    with h5py.File(night / "serial.h5") as h5:
        s = dict(h5["science"].attrs)
        assert {r["name"].decode() for r in h5["rejected"][()]} == {"saturated.fits"}
    assert s["io_science_output_bytes"] == 5 * SHAPE[0] * SHAPE[1] * (4 + 1)  # images float32 + mask uint8
    if iostats.snapshot().available:
        assert s["io_science_written_bytes"] >= s["io_science_output_bytes"]


@pytest.mark.mpi
@pytest.mark.parametrize("serial_h5py", [False, True])
def test_masks_same_file_on_two_ranks(night, serial_h5py):
    name = f"two_{int(serial_h5py)}"
    result = hpcfit(["run", write_config(night, name).name], n=2, cwd=night, serial_h5py=serial_h5py)
    assert result.returncode == 0, result.output
    assert_same_datasets(night / "serial.h5", night / f"{name}.h5")
    assert_masks_follow_their_frames(night, name)


def test_masks_through_slices_and_merge(night):
    config = write_config(night, "sliced")
    for k in range(2):
        assert main(["run", str(config), "--slice", f"{k}/2"]) == 0
    assert list((night / "sliced.h5.parts" / "calibrated").glob("*masks*"))  # slices keep masks for the merge
    assert main(["merge", str(config)]) == 0
    assert_same_datasets(night / "serial.h5", night / "sliced.h5")
    assert_masks_follow_their_frames(night, "sliced")


def test_stopped_run_resumed_gives_the_same_masks(night):
    config = write_config(night, "resumed")
    failed = hpcfit(["run", config.name, "--set", "run.schedule=static"], cwd=night,
                    env={"HPCFIT_INJECT_FAULT": "rank=0,item=1,action=raise"})
    assert failed.returncode != 0 and not (night / "resumed.h5").exists(), failed.output
    resumed = hpcfit(["run", config.name, "--resume"], cwd=night)
    assert resumed.returncode == 0, resumed.output
    assert_same_datasets(night / "serial.h5", night / "resumed.h5")
