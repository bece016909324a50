"""calibrate at the file-system limit: science frames read once and written once straight into the output (no
scratch detour, no fill), the traffic measured from /proc/self/io and checked against what must move; frames
rejected while calibrating leave no hole (1 rank, 2 ranks mpio, the serial-h5py fallback: the same file); a stopped
run resumed and job-array slices merged give the same file."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
from h5compare import assert_ran_with, assert_same_datasets
from calibrate_helpers import add_saturated_frame
from launch import hpcfit

from hpcfit.calibrate.kernels.synthetic import make_night
from hpcfit.cli import main
from hpcfit.runtime import iostats

SHAPE = (192, 256)  # large enough that headers and HDF5 metadata are small next to the pixels
CONFIG = """\
job: calibrate
output: {output}
calibrate:
  inputs: [night]
  batch_frames: 2
{extra}
"""
RATIO_LIMIT = 1.15  # science stage: bytes moved / bytes that must move (raw frames in, calibrated planes out)


def write_config(root: Path, name: str, extra: str = "") -> Path:
    path = root / f"{name}.yaml"
    path.write_text(CONFIG.format(output=f"{name}.h5", extra=extra))
    return path


@pytest.fixture(scope="module")
def night(tmp_path_factory) -> Path:
    """A synthetic night of 7 science frames, the third of which (by DATE-OBS) is saturated: it passes planning
    (headers only) and is rejected while calibrating, so the frames after it must move down one plane."""
    root = tmp_path_factory.mktemp("calibio")
    truth = make_night(root / "night", shape=SHAPE, n_bias=5, n_dark=3, n_flat=3, n_science=6)
    add_saturated_frame(root / "night", after=sorted(truth.paths["science"])[1], shape=SHAPE)
    return root


@pytest.fixture(scope="module")
def serial(night) -> Path:
    assert main(["run", str(write_config(night, "serial", "  uncertainty: true"))]) == 0
    return night / "serial.h5"


def _names(path: Path) -> list[str]:
    with h5py.File(path) as h5:
        return [n.decode() for n in h5["science/names"][()]]


def test_rejected_frame_leaves_no_hole(serial):
    names = _names(serial)
    assert len(names) == 6 and "saturated.fits" not in names
    with h5py.File(serial) as h5:
        assert h5["science/images"].shape == (6,) + SHAPE and h5["science/uncertainty"].shape == (6,) + SHAPE
        assert h5["science/images"].chunks == (1,) + SHAPE
        rejected = {r["name"].decode(): r["stage"].decode() for r in h5["rejected"][()]}
        assert rejected == {"saturated.fits": "calibrate"}
        images = h5["science/images"][()]
    # every plane holds a calibrated frame (a hole would be unwritten: zeros or garbage, not a sky of ~300 ADU)
    assert np.all(np.nanmedian(images.reshape(6, -1), axis=1) > 50)
    assert len({float(np.nansum(p)) for p in images}) == 6  # the moved planes are distinct frames


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> Path:
    """A night whose science frames all pass (the synthetic-night example: nothing rejected while calibrating)."""
    root = tmp_path_factory.mktemp("calibio_clean")
    make_night(root / "night", shape=SHAPE, n_bias=5, n_dark=3, n_flat=3, n_science=6)
    assert main(["run", str(write_config(root, "clean", "  uncertainty: true"))]) == 0
    return root / "clean.h5"


def _science_traffic(path: Path) -> tuple[dict, dict]:
    with h5py.File(path) as h5:
        s, root = dict(h5["science"].attrs), dict(h5.attrs)
    if not iostats.snapshot().available:
        assert np.isnan(s["io_science_read_bytes"]) and "not available" in s["io_note"]
        pytest.skip("no /proc/self/io on this OS")
    return s, root


def test_science_stage_moves_what_must_move(clean):
    """The honest counter (rchar/wchar: bytes asked of the file system) over the science stage is within 15 % of
    the raw science frames' pixels plus the calibrated planes; the old scratch detour moved 2.7x that."""
    s, root = _science_traffic(clean)
    raw = 6 * SHAPE[0] * SHAPE[1] * 2  # 6 frames of uint16
    out = 6 * SHAPE[0] * SHAPE[1] * 4 * 2  # images + uncertainty in float32
    assert s["io_science_raw_bytes"] == raw and s["io_science_output_bytes"] == out
    assert s["io_science_read_bytes"] >= raw and s["io_science_written_bytes"] >= out  # nothing escapes the count
    moved = s["io_science_read_bytes"] + s["io_science_written_bytes"]
    assert moved <= RATIO_LIMIT * (raw + out), s
    assert s["io_science_ratio"] == pytest.approx(moved / (raw + out))
    # the whole run (engine-level, every job): the science stage plus masters, headers, imports
    assert root["io_read_bytes"] > s["io_science_read_bytes"] and root["io_written_bytes"] >= out
    assert len(root["io_read_bytes_per_rank"]) == 1 and "rchar/wchar" in root["io_note"]


