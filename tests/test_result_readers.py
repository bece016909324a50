"""Every job's output read back: ``hpcfit.open`` gives the job's reader, whose values equal the HDF5 datasets, with
the right units; and files other tools read: named dimensions (xarray through h5netcdf shows them, no
``phony_dim``), ``units`` beside ``unit``, and the sample file's root ``/theta`` and ``/x`` for SBI readers --
written the same through parallel HDF5 (mpio) and the serial-h5py fallback."""

from __future__ import annotations

import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest

import hpcfit
from cube_case import cube_workdir
from gridfit_helpers import write_config as gridfit_config, write_inputs
from h5compare import assert_ran_with
from launch import hpcfit as launch

xarray = pytest.importorskip("xarray")
pytest.importorskip("h5netcdf")

TESTS = Path(__file__).resolve().parent
SAMPLE = """\
job: sample
output: {output}
run: {{progress: none}}
sample:
  free_params:
    redshift: [0.0, 6.0]
    log_mass: [8.0, 12.0]
    dust2: {{bounds: [0.01, 2.0], prior: log_uniform}}
    tage: [0.5, 13.0]
    log_tau: [-1.0, 1.5]
  sampling: {{n_samples: 2500, seed: 3, batch_size: 600, filters: dustpedia_ir}}
  model: plugins.toy_sed:factory
"""


@pytest.fixture(autouse=True)
def plugin_path(monkeypatch):
    monkeypatch.syspath_prepend(str(TESTS))
    monkeypatch.setenv("PYTHONPATH", str(TESTS))


def groups(path: Path) -> list[str]:
    found = [""]
    with h5py.File(path) as h5:
        h5.visititems(lambda name, obj: found.append(name) if isinstance(obj, h5py.Group) else None)
    return found


