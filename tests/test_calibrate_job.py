"""calibrate job end to end on a synthetic night with known truth: masters and calibrated frames recover the truth to
the noise level, the uncertainty is honest, FITS copies keep their headers, the output layout, streaming row blocks
give the same masters, and the file is identical for 1, 2 and 4 ranks and through the serial-h5py fallback."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
from astropy.io import fits
from h5compare import assert_ran_with, assert_same_datasets, datasets
from launch import hpcfit

from hpcfit.calibrate.kernels.synthetic import make_night
from hpcfit.cli import main

SHAPE = (96, 128)

CONFIG = """\
job: calibrate
output: {output}
calibrate:
  inputs: [night]
  uncertainty: true
  batch_frames: 2
{extra}
"""


def write_config(directory: Path, name: str, output: str, extra: str = "") -> Path:
    path = directory / name
    path.write_text(CONFIG.format(output=output, extra=extra))
    return path


@pytest.fixture(scope="module")
def night_dir(tmp_path_factory) -> tuple[Path, object]:
    root = tmp_path_factory.mktemp("calib")
    truth = make_night(root / "night", shape=SHAPE, n_bias=9, n_dark=7, n_flat=7, n_science=5)
    return root, truth


@pytest.fixture(scope="module")
def serial_run(night_dir) -> Path:
    root, _ = night_dir
    config = write_config(root, "serial.yaml", "serial.h5", "  fits_dir: fits")
    assert main(["run", str(config)]) == 0
    return root / "serial.h5"


def _robust_sigma(x: np.ndarray) -> float:
    return float(1.4826 * np.median(np.abs(x - np.median(x))))


def test_masters_recover_the_truth(night_dir, serial_run):
    _, truth = night_dir
    with h5py.File(serial_run) as h5:
        bias, dark, flat = h5["masters/bias"][0], h5["masters/dark"][0], h5["masters/flat"][0]
        assert h5["masters/dark"].attrs["unit"] == "adu / s"
    # bias: median of 9 frames of read noise 6 ADU -> ~2.5 ADU per pixel
    per_frame = truth.read_noise_adu
    residual = bias - truth.bias
    assert abs(np.median(residual)) < 0.3
    assert 0.6 * 1.25 * per_frame / 3 < _robust_sigma(residual) < 1.6 * 1.25 * per_frame / 3
    # dark rate (ADU/s): hot pixels recovered within a few percent; the floor within its noise
    hot = truth.hot_pixels
    np.testing.assert_allclose(dark[hot], truth.dark_rate[hot], rtol=0.1, atol=0.3)
    assert abs(np.median(dark[~hot] - truth.dark_rate[~hot])) < 0.02
    assert np.abs(dark[~hot] - truth.dark_rate[~hot]).max() < 1.0  # cosmic rays clipped away
    # flat: median exactly 1, relative error ~ 0.4 % per pixel (20000 ADU per flat, 7 flats)
    assert np.median(flat) == pytest.approx(1.0, abs=1e-6)
    ratio = flat / truth.flats["V"]
    assert abs(np.median(ratio) - 1) < 2e-3 and _robust_sigma(ratio) < 0.01
    assert np.abs(ratio - 1).max() < 0.06  # no cosmic ray survives in the flat


def test_science_frames_recover_the_truth_with_honest_uncertainties(night_dir, serial_run):
    _, truth = night_dir
    with h5py.File(serial_run) as h5:
        images, sigmas = h5["science/images"][()], h5["science/uncertainty"][()]
        paths = [p.decode() for p in h5["science/paths"][()]]
        exptimes = h5["science/exptime"][()]
    assert images.shape == (5,) + SHAPE and images.dtype == np.float32
    for image, sigma, path, t in zip(images, sigmas, paths, exptimes):
        assert t == truth.exptimes[truth.key(path)]
        clean = ~truth.cosmic_rays[truth.key(path)]
        pulls = ((image - truth.science_truth(path)) / sigma)[clean]
        assert abs(np.median(pulls)) < 0.05
        assert 0.9 < _robust_sigma(pulls) < 1.12  # masters add a little noise that sigma does not count
        # the dark was scaled by the science exposure: hot pixels are as good as the others
        hot = truth.hot_pixels & clean
        assert np.median(np.abs(((image - truth.science_truth(path)) / sigma)[hot])) < 1.0


def test_output_layout_and_tables(night_dir, serial_run):
    root, truth = night_dir
    with h5py.File(serial_run) as h5:
        names = [n.decode() for n in h5["science/names"][()]]
        assert names == sorted(names) and len(names) == 5  # by DATE-OBS, which follows the file numbers here
        dates = [d.decode() for d in h5["science/date_obs"][()]]
        assert dates == sorted(dates) and dates[0].startswith("2024-03-1")
        assert set(h5["science/night"][()]) == {b"2024-03-10"}  # the run crosses midnight: one night
        assert h5["science/images"].chunks == (1,) + SHAPE
        assert list(h5["masters/sets"][()][0]) == [0, 0, 0] and set(h5["science/master_set"][()]) == {0}
        assert all(b"same night 2024-03-10" in m for m in h5["science/masters_used"][()])
        for kind, n in (("bias", 9), ("dark", 7), ("flat", 7)):
            frames = h5[f"masters/{kind}_frames"][()]
            assert len(frames) == n and set(frames["plane"]) == {0}
            assert {Path(p.decode()).resolve() for p in frames["path"]} == \
                {Path(p).resolve() for p in truth.paths[kind]}
            assert h5[f"masters/{kind}_groups"][0]["n_frames"] == n
        assert h5["masters/dark_groups"][0]["bias"] == 0 and h5["masters/flat_groups"][0]["dark"] == 0
        assert len(h5["rejected"]) == 0
        status = {r["name"].decode(): r["status"].decode() for r in h5["frames"][()]}
        assert len(status) == 9 + 7 + 7 + 5 and status["bias_000.fits"] == "bias master 0"
        assert h5.attrs["calibrate_formula"].startswith("science = (raw - bias - dark_rate * exptime) / flat")
        assert len(h5.attrs["calibrate_peak_rss_mb"]) == 1
    assert not (root / "serial.h5.parts").exists()  # scratch files removed with the checkpoints


def test_fits_copies_keep_the_header(night_dir, serial_run):
    root, _ = night_dir
    data = datasets(serial_run)
    names = [n.decode() for n in data["science/names"]]
    for k, name in enumerate(names):
        raw_header = fits.getheader(root / "night" / "ScienceImages" / name)
        with fits.open(root / "fits" / name) as hdul:
            header = hdul[0].header
            np.testing.assert_array_equal(hdul[0].data, data["science/images"][k])
            np.testing.assert_array_equal(hdul["UNCERT"].data, data["science/uncertainty"][k])
        for key in ("IMAGETYP", "DATE-OBS", "EXPTIME", "FILTER", "GAIN", "RDNOISE", "INSTRUME"):
            assert header[key] == raw_header[key], key
        assert header["BITPIX"] == -32 and "BZERO" not in header
        history = "\n".join(str(h) for h in header["HISTORY"])
        assert "hpcfit" in history and "dark_rate * 30 s" in history and "same night 2024-03-10" in history


def test_streaming_row_blocks_give_the_same_masters(night_dir, serial_run):
    """A tiny memory budget makes every pass re-read its row blocks: the masters must not change."""
    from hpcfit.calibrate.masters import build_masters
    from hpcfit.calibrate.planning import make_plan
    from hpcfit.config.schema import Reporter, validate
    from hpcfit.config.yamlsource import load_yaml_file
    from hpcfit.calibrate.job import SCHEMA
    from hpcfit.runtime.comm import SerialComm
    from hpcfit.engine.run import engine_schema

    root, _ = night_dir
    source = load_yaml_file(str(write_config(root, "stream.yaml", "stream.h5")))
    cfg = validate(engine_schema(["calibrate"]).merged(SCHEMA), source, Reporter(source))
    cfg.calibrate["memory_mb"] = 0.1  # ~100 kB: ~20 rows of a 9-frame stack per block
    plan = make_plan(cfg, lambda *a: pytest.fail(f"unexpected config problem {a}"))
    masters = build_masters(SerialComm(), plan, cfg.calibrate, lambda line: None)
    with h5py.File(serial_run) as h5:
        for gi, group in enumerate(plan.groups):
            np.testing.assert_array_equal(masters.arrays[gi], h5[f"masters/{group.kind}"][group.slot])


@pytest.mark.mpi
@pytest.mark.parametrize("n,nodes", [(2, 1), (4, 2)])
def test_same_file_for_any_rank_count(night_dir, serial_run, n, nodes):
    """2 ranks share one node's masters; 4 ranks as 2 pretend nodes of 2 also exchange master rows between nodes."""
    root, _ = night_dir
    config = write_config(root, f"mpi{n}.yaml", f"mpi{n}.h5", f"  fits_dir: fits{n}")
    result = hpcfit(["run", config.name], n=n, cwd=root, env={"HPCFIT_RANKS_PER_NODE": str(n // nodes)})
    assert result.returncode == 0, result.output
    assert_same_datasets(serial_run, root / f"mpi{n}.h5")
    assert_ran_with(root / f"mpi{n}.h5", n_ranks=n, mode="mpio")
    with h5py.File(root / f"mpi{n}.h5") as h5:
        assert h5.attrs["calibrate_nodes"] == nodes and len(h5.attrs["calibrate_peak_rss_mb"]) == n
    for name in (root / "fits").iterdir():
        np.testing.assert_array_equal(fits.getdata(root / f"fits{n}" / name.name), fits.getdata(name))


@pytest.mark.mpi
def test_serial_h5py_fallback_gives_the_same_file(night_dir, serial_run):
    root, _ = night_dir
    config = write_config(root, "serialh5.yaml", "serialh5.h5")
    result = hpcfit(["run", config.name], n=2, cwd=root, serial_h5py=True)
    assert result.returncode == 0, result.output
    assert_same_datasets(serial_run, root / "serialh5.h5")
    assert_ran_with(root / "serialh5.h5", n_ranks=2, mode="serial")