def test_a_late_rejection_costs_one_more_read_and_write_of_the_frames_after_it(serial):
    """Frames after a frame rejected while calibrating move down one plane: 4 frames x 2 datasets, read back and
    written again — and nothing else."""
    s, _ = _science_traffic(serial)
    plane = SHAPE[0] * SHAPE[1] * 4
    must = s["io_science_raw_bytes"] + s["io_science_output_bytes"]
    moved = s["io_science_read_bytes"] + s["io_science_written_bytes"]
    assert must + 2 * 8 * plane <= moved <= RATIO_LIMIT * (must + 2 * 8 * plane), s


@pytest.mark.mpi
def test_same_file_with_2_ranks_mpio_and_the_serial_h5py_fallback(night, serial):
    for name, kwargs, mode in (("mpio2", {}, "mpio"), ("serialh5", {"serial_h5py": True}, "serial")):
        config = write_config(night, name, "  uncertainty: true")
        result = hpcfit(["run", config.name], n=2, cwd=night, **kwargs)
        assert result.returncode == 0, result.output
        assert_same_datasets(serial, night / f"{name}.h5")
        assert_ran_with(night / f"{name}.h5", n_ranks=2, mode=mode)
        with h5py.File(night / f"{name}.h5") as h5:
            s = h5["science"].attrs
            assert len(s["io_science_read_bytes_per_rank"]) == 2
            if iostats.snapshot().available:  # as in one process: each byte once, plus the 8 moved planes
                must = s["io_science_raw_bytes"] + s["io_science_output_bytes"] + 2 * 8 * SHAPE[0] * SHAPE[1] * 4
                moved = s["io_science_read_bytes"] + s["io_science_written_bytes"]
                assert must <= moved <= RATIO_LIMIT * must, dict(s)


def test_stopped_run_resumed_gives_the_same_file(night, serial):
    """A run that dies on an item leaves checkpoints and no output; the resumed run calibrates the checkpointed
    items' frames again (their planes went with the discarded file) and writes the same file."""
    config = write_config(night, "resumed", "  uncertainty: true")
    failed = hpcfit(["run", config.name, "--set", "run.schedule=static"], cwd=night,
                    env={"HPCFIT_INJECT_FAULT": "rank=0,item=2,action=raise"})
    assert failed.returncode != 0 and not (night / "resumed.h5").exists(), failed.output
    assert list((night / "resumed.h5.parts" / "slice-000-of-001").glob("item-*.pkl"))
    resumed = hpcfit(["run", config.name, "--resume"], cwd=night)
    assert resumed.returncode == 0, resumed.output
    assert_same_datasets(serial, night / "resumed.h5")


def test_slices_then_merge_give_the_same_file(night, serial):
    config = write_config(night, "sliced", "  uncertainty: true")
    for k in range(2):
        assert main(["run", str(config), "--slice", f"{k}/2"]) == 0
    assert list((night / "sliced.h5.parts" / "calibrated").glob("item-*"))  # slices keep frames for the merge
    assert main(["merge", str(config)]) == 0
    assert_same_datasets(serial, night / "sliced.h5")
    assert not (night / "sliced.h5.parts").exists()