def assert_named_dimensions(path: Path, expected: dict[str, dict[str, int]]) -> None:
    """Every group opens in xarray with named dimensions only; ``expected``: group -> some of its dimensions."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for group in groups(path):
            with xarray.open_dataset(path, group=group or None, engine="h5netcdf") as ds:
                phony = [d for d in ds.sizes if str(d).startswith("phony_dim")]
                assert not phony, f"{path}:/{group}: unnamed dimensions {phony} ({dict(ds.sizes)})"
                for name, size in expected.get(group, {}).items():
                    assert ds.sizes.get(name) == size, (group, name, dict(ds.sizes))


def assert_units_beside_unit(path: Path) -> None:
    seen = []

    def check(name, obj):
        if "unit" in obj.attrs:
            assert obj.attrs["units"] == obj.attrs["unit"], name
            seen.append(name)

    with h5py.File(path) as h5:
        h5.visititems(check)
    assert seen


# -- sample ----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sample_dir(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("sample_reader")
    (directory / "cfg.yaml").write_text(SAMPLE.format(output="serial.h5"))
    return directory


@pytest.fixture(scope="module")
def sample_file(sample_dir) -> Path:
    import sys

    sys.path.insert(0, str(TESTS))
    return hpcfit.run(sample_dir / "cfg.yaml").path


def test_sample_reader_round_trips(sample_file):
    result = hpcfit.open(sample_file)
    assert type(result).__name__ == "SampleResult" and len(result) == 2500
    with h5py.File(sample_file) as h5:
        np.testing.assert_array_equal(np.asarray(result.theta), h5["samples/theta"][()])
        np.testing.assert_array_equal(result.x.numpy(), h5["samples/simulated_y"][()])
        np.testing.assert_array_equal(result.x.numpy(max_rows=7), h5["samples/simulated_y"][:7])
        np.testing.assert_array_equal(result.theta[100:110, 2], h5["samples/theta"][100:110, 2])
        assert result.names == ["redshift", "log_mass", "dust2", "tage", "log_tau"]
        low, high = result.bounds
        np.testing.assert_array_equal(low, h5["samples/theta"].attrs["low"])
        np.testing.assert_array_equal(high, [6.0, 12.0, 2.0, 13.0, 1.5])
        assert list(result.log10) == [False, True, False, False, True]
        assert result.filters == [n.decode() if isinstance(n, bytes) else n
                                  for n in h5["samples/simulated_y"].attrs["filter_names"]]
        assert str(result.wavelengths.unit) == "Angstrom"
        np.testing.assert_array_equal(result.wavelengths.value, h5["samples/wavelengths"][()])
    assert result.priors["dust2"] == {"prior": "log_uniform", "low": 0.01, "high": 2.0}
    assert result.x.shape == (2500, len(result.filters))


def test_sample_file_reads_as_an_sbi_dataset(sample_file):
    """Root /theta and /x (what lampe's H5Dataset opens) are the same data as /samples/theta, simulated_y."""
    with h5py.File(sample_file) as h5:
        assert h5["theta"] == h5["samples/theta"] and h5["x"] == h5["samples/simulated_y"]  # same objects
        np.testing.assert_array_equal(h5["x"][:5], h5["samples/simulated_y"][:5])


def test_sample_dimensions_units(sample_file):
    assert_named_dimensions(sample_file, {"": {"sample": 2500, "parameter": 5, "band": 7},
                                          "samples": {"sample": 2500, "parameter": 5, "band": 7}})
    assert_units_beside_unit(sample_file)
    with h5py.File(sample_file) as h5:
        assert h5["sample"].id.get_storage_size() == 0  # the N-long axis has no values to store
    from hpcfit.io.inspect import inspect_file

    lines = inspect_file(sample_file).splitlines()
    assert any(line.split() == ["sample", "2500", "(dimension)"] for line in lines), lines
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with xarray.open_dataset(sample_file, group="samples", engine="h5netcdf") as ds:
            assert ds["theta"].dims == ("sample", "parameter")
            assert ds["simulated_y"].dims == ("sample", "band")
            assert ds["simulated_y"].attrs["units"] == "maggies"
        with xarray.open_dataset(sample_file, engine="h5netcdf") as ds:
            assert [v.decode() for v in ds["parameter"].values] == ["redshift", "log_mass", "dust2", "tage",
                                                                    "log_tau"]
            np.testing.assert_array_equal(ds["x"].values, hpcfit.open(sample_file).x.numpy())


@pytest.mark.mpi
@pytest.mark.parametrize("serial_h5py", [False, True], ids=["mpio", "serial-h5py"])
def test_dimensions_through_both_parallel_write_paths(sample_dir, sample_file, serial_h5py):
    name = "serial_fallback.h5" if serial_h5py else "mpio.h5"
    result = launch(["run", "cfg.yaml", "--set", f"output={name}"], n=2, cwd=sample_dir, serial_h5py=serial_h5py)
    assert result.returncode == 0, result.output
    assert_ran_with(sample_dir / name, n_ranks=2, mode="serial" if serial_h5py else "mpio")
    assert_named_dimensions(sample_dir / name, {"samples": {"sample": 2500, "parameter": 5, "band": 7}})
    assert_units_beside_unit(sample_dir / name)
    with h5py.File(sample_dir / name) as a, h5py.File(sample_file) as b:
        np.testing.assert_array_equal(a["theta"][()], b["theta"][()])
        for dset in ("samples/theta", "samples/simulated_y", "samples/wavelengths"):
            assert [s[0].name for s in a[dset].dims] == [s[0].name for s in b[dset].dims]


# -- gridfit ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gridfit_file(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("gridfit_reader")
    write_inputs(directory, n_galaxies=12)
    return hpcfit.run(gridfit_config(directory, "cfg.yaml", "out.h5", chi2="full")).path


def test_gridfit_reader_round_trips(gridfit_file):
    from astropy import units as u

    result = hpcfit.open(gridfit_file)
    table = result.table
    with h5py.File(gridfit_file) as h5:
        assert len(table) == 12
        np.testing.assert_array_equal(np.asarray(table["id"]).astype(str),
                                      np.char.decode(h5["ids"][()]) if h5["ids"].dtype.kind == "S" else h5["ids"][()])
        np.testing.assert_array_equal(table["best.chi2"], h5["best/chi2"][()])
        assert table["best.dust_mass"].unit == u.solMass
        np.testing.assert_array_equal(table["best.dust_mass"].value, h5["best/dust_mass"][()])
        assert table["distance"].unit == u.Mpc
        for b, band in enumerate(result.bands):
            assert table[f"best.{band}"].unit == u.mJy
            np.testing.assert_array_equal(table[f"best.{band}"].value, h5["best/fluxes"][:, b])
        for name in h5["bayes"]:
            np.testing.assert_array_equal(np.asarray(table[f"bayes.{name}"].value
                                                     if hasattr(table[f"bayes.{name}"], "unit")
                                                     else table[f"bayes.{name}"]), h5[f"bayes/{name}"][()])
        assert table["bayes.log_dust_mass"].unit == u.dex(u.solMass)
        assert table["bayes.temperature"].unit == u.K
        np.testing.assert_array_equal(result.chi2[3], h5["chi2"][3])
        np.testing.assert_array_equal(np.asarray(result.chi2), h5["chi2"][()])
        grid = result.grid_parameters
        assert list(grid.colnames) == ["model_index"] + result.parameter_names
        np.testing.assert_array_equal(grid["temperature"].value, h5["grid/parameters"][:, 0])
    assert table.colnames[:6] == ["id", "distance", "n_bands", "n_upper_limits", "best.model_index", "best.chi2"]
    assert result.wavelengths.unit == u.um and len(result.bands) == 6


def test_gridfit_chi2_not_kept_says_how_to_keep_it(tmp_path_factory):
    directory = tmp_path_factory.mktemp("gridfit_best")
    write_inputs(directory, n_galaxies=12)
    result = hpcfit.run(gridfit_config(directory, "cfg.yaml", "best.h5", chi2="best"))
    assert not result.has_chi2
    with pytest.raises(ValueError, match="gridfit.fit.chi2=full"):
        result.chi2  # noqa: B018


def test_gridfit_dimensions_units(gridfit_file):
    n_models = 87
    assert_named_dimensions(gridfit_file, {"": {"galaxy": 12, "model": n_models, "band": 6},
                                           "best": {"galaxy": 12, "band": 6}, "grid": {"model": n_models},
                                           "bayes": {"galaxy": 12}})
    assert_units_beside_unit(gridfit_file)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with xarray.open_dataset(gridfit_file, engine="h5netcdf") as ds:
            assert ds["chi2"].dims == ("galaxy", "model")
        with xarray.open_dataset(gridfit_file, group="best", engine="h5netcdf") as ds:
            assert ds["fluxes"].dims == ("galaxy", "band") and ds["fluxes"].attrs["units"] == "mJy"


# -- cubefit ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cubefit_file(tmp_path_factory) -> Path:
    directory = cube_workdir(tmp_path_factory, "cubefit_reader", (30, 6, 7))
    return hpcfit.run(directory / "cfg.yaml").path


def test_cubefit_opens_and_names_its_dimensions(cubefit_file):
    result = hpcfit.open(cubefit_file)
    assert result.attrs["job"] == "cubefit"
    np.testing.assert_array_equal(result.read("parameters/mean"), h5py.File(cubefit_file)["parameters/mean"][()])
    assert result.quantity("parameters/mean").unit == "m / s"
    assert_named_dimensions(cubefit_file, {"parameters": {"y": 6, "x": 7}, "world": {"y": 6, "x": 7},
                                           "": {"y": 6, "x": 7}})
    assert_units_beside_unit(cubefit_file)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with xarray.open_dataset(cubefit_file, group="fit_axes", engine="h5netcdf") as ds:
            (name,) = list(ds.data_vars) or list(ds.coords)
            assert ds[name].dims == (name if name in ds.sizes else ds[name].dims[0],)
            assert ds.sizes[ds[name].dims[0]] == 30
        with xarray.open_dataset(cubefit_file, engine="h5netcdf") as ds:
            assert ds["status"].dims == ("y", "x")


# -- calibrate -------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def calibrate_file(tmp_path_factory) -> Path:
    from hpcfit.calibrate.kernels.synthetic import make_night

    directory = tmp_path_factory.mktemp("calibrate_reader")
    make_night(directory / "night", shape=(40, 48), n_bias=5, n_dark=3, n_flat=3, n_science=3)
    config = {"job": "calibrate", "output": str(directory / "out.h5"), "run": {"progress": "none"},
              "calibrate": {"inputs": [str(directory / "night")], "uncertainty": True}}
    return hpcfit.run(config).path


def test_calibrate_reader_round_trips(calibrate_file):
    from astropy import units as u
    from astropy.nddata import CCDData, StdDevUncertainty

    result = hpcfit.open(calibrate_file)
    masters = result.masters
    assert set(masters) == {"bias", "dark", "flat"}
    assert masters["dark"].unit == u.adu / u.s and masters["bias"].unit == u.adu
    with h5py.File(calibrate_file) as h5:
        np.testing.assert_array_equal(masters["flat"].data, h5["masters/flat"][0])
        assert masters["bias"].meta["n_frames"] == 5
        science = result.science
        assert len(science) == h5["science/images"].shape[0] == 3
        frame = science[1]
        assert isinstance(frame, CCDData) and frame.unit == u.adu
        np.testing.assert_array_equal(frame.data, h5["science/images"][1])
        assert isinstance(frame.uncertainty, StdDevUncertainty)
        np.testing.assert_array_equal(frame.uncertainty.array, h5["science/uncertainty"][1])
        np.testing.assert_array_equal(frame.mask, ~np.isfinite(h5["science/images"][1]))
        assert frame.meta["name"] == h5["science/names"][1].decode() == science.names[1]
        assert frame.meta["exptime"] == h5["science/exptime"][1]
        np.testing.assert_array_equal(science[science.names[2]].data, science[-1].data)
    with pytest.raises(KeyError, match="no science frame"):
        science["absent.fits"]
    with pytest.raises(IndexError):
        science[3]
    assert len(result.frames) == 5 + 3 + 3 + 3 and "status" in result.frames.colnames
    assert len(result.rejected) == 0


def test_calibrate_dimensions_units(calibrate_file):
    assert_named_dimensions(calibrate_file, {"science": {"frame": 3, "y": 40, "x": 48},
                                             "masters": {"y": 40, "x": 48, "bias_group": 1},
                                             "": {"input_frame": 14}})
    assert_units_beside_unit(calibrate_file)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with xarray.open_dataset(calibrate_file, group="science", engine="h5netcdf") as ds:
            assert ds["images"].dims == ("frame", "y", "x") and ds["images"].attrs["units"] == "adu"
