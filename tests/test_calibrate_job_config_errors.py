"""Bad calibrate configs and inputs: each gives exit code 2 naming FILE:LINE and the key path, and no output file."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from hpcfit.calibrate.kernels.synthetic import make_night
from hpcfit.cli import main

from config_errors import check_bad_config, check_config_error_under_mpi

SHAPE = (32, 40)

GOOD = """\
job: calibrate
output: out.h5
calibrate:
  inputs: [night]
  trim: "[1:40,1:32]"
  combine:
    method: median
    sigma_clip: {low: 3, high: 3, iters: 5}
    min_frames: 3
  masters:
    match: nearest
  on_bad_frame: skip
  exptime_key: EXPTIME
  gain: GAIN
"""

# (name, (line of GOOD, replacement), expected "FILE:LINE: key.path" pattern, message fragment)
CASES = [
    ("input matching nothing", ("inputs: [night]", "inputs: [night, nowhere/*.fits]"),
     r"cfg\.yaml:4: calibrate\.inputs\.1:", "matches no FITS file"),
    ("no science frames", ("inputs: [night]", "inputs: [night/Bias]"), r"cfg\.yaml:4: calibrate\.inputs:",
     "no usable science frames among the 5 frames found (5 bias)"),
    ("no bias frames", ("inputs: [night]", "inputs: [nobias]"), r"cfg\.yaml:4: calibrate\.inputs:",
     "no bias frames found to build a master bias"),
    ("darks without EXPTIME", ("inputs: [night]", "inputs: [noexptime]"), r"cfg\.yaml:13: calibrate\.exptime_key:",
     "none of the 5 dark frames has an exposure time (EXPTIME)"),
    ("flats of a filter without science frames", ("inputs: [night]", "inputs: [extra_r]"),
     r"cfg\.yaml:4: calibrate\.inputs:", "3 flat frame(s) with FILTER = 'R' but no science frame uses that filter"),
    ("bias frames of another shape", ("inputs: [night]", "inputs: [smallbias]"), r"cfg\.yaml:4: calibrate\.inputs:",
     "shapes disagree: every bias frame is 16 x 20 but the science frames are 32 x 40"),
    ("master file of another shape", ("    match: nearest", "    match: nearest\n    bias: small.npy"),
     r"cfg\.yaml:12: calibrate\.masters\.bias:", "shapes disagree: the master is 3 x 3"),
    ("trim syntax", ('trim: "[1:40,1:32]"', 'trim: "[1:40;1:32]"'), r"cfg\.yaml:5: calibrate\.trim:",
     "is not of the form '[x1:x2,y1:y2]'"),
    ("trim off the image", ('trim: "[1:40,1:32]"', 'trim: "[1:400,1:32]"'), r"cfg\.yaml:5: calibrate\.trim:",
     "x range 1:400 must satisfy 1 <= x1 <= x2 <= 40"),
    ("overscan not spanning the rows", ('trim: "[1:40,1:32]"', 'trim: "[1:36,1:32]"\n  overscan: "[37:40,1:20]"'),
     r"cfg\.yaml:6: calibrate\.overscan:", "must span every image row 1..32"),
    ("unknown combine method", ("method: median", "method: average"), r"cfg\.yaml:7: calibrate\.combine\.method:",
     "allowed: median, mean"),
    ("negative clipping threshold", ("{low: 3, high: 3, iters: 5}", "{low: -3, high: 3, iters: 5}"),
     r"cfg\.yaml:8: calibrate\.combine\.sigma_clip\.low:", "-3 is out of range"),
    ("min_frames above the frames available", ("min_frames: 3", "min_frames: 20"),
     r"cfg\.yaml:9: calibrate\.combine\.min_frames:", "only 5 usable frame(s), fewer than combine.min_frames = 20"),
    ("unknown frame type in imagetyp", ("  on_bad_frame: skip", "  on_bad_frame: skip\n  imagetyp: {Sky: skyflat}"),
     r"cfg\.yaml:13: calibrate\.imagetyp\.Sky:", "allowed: bias, dark, flat, science"),
    ("gain keyword missing with uncertainty", ("gain: GAIN", "gain: GAINX\n  uncertainty: true"),
     r"cfg\.yaml:14: calibrate\.gain:", "header keyword 'GAINX' is missing or invalid in 2 science frame(s)"),
    ("dark_exptime without a master dark", ("    match: nearest", "    match: nearest\n    dark_exptime: 60"),
     r"cfg\.yaml:12: calibrate\.masters\.dark_exptime:", "only meaningful with masters.dark"),
    ("misspelt key", ("on_bad_frame: skip", "on_bad_frames: skip"), r"cfg\.yaml:12: calibrate\.on_bad_frames:",
     "did you mean 'on_bad_frame'"),
]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("calib_cfg")
    truth = make_night(root / "night", shape=SHAPE, n_bias=5, n_dark=5, n_flat=5, n_science=2)
    shutil.copytree(root / "night", root / "nobias", ignore=shutil.ignore_patterns("Bias"))
    shutil.copytree(root / "night", root / "noexptime")
    for path in (root / "noexptime" / "Darks").iterdir():
        with fits.open(path, mode="update") as hdul:
            del hdul[0].header["EXPTIME"]
    shutil.copytree(root / "night", root / "extra_r")
    for i, path in enumerate(truth.paths["flat"][:3]):
        target = root / "extra_r" / "Flats" / f"flat_R_{i}.fits"
        shutil.copy(path, target)
        fits.setval(target, "FILTER", value="R")
    shutil.copytree(root / "night", root / "smallbias")
    for path in (root / "smallbias" / "Bias").iterdir():
        header = fits.getheader(path)
        fits.PrimaryHDU(np.full((16, 20), 1000, np.uint16), header=header).writeto(path, overwrite=True)
    np.save(root / "small.npy", np.ones((3, 3), np.float32))
    return root


@pytest.mark.parametrize("name,edit,where,what", CASES, ids=[c[0] for c in CASES])
def test_bad_config_exits_2_with_location(workdir, capsys, name, edit, where, what):
    check_bad_config(workdir, GOOD, edit, where, what, capsys)


def test_valid_config_validates_and_plans(workdir, capsys):
    (workdir / "cfg.yaml").write_text(GOOD)
    assert main(["validate", str(workdir / "cfg.yaml"), "--plan"]) == 0
    out = capsys.readouterr().out
    assert "valid calibrate configuration" in out and "1 work item(s), 2 frames" in out
    assert not list(workdir.glob("out.h5*"))


@pytest.mark.mpi
def test_config_error_under_mpi_every_rank_exits_2_quietly(workdir):
    check_config_error_under_mpi(workdir, GOOD.replace("inputs: [night]", "inputs: [nobias]"),
                                 "no bias frames found")
