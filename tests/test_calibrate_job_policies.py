"""calibrate job policies: corrupt, truncated, misfiled, empty and saturated frames are handled by on_bad_frame /
on_mismatch and named in /rejected and the log; several nights and filters get their own masters, the nearest
night's when theirs is missing (or the frame is rejected under masters.match: same_night)."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
from launch import hpcfit

from hpcfit.calibrate.kernels.synthetic import make_night, write_raw_frame
from hpcfit.cli import main

SHAPE = (48, 64)

CONFIG = """\
job: calibrate
output: {output}
calibrate:
  inputs: [{inputs}]
{extra}
"""


def run(directory: Path, output: str, extra: str = "", inputs: str = "night") -> int:
    path = directory / f"{Path(output).stem}.yaml"
    path.write_text(CONFIG.format(output=output, inputs=inputs, extra=extra))
    return main(["run", str(path)])


def _rejected(path: Path) -> dict[str, tuple[str, str]]:
    with h5py.File(path) as h5:
        return {r["name"].decode(): (r["stage"].decode(), r["reason"].decode()) for r in h5["rejected"][()]}


@pytest.fixture(scope="module")
def messy_night(tmp_path_factory) -> Path:
    """A night with a truncated science frame, a non-FITS file, a dark filed in Flats/, an all-zero bias frame and
    a saturated science frame."""
    root = tmp_path_factory.mktemp("messy")
    truth = make_night(root / "night", shape=SHAPE, n_science=3)
    night = root / "night"
    science = truth.paths["science"][0]
    data = science.read_bytes()
    (night / "ScienceImages" / "truncated.fits").write_bytes(data[: len(data) // 2])
    (night / "ScienceImages" / "notes.fits").write_text("not a FITS file\n")
    shutil.copy(truth.paths["dark"][0], night / "Flats" / "misfiled_dark.fits")
    when = dt.datetime(2024, 3, 11, 1, 0, 0)
    write_raw_frame(night / "Bias" / "zero_bias.fits", np.zeros(SHAPE), IMAGETYP="Bias Frame", EXPTIME=0.0,
                    DATE_OBS=when.isoformat())
    write_raw_frame(night / "ScienceImages" / "saturated.fits", np.full(SHAPE, 65535.0), IMAGETYP="Light Frame",
                    EXPTIME=30.0, FILTER="V", DATE_OBS=(when + dt.timedelta(minutes=5)).isoformat())
    return root


def test_bad_frames_are_skipped_and_reported(messy_night, capsys):
    assert run(messy_night, "skip.h5") == 0
    out = capsys.readouterr().out
    rejected = _rejected(messy_night / "skip.h5")
    assert set(rejected) == {"truncated.fits", "notes.fits", "zero_bias.fits", "saturated.fits"}
    assert rejected["truncated.fits"][0] == "scan" and "truncated" in rejected["truncated.fits"][1]
    assert rejected["notes.fits"][0] == "scan" and "not a FITS file" in rejected["notes.fits"][1]
    assert rejected["zero_bias.fits"] == ("combine", "empty: every pixel equals 0")
    assert rejected["saturated.fits"][0] == "calibrate" and "saturated" in rejected["saturated.fits"][1]
    for name in rejected:  # named in the log as well, with the reason
        assert f"rejected {name}" in out
    with h5py.File(messy_night / "skip.h5") as h5:
        names = [n.decode() for n in h5["science/names"][()]]
        assert len(names) == 3 and "saturated.fits" not in names and h5["science/images"].shape[0] == 3
        assert np.isfinite(h5["science/images"][()]).mean() > 0.99
        # the dark in Flats/ is a dark by its IMAGETYP (classify_by: header): used as one, and the disagreement noted
        darks = {n.decode() for n in h5["masters/dark_frames"]["name"]}
        assert "misfiled_dark.fits" in darks and len(darks) == 8
        frames = {r["name"].decode(): r for r in h5["frames"][()]}
        assert b"says dark but folder 'Flats' says flat" in frames["misfiled_dark.fits"]["notes"]
        assert frames["zero_bias.fits"]["status"] == b"rejected (combine)"
        assert len(h5["masters/bias_frames"]) == 9  # the zero frame left out of the master
    assert "classification: misfiled_dark.fits" in out


def test_misfiled_frame_rejected_on_request(messy_night):
    assert run(messy_night, "mismatch.h5", "  on_mismatch: reject") == 0
    rejected = _rejected(messy_night / "mismatch.h5")
    assert rejected["misfiled_dark.fits"][0] == "scan" and "misfiled" in rejected["misfiled_dark.fits"][1]
    with h5py.File(messy_night / "mismatch.h5") as h5:
        assert len(h5["masters/dark_frames"]) == 7


def test_bad_frame_with_fail_policy_is_a_config_error(messy_night, capsys):
    assert run(messy_night, "fail.h5", "  on_bad_frame: fail") == 2
    err = capsys.readouterr().err
    assert "calibrate.on_bad_frame" in err and "truncated.fits" in err and "notes.fits" in err
    assert not list(messy_night.glob("fail.h5*"))


def test_bad_pixels_found_while_calibrating_with_fail_policy_end_the_run(tmp_path):
    make_night(tmp_path / "night", shape=SHAPE, n_science=2)
    write_raw_frame(tmp_path / "night" / "ScienceImages" / "saturated.fits", np.full(SHAPE, 65535.0),
                    IMAGETYP="Light Frame", EXPTIME=30.0, FILTER="V", DATE_OBS="2024-03-11T01:00:00")
    (tmp_path / "f.yaml").write_text(CONFIG.format(output="f.h5", inputs="night", extra="  on_bad_frame: fail"))
    result = hpcfit(["run", "f.yaml"], cwd=tmp_path)
    assert result.returncode == 1, result.output
    assert "saturated.fits" in result.stderr and "on_bad_frame: fail" in result.stderr
    assert not (tmp_path / "f.h5").exists() and not (tmp_path / "f.h5.incomplete").exists()


@pytest.fixture(scope="module")
def two_nights(tmp_path_factory):
    """Night 1: V only, with darks. Night 2 (two days later): V and R, no darks. Same seed: same bias and dark."""
    root = tmp_path_factory.mktemp("nights")
    first = make_night(root / "n1", shape=SHAPE, n_science=2, seed=11)
    second = make_night(root / "n2", shape=SHAPE, n_science=2, n_dark=0, filters=("V", "R"), seed=11,
                        start=dt.datetime(2024, 3, 12, 22, 30))
    return root, first, second


def test_masters_per_night_and_filter_with_nearest_fallback(two_nights):
    root, _, second = two_nights
    assert run(root, "nights.h5", inputs="n1, n2") == 0
    with h5py.File(root / "nights.h5") as h5:
        assert h5["masters/bias"].shape[0] == 2 and h5["masters/dark"].shape[0] == 1
        groups = h5["masters/flat_groups"][()]
        assert sorted(zip(groups["night"], groups["filter"])) == [
            (b"2024-03-10", b"V"), (b"2024-03-12", b"R"), (b"2024-03-12", b"V")]
        assert set(groups["dark"]) == {0}  # night 2's flats had their dark current removed with night 1's dark
        nights = [n.decode() for n in h5["science/night"][()]]
        assert nights == ["2024-03-10"] * 2 + ["2024-03-12"] * 4
        sets = h5["masters/sets"][()][h5["science/master_set"][()]]
        bias_nights = h5["masters/bias_groups"]["night"][sets[:, 0]]
        assert [n.decode() for n in bias_nights] == nights  # each night its own bias
        flat_filters = h5["masters/flat_groups"]["filter"][sets[:, 2]]
        assert list(flat_filters) == [f.encode() for f in h5["science/filter"][()].astype(str)]
        used = [m.decode() for m in h5["science/masters_used"][()]]
        assert all("dark: same night" in u for u in used[:2])
        assert all("dark: no dark frames on night 2024-03-12; nearest in time is night 2024-03-10" in u
                   for u in used[2:])
        # night 2 calibrated with night 1's dark still recovers its truth (same dark current)
        for image, path in zip(h5["science/images"][2:], h5["science/paths"][2:]):
            path = path.decode()
            residual = (image - second.science_truth(path))[~second.cosmic_rays[second.key(path)]]
            assert abs(np.median(residual)) < 1.0 and 1.4826 * np.median(np.abs(residual)) < 30


def test_same_night_policy_rejects_frames_without_their_own_masters(two_nights):
    root, _, _ = two_nights
    assert run(root, "strict.h5", "  masters: {match: same_night}", inputs="n1, n2") == 0
    rejected = _rejected(root / "strict.h5")
    assert len(rejected) == 4 and all(stage == "plan" and "same_night" in why for stage, why in rejected.values())
    with h5py.File(root / "strict.h5") as h5:
        assert h5["science/images"].shape[0] == 2
        # only masters that serve a calibrated frame are built: night 1's
        assert [h5[f"masters/{k}"].shape[0] for k in ("bias", "dark", "flat")] == [1, 1, 1]
