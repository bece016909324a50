"""`hpcfit plot FILE` for every job: the command finds the job from the file's `job` attribute and calls its plot
hook; each job's figure is a readable PNG of the expected size with the expected panels; foreign files and
options of another job are refused with exit 2; the caller's matplotlib backend is left alone."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from hpcfit.cli import main

pytest.importorskip("matplotlib")
from matplotlib.image import imread  # noqa: E402

from cube_case import cube_workdir  # noqa: E402
from gridfit_helpers import write_config as write_gridfit_config  # noqa: E402
from gridfit_helpers import write_inputs as write_gridfit_inputs  # noqa: E402

SAMPLE = """\
job: sample
output: sample.h5
sample:
  free_params:
    redshift: [0.0, 6.0]
    log_mass: [8.0, 12.0]
    dust2: [0.0, 2.0]
    tage: [0.5, 13.0]
    log_tau: [-1.0, 1.5]
  sampling:
    n_samples: 3000
    seed: 3
    batch_size: 1000
    filters: [decam_g, decam_r, decam_i, vista_vircam_Z]
    shuffle: {shuffle}
  model: plugins.toy_sed:factory
"""

CALIBRATE = """\
job: calibrate
output: calib.h5
calibrate:
  inputs: [night]
  masters: {flat: dead_flat.npy}
