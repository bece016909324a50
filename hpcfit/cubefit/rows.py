"""One range of fits, read and fitted: what the job's ``work`` does for a chunk, and what ``hpcfit.parallel_fit``
does in one process for each chunk (so both paths share one code path, MPI-free).

The iterating axes of the cube are flattened in C order; fits ``[start, stop)`` are read as rows (B, n) with the
fitting axes flattened in their given order (``read_rows``), weights of any kind are turned into astropy's 1/sigma
(``as_weights``), and ``fit_range`` fits them with :func:`hpcfit.cubefit.fit_chunk.fit_chunk` and adds the world
coordinates of the iterating axes.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from hpcfit.cubefit.boxes import flat_range_boxes
from hpcfit.cubefit.fit_chunk import ChunkResult, FitSetup, fit_chunk


class Readable(Protocol):
    """Anything with a shape and ``read(index)`` for a basic-slicing index (``arrays.ArraySource``,
    :class:`InMemory`)."""

    shape: tuple[int, ...]

    def read(self, index: tuple) -> np.ndarray: ...


class InMemory:
    """An array already in memory, read like an :class:`hpcfit.cubefit.arrays.ArraySource`."""

    def __init__(self, array: np.ndarray):
        self.array = array
        self.shape = tuple(array.shape)

    def read(self, index: tuple) -> np.ndarray:
        return np.asarray(self.array[index])


def read_rows(source: Readable | None, world: Any, start: int, stop: int) -> np.ndarray | None:
    """Rows [start, stop) of the iterating grid as (B, n_fit) float64, fitting axes flattened in their given
    order; None when there is no source."""
    if source is None:
        return None
    shape = world.shape
    iter_axes, fit_axes = world.iterating_axes, world.fitting_axes
    iter_shape = tuple(shape[i] for i in iter_axes)
    n_fit = int(np.prod(world.fitting_shape))
    blocks = []
    for box, a, b in flat_range_boxes(iter_shape, start, stop):
        index = [slice(None)] * len(shape)
        for axis, sl in zip(iter_axes, box):
            index[axis] = sl
        block = source.read(tuple(index))
        block = np.moveaxis(block, list(iter_axes) + list(fit_axes), list(range(len(shape))))
        blocks.append(block.reshape(b - a, n_fit))
    return np.concatenate(blocks, axis=0).astype(np.float64, copy=False)


def as_weights(raw: np.ndarray | None, kind: str) -> np.ndarray | None:
    """astropy's weights (1/sigma) from an array of ``kind``: weights, uncertainty, variance, inverse_variance."""
    if raw is None:
        return None
    with np.errstate(divide="ignore", invalid="ignore"):
        if kind == "weights":
            return raw
        if kind == "uncertainty":
            return 1.0 / raw
        if kind == "variance":
            return 1.0 / np.sqrt(raw)
        if kind == "inverse_variance":
            return np.sqrt(raw)
    raise ValueError(f"unknown weights kind {kind!r} (allowed: weights, uncertainty, variance, inverse_variance)")


def fit_range(setup: FitSetup, world: Any, data: Readable, weights: Readable | None, weights_kind: str,
              mask: Readable | None, start: int, stop: int) -> tuple[ChunkResult, dict[str, np.ndarray]]:
    """Fit fits [start, stop) of the cube; returns the chunk's result (with ``.world``: the iterating axes'
    world coordinates) and the inputs used (``y``, ``weights``, ``mask``, ``coords``, ``iter_index``) for
    diagnostics."""
    iter_shape = tuple(world.shape[i] for i in world.iterating_axes)
    y = read_rows(data, world, start, stop)
    w = as_weights(read_rows(weights, world, start, stop), weights_kind)
    m = read_rows(mask, world, start, stop)
    m = None if m is None else m != 0
    iter_index = np.stack(np.unravel_index(np.arange(start, stop), iter_shape), axis=1)
    coords = world.fitting_coords(iter_index)
    # per-fit starting values (a parameter's value given as a map), flattened in the fits' order
    initial = {name: values.reshape(-1)[start:stop] for name, values in setup.built.initial_maps.items()} or None
    result = fit_chunk(setup, y, w, m, coords, initial)
    result.world = world.iterating_values(iter_index)  # type: ignore[attr-defined]
    return result, {"y": y, "weights": w, "mask": m, "coords": coords, "iter_index": iter_index}
