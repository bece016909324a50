"""Read every dataset of an HDF5 file, to compare outputs of different runs."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np


def datasets(path: str | Path) -> dict[str, np.ndarray]:
    found: dict[str, np.ndarray] = {}
    with h5py.File(path, "r") as h5:
        h5.visititems(lambda name, obj: found.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
    return found


def assert_same_datasets(a: str | Path, b: str | Path) -> None:
    da, db = datasets(a), datasets(b)
    assert sorted(da) == sorted(db), (sorted(da), sorted(db))
    for name in da:
        x, y = da[name], db[name]
        assert x.shape == y.shape and x.dtype == y.dtype, name
        if x.dtype.kind == "f":
            np.testing.assert_array_equal(x, y, err_msg=name)  # NaNs compare equal here
        else:
            assert np.array_equal(x, y), name
