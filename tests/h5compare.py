"""Read every dataset of an HDF5 file, to compare outputs of different runs; check how a file was written."""

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


def assert_ran_with(path: str | Path, *, n_ranks: int, mode: str | None = "mpio") -> None:
    """Assert from an output file's provenance that it was written by ``n_ranks`` ranks, in HDF5 mode ``mode``
    (``mpio``: parallel HDF5; ``serial``: the serial-h5py fallback; None: not checked). A test that claims MPI
    must prove it ran under MPI: a launcher ignoring ``-n`` (one serial process) writes the same datasets."""
    with h5py.File(path, "r") as h5:
        ranks, written = h5.attrs.get("n_ranks"), h5.attrs.get("output_mode")
    assert ranks == n_ranks, f"{path}: written by {ranks} rank(s), expected {n_ranks}"
    if mode is not None:
        assert written == mode, f"{path}: HDF5 mode {written!r}, expected {mode!r}"
