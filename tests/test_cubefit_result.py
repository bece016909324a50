"""CubefitResult reads a cubefit run back (maps, model, WCS), to_fits / `hpcfit export` write FITS maps any viewer
opens, the maps are drawn on WCSAxes without touching the caller's matplotlib backend, and the output stores the
maps' WCS whether written by parallel HDF5 or the serial fallback."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from astropy import units as u
from astropy.io import fits
from astropy.modeling import models
from astropy.wcs import WCS

from cube_case import cube_workdir
from h5compare import assert_ran_with
from hpcfit.cli import main
from hpcfit.cubefit.result import RESULT, CubefitResult
from hpcfit.io.result import ResultFileError
from launch import find_mpiexec, hpcfit, serial_h5py_dir

COMPOUND = """\
job: cubefit
output: compound.h5
cubefit:
  data: {path: cube.fits}
  model:
    components:
      - {class: Gaussian1D, name: line, parameters: {amplitude: 1.0, mean: 4000, stddev: 300}}
      - {class: Const1D, name: base, parameters: {amplitude: {value: 0.0, fixed: true}}}
    expression: line + base
  fit_info: [nfev]
"""


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A serial run of the shared small case (cube.fits: 30 channels, 5 x 6 spectra) -> out.h5."""
    path = cube_workdir(tmp_path_factory, "cubefit_result", (30, 5, 6))
    assert main(["run", str(path / "cfg.yaml"), "-q"]) == 0
    return path


def test_result_round_trips_the_run(run_dir):
    result = CubefitResult(run_dir / "out.h5")
    assert RESULT is CubefitResult
    assert result.names == ["amplitude", "mean", "stddev"]
    with h5py.File(run_dir / "out.h5", "r") as h5:
        for name in result.names:
            q = result.maps[name]
            np.testing.assert_array_equal(q.value, h5[f"parameters/{name}"][()])
            assert q.unit == u.Unit(h5[f"parameters/{name}"].attrs["unit"])
            np.testing.assert_array_equal(result.uncertainties[name].value, h5[f"uncertainties/{name}"][()])
        np.testing.assert_array_equal(result.status, h5["status"][()])
        assert set(result.fit_info) == set(h5["fit_info"])
        np.testing.assert_array_equal(result.world["ra"].value, h5["world/ra"][()])
    assert result.maps["mean"].unit == u.m / u.s and result.maps["amplitude"].unit == u.K
    assert result.shape == (5, 6) and result.input_units == [u.m / u.s] and result.data_unit == u.K

    model = result.model  # what parallel_fit_dask returns: the fitted class with array parameters, with units
    assert isinstance(model, models.Gaussian1D)
    for name in result.names:
        assert getattr(model, name).unit == result.maps[name].unit
        np.testing.assert_array_equal(getattr(model, name).value, result.maps[name].value)
    assert model.mean.bounds == (2500, 6300)  # the config's bounds, in the fitting unit
    ok = tuple(np.argwhere(result.status == 0)[0])
    one = models.Gaussian1D(**{n: result.maps[n][ok] for n in result.names})
    assert one(4000 * u.m / u.s).unit == u.K


def test_result_wcs_is_the_cubes_celestial_wcs(run_dir):
    result = CubefitResult(run_dir / "out.h5")
    with fits.open(run_dir / "cube.fits") as hdul:
        celestial = WCS(hdul[0].header).celestial
    wcs = result.wcs
    assert wcs.pixel_n_dim == 2 and wcs.wcs.ctype[0].startswith("RA")
    np.testing.assert_allclose(wcs.wcs.crval, celestial.wcs.crval)
    # the stored /world maps are where that WCS puts each map pixel (numpy order: row = y)
    ra, dec = wcs.array_index_to_world_values(*np.indices(result.shape))
    np.testing.assert_allclose(ra, result.world["ra"].value, rtol=1e-12)
    np.testing.assert_allclose(dec, result.world["dec"].value, rtol=1e-12)


def test_compound_model_rebuilt_from_the_file(tmp_path_factory):
    path = cube_workdir(tmp_path_factory, "cubefit_result_compound", (30, 3, 4))
    (path / "compound.yaml").write_text(COMPOUND)
    assert main(["run", str(path / "compound.yaml"), "-q"]) == 0
    result = CubefitResult(path / "compound.h5")
    assert result.names == ["line.amplitude", "line.mean", "line.stddev", "base.amplitude"]
    model = result.model
    assert model.param_names == ("amplitude_0", "mean_0", "stddev_0", "amplitude_1")
    assert model.amplitude_1.fixed and not model.mean_0.fixed
    np.testing.assert_array_equal(model.mean_0.value, result.maps["line.mean"].value)
    assert np.all(model.amplitude_1.value[result.status < 2] == 0)
    assert "base.amplitude" not in result.uncertainties


def test_not_a_cubefit_file(tmp_path, run_dir):
    with h5py.File(tmp_path / "other.h5", "w") as h5:
        h5.attrs["job"] = "gridfit"
    with pytest.raises(ResultFileError, match="a gridfit output, not a cubefit one"):
        CubefitResult(tmp_path / "other.h5")


