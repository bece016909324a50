"""N-dimensional input arrays (FITS HDU, HDF5 dataset, .npy) opened lazily so each rank reads only its part.

FITS data are memory-mapped when they are not scaled (BZERO/BSCALE force astropy to materialise them), HDF5
datasets are read by hyperslab, ``.npy`` files are memory-mapped. ``describe_array`` gives shape/dtype/header
without reading data (for planning on rank 0); ``open_array`` is what each rank calls in its setup.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

FITS_SUFFIXES = (".fits", ".fit", ".fts", ".fits.gz", ".fz")
HDF5_SUFFIXES = (".h5", ".hdf5", ".he5")


class ArraySourceError(ValueError):
    """The array cannot be opened as specified (message says what to change); ``key`` is the setting at fault
    (``path``, ``hdu`` or ``dataset``), so a config can point at the right line."""

    def __init__(self, message: str, key: str = "path"):
        super().__init__(message)
        self.key = key


def array_kind(path: str | Path) -> str:
    name = str(path).lower()
    if name.endswith(FITS_SUFFIXES):
        return "fits"
    if name.endswith(HDF5_SUFFIXES):
        return "hdf5"
    if name.endswith(".npy"):
        return "npy"
    raise ArraySourceError(f"'{path}': unknown array file type (allowed: FITS {', '.join(FITS_SUFFIXES)}; "
                           f"HDF5 {', '.join(HDF5_SUFFIXES)}; .npy)")


@dataclass
class ArrayInfo:
    """What planning needs to know about an array, without its data."""

    path: str
    shape: tuple[int, ...]
    dtype: str
    header: Any = None  # astropy Header for FITS, else None
    unit: str | None = None  # BUNIT (FITS) or the dataset's 'unit'/'units' attribute (HDF5)


def _fits_hdu(hdul: Any, hdu: Any, path: str) -> Any:
    try:
        return hdul[hdu]
    except (KeyError, IndexError):
        names = [f"{i}:{h.name}" for i, h in enumerate(hdul)]
        raise ArraySourceError(f"'{path}' has no HDU {hdu!r} (available: {', '.join(names)})", "hdu") from None


def describe_array(path: str, *, hdu: Any = 0, dataset: str | None = None) -> ArrayInfo:
    """Shape, dtype, header and unit of an input array (reads headers only)."""
    kind = array_kind(path)
    if not Path(path).is_file():
        raise ArraySourceError(f"file '{path}' does not exist")
    if kind == "fits":
        from astropy.io import fits

        try:
            with fits.open(path, memmap=True) as hdul:
                h = _fits_hdu(hdul, hdu, path)
                header = h.header.copy()
        except OSError as exc:
            raise ArraySourceError(f"'{path}' is not a readable FITS file: {exc}") from exc
        naxis = header.get("NAXIS", 0)
        if naxis == 0:
            raise ArraySourceError(f"HDU {hdu!r} of '{path}' holds no image data", "hdu")
        shape = tuple(int(header[f"NAXIS{i}"]) for i in range(naxis, 0, -1))
        bitpix = header.get("BITPIX")
        scaled = "BZERO" in header or "BSCALE" in header
        dtype = {8: "uint8", 16: "int16", 32: "int32", 64: "int64", -32: "float32", -64: "float64"}.get(bitpix, "?")
        if scaled:
            dtype = "float32" if bitpix in (8, 16) else "float64"
        unit = header.get("BUNIT")
        return ArrayInfo(path, shape, dtype, header, unit.strip() if isinstance(unit, str) else None)
    if kind == "hdf5":
        import h5py

        if not dataset:
            raise ArraySourceError(f"'{path}' is an HDF5 file: say which dataset to read", "dataset")
        with h5py.File(path, "r") as h5:
            if dataset not in h5 or not isinstance(h5[dataset], h5py.Dataset):
                found: list[str] = []
                h5.visititems(lambda n, o: found.append(n) if isinstance(o, h5py.Dataset) else None)
                raise ArraySourceError(f"'{path}' has no dataset '{dataset}' (available: {', '.join(found[:20])})",
                                       "dataset")
            d = h5[dataset]
            unit = d.attrs.get("unit", d.attrs.get("units"))
            if isinstance(unit, bytes):
                unit = unit.decode()
            return ArrayInfo(path, tuple(d.shape), str(d.dtype), None, unit)
    array = np.load(path, mmap_mode="r")
    return ArrayInfo(path, tuple(array.shape), str(array.dtype), None, None)


class ArraySource:
    """An opened input array; ``read(index)`` returns a numpy array for a basic-slicing index."""

    def __init__(self, path: str, *, hdu: Any = 0, dataset: str | None = None):
        self.path = path
        self.kind = array_kind(path)
        self._handle: Any = None
        if self.kind == "fits":
            from astropy.io import fits

            self._handle = fits.open(path, memmap=True)
            self._array = _fits_hdu(self._handle, hdu, path).data
        elif self.kind == "hdf5":
            import h5py

            self._handle = h5py.File(path, "r")
            self._array = self._handle[dataset]
        else:
            self._array = np.load(path, mmap_mode="r")
        self.shape = tuple(self._array.shape)

    def read(self, index: tuple) -> np.ndarray:
        return np.asarray(self._array[index])

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None
