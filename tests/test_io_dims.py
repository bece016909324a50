"""hpcfit.io.dims on small files: scales in the root group shared by every group, coordinates, ``group/*``,
``units`` beside ``unit`` (an existing ``units`` kept), links, and the mistakes it refuses; and the shared reader
helpers of hpcfit.io.result (units, lazy datasets)."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from hpcfit.io.dims import FileFinish, finish_file
from hpcfit.io.result import JobResult, LazyDataset, parse_unit, with_unit


def _file(path, **datasets):
    with h5py.File(path, "w") as h5:
        h5.attrs["job"] = "sample"
        for name, (data, attrs) in datasets.items():
            dset = h5.create_dataset(name, data=data)
            dset.attrs.update(attrs)
    return path


def test_scales_coordinates_groups_units_and_links(tmp_path):
    path = _file(tmp_path / "a.h5", **{"g/flux": (np.zeros((3, 2)), {"unit": "mJy"}),
                                       "g/err": (np.ones((3, 2)), {"unit": "mJy", "units": "keep"}),
                                       "h/ids": (np.arange(3), {}), "top": (np.zeros(2), {})})
    finish = FileFinish()
    finish.name_dimensions("g/*", ("galaxy", "band"), {"band": ["u", "g"]})
    finish.name_dimensions("h/ids", ("galaxy",))
    finish.name_dimensions("top", ("band",))
    finish.name_dimensions("absent/x", ("whatever",))  # a dataset the run did not write: skipped
    finish.link("x", "g/flux")
    finish_file(path, finish)
    with h5py.File(path) as h5:
        assert h5["galaxy"].attrs["CLASS"] == b"DIMENSION_SCALE"
        # no coordinate values: a pure netCDF dimension, with no storage allocated
        assert h5["galaxy"].attrs["NAME"].decode().startswith("This is a netCDF dimension but not a netCDF var")
        assert h5["galaxy"].id.get_storage_size() == 0 and h5["galaxy"].shape == (3,)
        assert list(h5["band"][()]) == [b"u", b"g"]
        for name in ("g/flux", "g/err"):
            assert [d[0].name for d in h5[name].dims] == ["/galaxy", "/band"]
            assert [d.label for d in h5[name].dims] == ["galaxy", "band"]
        assert h5["h/ids"].dims[0][0].name == "/galaxy" and h5["top"].dims[0][0].name == "/band"
        assert h5["g/flux"].attrs["units"] == "mJy" and h5["g/err"].attrs["units"] == "keep"
        assert "units" not in h5["top"].attrs and "whatever" not in h5
        assert h5["x"] == h5["g/flux"]


def test_refuses_inconsistent_dimensions(tmp_path):
    path = _file(tmp_path / "b.h5", a=(np.zeros(3), {}), b=(np.zeros(4), {}), c=(np.zeros((2, 2)), {}))
    finish = FileFinish()
    finish.name_dimensions("a", ("n",))
    finish.name_dimensions("b", ("n",))
    with pytest.raises(ValueError, match="dimension 'n' has length 3 and 4"):
        finish_file(path, finish)
    finish = FileFinish()
    finish.name_dimensions("c", ("n",))
    with pytest.raises(ValueError, match="1 dimension name"):
        finish_file(path, finish)
    finish = FileFinish()
    finish.name_dimensions("b", ("a",))  # /a exists with another length
    with pytest.raises(ValueError, match="cannot name a dimension 'a'"):
        finish_file(path, finish)


def test_reader_units_and_lazy_reads(tmp_path):
    from astropy import units as u

    path = _file(tmp_path / "c.h5", **{"m": (np.arange(12.0).reshape(6, 2), {"unit": "dex(solMass)"}),
                                       "names": (np.array([b"a", b"b"]), {}),
                                       "odd": (np.arange(2.0), {"unit": "W / Hz per solMass of dust"})})
    result = JobResult(path)
    assert result.quantity("m").unit == u.dex(u.solMass)
    assert not hasattr(result.quantity("odd"), "unit")  # a description astropy cannot compute with: plain values
    assert list(result.read("names")) == ["a", "b"]
    assert parse_unit("") is None and with_unit(np.ones(2), "")[0] == 1.0
    lazy = LazyDataset(result, "m")
    assert lazy.shape == (6, 2) and len(lazy) == 6
    np.testing.assert_array_equal(lazy[2:4], np.arange(4.0, 8.0).reshape(2, 2))
    np.testing.assert_array_equal(lazy.numpy(max_rows=1), [[0.0, 1.0]])
    np.testing.assert_array_equal(np.asarray(lazy), np.arange(12.0).reshape(6, 2))
    with pytest.raises(KeyError, match="no dataset /nothing"):
        result.read("nothing")
