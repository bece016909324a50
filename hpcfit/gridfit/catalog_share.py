"""The catalogue on every rank, as numpy arrays (set-up, collective; the communicator is passed in).

* :func:`gather_slices`: every rank read and validated its share of the rows (``catalog_rows``); the shares are
  concatenated in rank order on every rank by one ``Allgatherv`` per array (text ids first padded to the widest
  share's width, so that every rank holds the same dtype).
* :func:`broadcast_catalog`: rank 0 parsed the whole catalogue (a format that is not read in slices, or one rank);
  its arrays reach the others by ``Bcast``.

Either way the arrays are what the chi2 stage, the owners' output and the results table need: ids, distances,
redshifts (when read), flux, error, valid and upper (G x B).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hpcfit.gridfit.catalog import Catalog


def gather_slices(comm: Any, part: Catalog) -> Catalog:
    """The whole catalogue on every rank from each rank's ``part`` (its rows, in rank order)."""
    if comm.size == 1:
        return part
    meta, arrays = part.to_arrays()
    counts = np.array(comm.allgather(part.n_galaxies), dtype=np.int64)
    ids = arrays["ids"]
    if ids.dtype.kind == "U":  # shares hold text of different widths: pad to the widest
        width = comm.allreduce(ids.dtype.itemsize // 4, "max")
        arrays["ids"] = ids.astype(f"U{max(width, 1)}")
    whole = {}
    for name, array in arrays.items():
        row_bytes = array.dtype.itemsize * int(np.prod(array.shape[1:], dtype=np.int64))
        out = np.empty((int(counts.sum()),) + array.shape[1:], array.dtype)
        sizes = counts * row_bytes
        displs = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        send = np.ascontiguousarray(array).reshape(-1).view(np.uint8)
        comm.mpi.Allgatherv(send, [out.reshape(-1).view(np.uint8), (sizes, displs)])
        whole[name] = out
    return Catalog.from_arrays(meta, whole)


def broadcast_catalog(comm: Any, catalog: Catalog | None) -> Catalog:
    """Rank 0's ``catalog`` on every rank (None on the others): each array's bytes by ``Bcast``."""
    if comm.size == 1:
        return catalog
    meta, arrays = catalog.to_arrays() if comm.is_root else (None, {})
    meta, layout = comm.bcast((meta, {k: (a.shape, a.dtype.str) for k, a in arrays.items()}) if comm.is_root
                              else None)
    shared = {}
    for name, (shape, dtype) in layout.items():
        array = arrays[name] if comm.is_root else np.empty(shape, np.dtype(dtype))
        if array.size:
            comm.mpi.Bcast(array.reshape(-1).view(np.uint8), root=0)
        shared[name] = array
    return catalog if comm.is_root else Catalog.from_arrays(meta, shared)
