"""Reading an hpcfit output file back in Python: what every job's result object shares.

Each job's folder has a ``result.py`` with a subclass of :class:`JobResult` (``RESULT = ...``) that turns its HDF5
layout into astropy objects; ``hpcfit.open(path)`` picks the subclass from the file's ``job`` attribute. Datasets are
read when asked for, so opening a large file is cheap.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import h5py
import numpy as np


class ResultFileError(ValueError):
    """The file is not an hpcfit output file of the expected job (the message names the file)."""


def _text(value: Any) -> Any:
    return value.decode() if isinstance(value, bytes) else value


class JobResult:
    """An hpcfit output file, opened for reading. Subclasses add the job's own views."""

    job: str = ""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            with h5py.File(self.path, "r") as h5:
                self.attrs: dict[str, Any] = {key: _text(value) for key, value in h5.attrs.items()}
        except OSError as exc:
            raise ResultFileError(f"{self.path}: not a readable HDF5 file ({exc})") from None
        found = self.attrs.get("job")
        if found is None:
            raise ResultFileError(f"{self.path}: no 'job' attribute; not an hpcfit output file")
        if self.job and found != self.job:
            raise ResultFileError(f"{self.path}: a {found} output, not a {self.job} one")

    @property
    def provenance(self) -> dict[str, Any]:
        """The root attributes: versions, config text, command line, ranks, hosts, times."""
        return dict(self.attrs)

    @property
    def config(self) -> str:
        """The config text the run used."""
        return str(self.attrs.get("config", ""))

    def h5(self) -> h5py.File:
        """The file opened read-only (use as a context manager)."""
        return h5py.File(self.path, "r")

    def read(self, name: str, selection: Any = ()) -> Any:
        """A dataset's values (or a ``selection`` of them, e.g. ``np.s_[:100]``), as stored; strings decoded."""
        with self.h5() as h5:
            if name not in h5:
                raise KeyError(f"{self.path}: no dataset /{name.strip('/')}")
            return decoded(h5[name][selection])

    def quantity(self, name: str, selection: Any = ()) -> Any:
        """A dataset with its ``unit`` attribute as an astropy ``Quantity`` (plain values when it has none)."""
        with self.h5() as h5:
            if name not in h5:
                raise KeyError(f"{self.path}: no dataset /{name.strip('/')}")
            return with_unit(h5[name][selection], unit_of(h5[name]))

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.attrs.get('job')} {str(self.path)!r}>"


def decoded(values: Any) -> Any:
    """Fixed-length UTF-8 bytes (how the output stores names) as str; anything else unchanged."""
    if isinstance(values, np.ndarray) and values.dtype.kind == "S":
        return np.char.decode(values, "utf-8")
    return _text(values)


def unit_of(dset: h5py.Dataset) -> str:
    """The ``unit`` attribute of a dataset ("" when it has none)."""
    return str(_text(dset.attrs.get("unit", "")))


def parse_unit(unit: str) -> Any:
    """An astropy unit from the output's unit strings (dex(...) and percent included); None for no unit, and an
    ``UnrecognizedUnit`` (kept as text) for a description astropy cannot parse."""
    from astropy import units as u

    if not unit:
        return None
    return u.Unit(unit, parse_strict="silent")


def with_unit(values: Any, unit: str) -> Any:
    """``values`` as a Quantity in ``unit`` (dex units give astropy's logarithmic quantities); unchanged when the
    unit is empty or not a unit astropy can compute with."""
    from astropy import units as u

    parsed = parse_unit(unit)
    if parsed is None or isinstance(parsed, u.UnrecognizedUnit):
        return values
    return values * parsed


class LazyDataset:
    """A dataset read slice by slice (``lazy[1000:2000]``), the file closed between reads: for arrays larger
    than memory. ``np.asarray(lazy)`` reads it all."""

    def __init__(self, result: JobResult, name: str):
        self._result, self._name = result, name
        with result.h5() as h5:
            self.shape, self.dtype = h5[name].shape, h5[name].dtype

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, selection: Any) -> np.ndarray:
        return self._result.read(self._name, selection)

    def numpy(self, max_rows: int | None = None) -> np.ndarray:
        """The first ``max_rows`` rows (all when None) as a numpy array."""
        return self[: max_rows] if max_rows is not None else self._result.read(self._name)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        values = self._result.read(self._name)
        return values if dtype is None else values.astype(dtype)

    def __repr__(self) -> str:
        return f"<lazy /{self._name} {self.shape} {self.dtype} of {self._result.path.name}>"
