"""One rank's pieces of one dataset written as one HDF5 write: the union of their hyperslabs.

A job that writes many small pieces (cubefit: each of a rank's items is a few boxes of every map) would otherwise
make one HDF5 write per piece and dataset — one MPI-IO call each, with their own locking and, in a collective
transfer, one round of every rank per piece. HDF5 accepts a file selection that is a union of hyperslabs
(``H5S_SELECT_OR``) and fills it from a one-dimensional memory buffer **in the file's row-major order**, not in the
order the hyperslabs were added. So the buffer is laid out in that order:

* pieces that do not interleave in the file (each piece's flat index range ends before the next begins, as flat
  ranges of a map do) are simply concatenated, sorted by where they start;
* pieces that interleave (tiles side by side) are placed element by element (a stable sort of flat indices),
  up to ``MAX_SORTED_ELEMENTS``; beyond that they are written one by one as before.

Pieces that overlap are never merged (written one by one, the last piece wins, as before), nor are pieces of
variable-length or object types. ``MAX_PIECES`` and ``MAX_BYTES`` bound the selection's size and the buffer's
memory (one copy of the rank's pieces).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import h5py
import numpy as np

Selection = tuple[slice, ...]

MAX_PIECES = 1024             # hyperslabs in one union: HDF5's selection operations grow with their number
MAX_BYTES = 64 << 20          # the merged buffer is one more copy of the rank's pieces
MAX_SORTED_ELEMENTS = 1 << 20  # interleaved pieces: the element sort costs ~0.1 s per million


@dataclass(frozen=True)
class PieceUnion:
    """Several disjoint hyperslabs of one dataset (``starts``, ``counts``: one row per piece, every axis) and their
    values in the file's row-major order."""

    starts: np.ndarray
    counts: np.ndarray
    values: np.ndarray

    @property
    def pieces(self) -> int:
        return len(self.starts)

    def write(self, dset: h5py.Dataset) -> None:
        """One write of every piece, with the dataset's transfer property list (collective inside
        ``dset.collective``)."""
        mem_space = h5py.h5s.create_simple((self.values.size,))
        dset.id.write(mem_space, self.select(dset.id.get_space()), self.values, dxpl=dset._dxpl)

    def select(self, file_space: h5py.h5s.SpaceID) -> h5py.h5s.SpaceID:
        """``file_space`` with the union of the pieces' hyperslabs selected."""
        file_space.select_none()
        for start, count in zip(self.starts.tolist(), self.counts.tolist()):
            file_space.select_hyperslab(tuple(start), tuple(count), op=h5py.h5s.SELECT_OR)
        return file_space


def full_selection(sel: Selection, shape: Sequence[int]) -> Selection:
    """``sel`` with the dataset's trailing axes it leaves out taken whole."""
    return tuple(sel) + tuple(slice(0, n) for n in shape[len(sel):])


def merge_pieces(shape: Sequence[int], dtype: np.dtype, items: list[tuple[Selection, np.ndarray]]
                 ) -> list[tuple[Selection, np.ndarray]] | list[PieceUnion]:
    """The pieces of one dataset of ``shape``/``dtype`` as one ``PieceUnion`` when they can be merged, else
    unchanged (one piece, too many or too large, overlapping, object or variable-length types)."""
    dtype = np.dtype(dtype)
    if len(items) < 2 or len(items) > MAX_PIECES or dtype.kind in "OSUV" or dtype.hasobject:
        return items
    if sum(int(np.prod([s.stop - s.start for s in full_selection(sel, shape)])) for sel, _ in items) \
            * dtype.itemsize > MAX_BYTES:
        return items
    sels = [full_selection(sel, shape) for sel, _ in items]
    starts = np.array([[s.start for s in sel] for sel in sels], dtype=np.int64)
    counts = np.array([[s.stop - s.start for s in sel] for sel in sels], dtype=np.int64)
    if np.any(counts <= 0):
        return items
    strides = np.ones(len(shape), dtype=np.int64)
    strides[:-1] = np.cumprod(np.asarray(shape, dtype=np.int64)[::-1])[:-1][::-1]
    first = starts @ strides
    last = (starts + counts - 1) @ strides
    order = np.argsort(first, kind="stable")
    values = [np.ascontiguousarray(items[k][1], dtype=dtype).reshape(-1) for k in order]
    if np.all(last[order][:-1] < first[order][1:]):
        merged = np.concatenate(values)
    else:
        merged = _by_element(starts[order], counts[order], strides, values)
        if merged is None:
            return items
    return [PieceUnion(starts[order], counts[order], merged)]


def _by_element(starts: np.ndarray, counts: np.ndarray, strides: np.ndarray, values: list[np.ndarray]
                ) -> np.ndarray | None:
    """Interleaved pieces placed in file order element by element; None if they overlap or are too many."""
    total = int(counts.prod(axis=1).sum())
    if total > MAX_SORTED_ELEMENTS:
        return None
    flat = []
    for start, count in zip(starts, counts):
        grid = np.zeros((), dtype=np.int64)
        for axis, (a, n) in enumerate(zip(start, count)):
            grid = np.add.outer(grid, (a + np.arange(n, dtype=np.int64)) * strides[axis])
        flat.append(grid.reshape(-1))
    index = np.concatenate(flat)
    order = np.argsort(index, kind="stable")
    if np.any(np.diff(index[order]) == 0):
        return None
    return np.concatenate(values)[order]