def test_to_fits_maps_open_with_the_celestial_wcs(run_dir, tmp_path):
    result = CubefitResult(run_dir / "out.h5")
    out = result.to_fits(tmp_path / "maps.fits")
    with fits.open(out) as hdul:
        names = [h.name for h in hdul]
        assert names[:4] == ["PRIMARY", "AMPLITUDE", "MEAN", "STDDEV"]
        assert {"ERR_MEAN", "STATUS", "FITINFO_NFEV"} <= set(names)
        mean = hdul["MEAN"]
        assert u.Unit(mean.header["BUNIT"]) == u.m / u.s and hdul["AMPLITUDE"].header["BUNIT"] == "K"
        np.testing.assert_array_equal(mean.data, result.maps["mean"].value)
        np.testing.assert_array_equal(hdul["STATUS"].data, result.status)
        wcs = WCS(mean.header)
        assert wcs.has_celestial and wcs.pixel_n_dim == 2
        sky = wcs.pixel_to_world(2, 3)  # x = column 2, y = row 3
        assert sky.ra.deg == pytest.approx(result.world["ra"].value[3, 2], rel=1e-12)
        assert sky.dec.deg == pytest.approx(result.world["dec"].value[3, 2], rel=1e-12)
    with pytest.raises(FileExistsError, match="overwrite"):
        result.to_fits(out)
    result.to_fits(out, overwrite=True)


def test_hpcfit_export(run_dir, tmp_path, caplog):
    out = tmp_path / "exported.fits"
    assert main(["export", str(run_dir / "out.h5"), "-o", str(out)]) == 0
    with fits.open(out) as hdul:
        np.testing.assert_array_equal(hdul["STDDEV"].data, CubefitResult(run_dir / "out.h5").maps["stddev"].value)
    assert main(["export", str(run_dir / "out.h5"), "-o", str(out)]) == 2  # exists
    assert main(["export", str(run_dir / "out.h5"), "-o", str(out), "--overwrite"]) == 0
    assert main(["export", str(run_dir / "out.h5"), "-o", str(tmp_path / "maps.png")]) == 2
    assert main(["export", str(run_dir / "cube.fits"), "-o", str(tmp_path / "x.fits")]) == 2
    assert "not an HDF5 file" in caplog.text
    with h5py.File(tmp_path / "sample.h5", "w") as h5:
        h5.attrs["job"] = "sample"
    assert main(["export", str(tmp_path / "sample.h5"), "-o", str(tmp_path / "s.fits")]) == 2
    assert "sample outputs have no FITS export" in caplog.text
    assert main(["export", str(tmp_path / "missing.h5"), "-o", str(tmp_path / "m.fits")]) == 2


def test_maps_on_wcsaxes_leave_the_backend_alone(run_dir, tmp_path):
    matplotlib = pytest.importorskip("matplotlib")
    from astropy.visualization.wcsaxes import WCSAxes

    from hpcfit.cubefit.diagnostics import _plot

    before = matplotlib.get_backend()
    matplotlib.use("pdf")  # a backend hpcfit must not replace (not Agg, which it draws with)
    try:
        fig = CubefitResult(run_dir / "out.h5").figure()
        assert all(isinstance(ax, WCSAxes) for ax in fig.axes if ax.get_label() != "<colorbar>")
        assert fig.axes[0].coords[0].get_axislabel() == "RA"
        assert main(["plot", str(run_dir / "out.h5"), "-o", str(tmp_path / "maps.png")]) == 0
        x = np.linspace(0, 1, 10)
        _plot(tmp_path / "fit.png", x, x, np.ones(10, bool), x, x, "x", "t")  # a diagnostics plot
        assert (tmp_path / "fit.png").stat().st_size > 1000
        assert matplotlib.get_backend() == "pdf"
    finally:
        matplotlib.use(before)


MPIEXEC = find_mpiexec()


@pytest.mark.skipif(MPIEXEC is None, reason="no mpiexec on PATH (set HPCFIT_MPIEXEC)")
@pytest.mark.parametrize("serial", [False, True], ids=["mpio", "serial-h5py"])
def test_wcs_and_order_attributes_under_mpi(run_dir, tmp_path, serial):
    if serial and serial_h5py_dir() is None:
        pytest.skip("no stock serial h5py installed aside (scripts/setup_env.sh installs it)")
    out = tmp_path / "mpi.h5"
    done = hpcfit(["run", str(run_dir / "cfg.yaml"), "--set", f"output={out}", "-q"], n=2, cwd=run_dir,
                  serial_h5py=serial)
    assert done.returncode == 0, done.output
    assert_ran_with(out, n_ranks=2, mode="serial" if serial else "mpio")
    ours, reference = CubefitResult(out), CubefitResult(run_dir / "out.h5")
    assert ours.attrs["cubefit_wcs"] == reference.attrs["cubefit_wcs"] != ""
    assert ours.names == reference.names and ours.input_units == reference.input_units
    for name in ours.names:
        np.testing.assert_array_equal(ours.maps[name].value, reference.maps[name].value)