"""
DEAD = (slice(20, 21), slice(10, 30))  # a dead row segment of the ready flat: 20 bad pixels


def _png(path: Path) -> np.ndarray:
    """The RGB pixels of a PNG, after checking that it is not blank (one flat colour)."""
    assert path.is_file(), path
    pixels = imread(path)[..., :3]
    assert pixels.std() > 0.05, f"{path} looks blank"
    return pixels


def _size(fig, dpi: int) -> tuple[int, int]:
    width, height = fig.get_size_inches()
    return round(height * dpi), round(width * dpi)


# ---------------------------------------------------------------------------------------------------------- sample
@pytest.fixture(scope="module")
def sample_file(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("plot_sample")
    (directory / "cfg.yaml").write_text(SAMPLE.format(shuffle="false"))
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(str(Path(__file__).parent))
        assert main(["run", str(directory / "cfg.yaml"), "-q"]) == 0
    return directory / "sample.h5"


def test_sample_plot_writes_a_corner_and_a_colour_figure(sample_file, tmp_path):
    from hpcfit.sample.plot import corner_figure, colour_figure, read_sample

    assert main(["plot", str(sample_file), "-o", str(tmp_path / "fig.png"), "--max-points", "800", "-v"]) == 0
    corner, colours = tmp_path / "fig_corner.png", tmp_path / "fig_colours.png"
    view = read_sample(sample_file, 800)
    assert _png(corner).shape[:2] == _size(corner_figure(view), 100)
    assert _png(colours).shape[:2] == _size(colour_figure(view), 100)
    assert not (tmp_path / "fig.png").exists()


def test_corner_plot_has_one_panel_per_parameter_pair(sample_file):
    from hpcfit.sample.plot import colour_figure, corner_figure, read_sample

    view = read_sample(sample_file, 500)
    d = len(view.names)
    assert view.names == ["redshift", "log_mass", "dust2", "tage", "log_tau"]
    fig = corner_figure(view)
    assert len(fig.axes) == d * (d + 1) // 2  # d histograms + d (d - 1) / 2 pairs, no upper triangle
    bottom = [ax.get_xlabel() for ax in fig.axes if ax.get_xlabel()]
    assert bottom == view.names
    # the axes span the sampled ranges stored in the file
    assert fig.axes[0].get_xlim() == pytest.approx((0.0, 6.0))
    # 4 bands: colours g-r, r-i, i-Z, plotted as (g-r, r-i) and (r-i, i-Z), each with its colour bar
    panels = [ax for ax in colour_figure(view).axes if ax.get_xlabel().endswith("[mag]")]
    assert [(ax.get_xlabel(), ax.get_ylabel()) for ax in panels] == [
        ("decam_g - decam_r [mag]", "decam_r - decam_i [mag]"),
        ("decam_r - decam_i [mag]", "decam_i - vista_vircam_Z [mag]")]


def test_subsample_reads_spread_blocks_of_at_most_n_rows(sample_file):
    from hpcfit.sample.plot import read_sample, row_blocks

    blocks = row_blocks(10**8, 50_000)
    sizes = [b - a for a, b in blocks]
    assert sum(sizes) <= 50_000 and sum(sizes) > 49_000
    assert all(b <= c for (_, b), (c, _) in zip(blocks, blocks[1:]))  # ordered, no overlap
    assert blocks[0][0] == 0 and blocks[-1][0] > 0.98 * 10**8  # spread over the whole file
    assert row_blocks(100, 500) == [(0, 100)]
    with pytest.raises(ValueError, match=r"max_points must be at least 1 \(got 0\)"):
        row_blocks(100, 0)
    view = read_sample(sample_file, 640)
    with h5py.File(sample_file) as h5:
        theta = h5["samples/theta"][()]
    expected = np.concatenate([theta[a:b] for a, b in row_blocks(theta.shape[0], 640)])
    assert view.theta.shape == (640, 5) and np.array_equal(view.theta, expected)
    # unshuffled: rows are in draw order, redshift grows with the row; the spread blocks still cover it all
    assert view.theta[:, 0].min() < 0.2 and view.theta[:, 0].max() > 5.8


def test_colours_leave_out_non_positive_fluxes():
    from hpcfit.sample.plot import SampleView, colours

    flux = np.array([[1.0, 10.0, 100.0], [0.0, 1.0, 1.0], [1.0, -2.0, 1.0], [np.nan, 1.0, 1.0]])
    view = SampleView("x", 4, np.zeros((4, 1)), ["a"], np.zeros(1), np.ones(1), flux, ["b0", "b1", "b2"])
    labels, values = colours(view)
    assert labels == ["b0 - b1 [mag]", "b1 - b2 [mag]"]
    np.testing.assert_allclose(values[0], [2.5, np.nan, np.nan, np.nan])
    np.testing.assert_allclose(values[1], [2.5, 0.0, np.nan, 0.0])


# ------------------------------------------------------------------------------------------------------- calibrate
@pytest.fixture(scope="module")
def calibrate_file(tmp_path_factory) -> Path:
    from hpcfit.calibrate.kernels.synthetic import make_night

    directory = tmp_path_factory.mktemp("plot_calibrate")
    truth = make_night(directory / "night", shape=(48, 64), n_bias=3, n_dark=3, n_flat=3, n_science=3)
    flat = np.array(truth.flats["V"], np.float32)
    flat[DEAD] = 0.0
    np.save(directory / "dead_flat.npy", flat)
    (directory / "cfg.yaml").write_text(CALIBRATE)
    assert main(["run", str(directory / "cfg.yaml"), "-q"]) == 0
    return directory / "calib.h5"


def test_calibrate_plot_shows_masters_and_a_frame_with_its_bad_pixels(calibrate_file, tmp_path):
    from hpcfit.calibrate.plot import calibrate_figure, read_calibrate

    with h5py.File(calibrate_file) as h5:
        names = [n.decode() for n in h5["science/names"][()]]
    assert main(["plot", str(calibrate_file), "-o", str(tmp_path / "c.png"), "--frame", names[1]]) == 0
    view = read_calibrate(calibrate_file, names[1])
    fig = calibrate_figure(view)
    assert _png(tmp_path / "c.png").shape[:2] == _size(fig, 100)
    titles = [ax.get_title() for ax in fig.axes]
    assert [t.split("\n")[0] for t in titles if t.startswith("master")] == ["master bias", "master dark",
                                                                             "master flat"]
    science = next(ax for ax in fig.axes if ax.get_title().startswith(names[1]))
    overlay = science.get_images()[1].get_array()
    expected = np.zeros((48, 64), bool)
    expected[DEAD] = True
    assert np.array_equal(overlay[..., 3] > 0, expected)  # exactly the dead pixels are drawn in red
    assert "bad pixels (20)" in science.get_legend().get_texts()[0].get_text()
    # colour bars carry the units
    assert {"ADU", "ADU / s", "relative response (median 1)", "calibrated signal [ADU]"} <= {
        ax.get_ylabel() for ax in fig.axes}


def test_calibrate_frame_by_index_default_and_unknown(calibrate_file, tmp_path, capsys):
    from hpcfit.calibrate.plot import read_calibrate

    assert read_calibrate(calibrate_file).science.index == 0
    assert read_calibrate(calibrate_file, "2").science.index == 2
    assert main(["plot", str(calibrate_file), "-q"]) == 0
    assert _png(calibrate_file.with_suffix(".png")) is not None
    assert main(["plot", str(calibrate_file), "--frame", "nosuchframe"]) == 2
    assert main(["plot", str(calibrate_file), "--frame", "7"]) == 2
    err = capsys.readouterr().err
    assert "no science frame 'nosuchframe'" in err and "out of range (0..2)" in err


# ------------------------------------------------------------------------------------------ cubefit and gridfit
@pytest.fixture(scope="module")
def cubefit_file(tmp_path_factory) -> Path:
    directory = cube_workdir(tmp_path_factory, "plot_cubefit", (30, 4, 5))
    assert main(["run", str(directory / "cfg.yaml"), "-q"]) == 0
    return directory / "out.h5"


def test_cubefit_plot_through_the_hook(cubefit_file, tmp_path):
    assert main(["plot", str(cubefit_file), "-o", str(tmp_path / "maps.png")]) == 0
    # Gaussian1D: amplitude, mean, stddev and the status map, 3.6 x 3.6 inch each at 90 dpi
    assert _png(tmp_path / "maps.png").shape[:2] == (324, 4 * 324)


def test_gridfit_plot_through_the_hook(tmp_path, capsys):
    write_gridfit_inputs(tmp_path, n_galaxies=12)  # rows 3, 5, 7, 10, 11 are special cases
    config = write_gridfit_config(tmp_path, "g.yaml", "g.h5")
    assert main(["run", str(config), "-q"]) == 0
    result = tmp_path / "g.h5"
    assert main(["plot", str(result), "--galaxy", "gal00002", "-o", str(tmp_path / "a.png")]) == 0
    assert main(["plot", str(result), "--galaxy", "2", "-o", str(tmp_path / "b.png")]) == 0  # a row number
    assert np.array_equal(_png(tmp_path / "a.png"), _png(tmp_path / "b.png"))
    assert main(["plot", str(result)]) == 0
    _png(tmp_path / "g_gal00000.png")  # default: the first row, named after it
    assert main(["plot", str(result), "--galaxy", "gal99999"]) == 2
    assert main(["plot", str(result), "--frame", "1"]) == 2
    err = capsys.readouterr().err
    assert "galaxy 'gal99999' not in" in err
    assert "--frame: not an option for gridfit files (their plot options: --galaxy)" in err


# ----------------------------------------------------------------------------------------------- foreign files
def test_a_file_of_no_job_is_refused_with_exit_2(tmp_path, capsys):
    with h5py.File(tmp_path / "other.h5", "w") as h5:
        h5["x"] = np.arange(3)
    assert main(["plot", str(tmp_path / "other.h5")]) == 2
    with h5py.File(tmp_path / "odd.h5", "w") as h5:
        h5.attrs["job"] = "spectrofit"
    assert main(["plot", str(tmp_path / "odd.h5")]) == 2
    (tmp_path / "text.h5").write_text("not hdf5\n")
    assert main(["plot", str(tmp_path / "text.h5")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 3  # one line each
    assert "other.h5 is not an hpcfit output file (it has no job attribute" in err[0]
    assert "its job attribute 'spectrofit' names no job" in err[1]
    assert "text.h5 is not an HDF5 file" in err[2]
    assert not list(tmp_path.glob("*.png"))


def test_plotting_leaves_the_callers_backend_alone(cubefit_file, tmp_path):
    code = ("import matplotlib, matplotlib.pyplot as plt; from hpcfit.cli import main; "
            f"assert main(['plot', {str(cubefit_file)!r}, '-o', {str(tmp_path / 'm.png')!r}, '-q']) == 0; "
            "print(matplotlib.get_backend(), len(plt.get_fignums()))")
    env = {"MPLBACKEND": "svg", "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "PATH": "/usr/bin:/bin"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["svg", "0"]
    assert (tmp_path / "m.png").is_file()
