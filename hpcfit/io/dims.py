"""Named dimensions for the output file, so that other tools read it without being told its layout.

netCDF readers (``xarray.open_dataset(path, group=..., engine="h5netcdf")``) name a dataset's axes after the HDF5
dimension scales attached to them, and fall back to ``phony_dim_N`` without them. Every job declares its axes
(``OutputFile.name_dimensions``); :func:`finish_file` then, on the complete file, creates one scale per dimension
name in the root group (netCDF groups see their ancestors' dimensions, so ``/best`` and ``/chi2`` share ``galaxy``)
and attaches it. It also writes the CF spelling ``units`` beside every ``unit`` attribute, and the HDF5 links
(``/theta`` -> ``/samples/theta``) that let readers expecting a dataset at a fixed path read the file as it is.

This runs once, on rank 0, on the closed file (before it gets its final name): dimension scales are attributes
and object references, metadata that parallel HDF5 would make every rank write identically; on the complete
file one process does it the same way whatever the output mode was.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import h5py
import numpy as np


@dataclass
class FileFinish:
    """What to add to a complete output file: dimension names, coordinate values, links."""

    dims: dict[str, tuple[str, ...]] = field(default_factory=dict)  # dataset path (or group/*) -> axis names
    coords: dict[str, np.ndarray] = field(default_factory=dict)  # dimension name -> its values (else none)
    links: dict[str, str] = field(default_factory=dict)  # new path -> existing dataset path (hard links)

    def name_dimensions(self, dataset: str, names: Sequence[str], coords: dict[str, Any] | None = None) -> None:
        self.dims[dataset.strip("/")] = tuple(names)
        for name, values in (coords or {}).items():
            self.coords[name] = np.asarray(values)

    def link(self, new: str, existing: str) -> None:
        self.links[new.strip("/")] = existing.strip("/")


# netCDF-4's mark of a dimension that has no coordinate values (h5netcdf and netCDF-C read it so)
_NO_COORDINATE = "This is a netCDF dimension but not a netCDF variable. {n:10d}"


def _create_scale(h5: h5py.File, name: str, n: int, values: np.ndarray | None) -> h5py.Dataset:
    """The dimension scale /name: holding its coordinate values when given, else a dataset with no storage
    allocated (a 100 M-sample axis costs nothing) marked as a pure dimension."""
    if values is None or values.shape != (n,):
        scale = h5.create_dataset(name, shape=(n,), dtype="f4")  # never written: no space in the file
        scale.make_scale(_NO_COORDINATE.format(n=n))
        return scale
    if values.dtype.kind == "U":  # fixed-length UTF-8 bytes, as the rest of the file stores names
        values = np.char.encode(values, "utf-8")
    scale = h5.create_dataset(name, data=values)
    scale.make_scale(name)
    return scale


def finish_file(path: str | Path, finish: FileFinish) -> None:
    """Apply ``finish`` to the closed HDF5 file at ``path`` (one process), and add ``units`` beside ``unit``."""
    with h5py.File(path, "r+") as h5:
        for new, existing in finish.links.items():
            if new not in h5 and existing in h5:
                h5[new] = h5[existing]
        finish = _expanded(h5, finish)
        lengths: dict[str, int] = {}
        for dataset, names in finish.dims.items():
            if dataset not in h5:
                continue
            dset = h5[dataset]
            if len(names) != dset.ndim:
                raise ValueError(f"{dataset}: {len(names)} dimension name(s) {names} for {dset.ndim} axes")
            for name, n in zip(names, dset.shape):
                if lengths.setdefault(name, n) != n:
                    raise ValueError(f"dimension '{name}' has length {lengths[name]} and {n} ({dataset})")
        scales: dict[str, h5py.Dataset] = {}
        for name, n in lengths.items():
            if name in h5:
                scale = h5[name]
                if not (isinstance(scale, h5py.Dataset) and scale.shape == (n,)):
                    raise ValueError(f"cannot name a dimension '{name}': /{name} exists and is not a 1-D "
                                     f"dataset of length {n}")
                scale.make_scale(name)
            else:
                scale = _create_scale(h5, name, n, finish.coords.get(name))
            scales[name] = scale
        for dataset, names in finish.dims.items():
            if dataset not in h5:
                continue
            dset = h5[dataset]
            for axis, name in enumerate(names):
                if dset.name != scales[name].name:
                    dset.dims[axis].attach_scale(scales[name])
                    dset.dims[axis].label = name
        h5.visititems(_add_units)


def _expanded(h5: h5py.File, finish: FileFinish) -> FileFinish:
    """``group/*`` in ``finish.dims`` stands for every dataset of the group (none when it is absent)."""
    dims: dict[str, tuple[str, ...]] = {}
    for name, names in finish.dims.items():
        if name.endswith("/*"):
            group = h5.get(name[:-2])
            if isinstance(group, h5py.Group):
                dims.update({f"{group.name.strip('/')}/{key}": names for key, obj in group.items()
                             if isinstance(obj, h5py.Dataset)})
        else:
            dims[name] = names
    return FileFinish(dims, finish.coords, finish.links)


def _add_units(_: str, obj: Any) -> None:
    if "unit" in obj.attrs and "units" not in obj.attrs:
        obj.attrs["units"] = obj.attrs["unit"]
