"""One work item of the sample job: its draws, and its rows in the compact form its checkpoint stores.

A batch's parameter columns (theta, the unit draws) follow from (seed, method, global index) alone
(``hypercube``); only the model's band values cost anything to recompute. So a checkpoint keeps the band values
and rebuilds the rest when it is loaded: ``BatchRows`` pickles to (the draw recipe, start, stop, the band values as
stored, a spot check of the draws) instead of every column. For the float32 rows of a 9-parameter, 7-band run that
is 28 bytes a row instead of 108: a quarter of the bytes to write, fsync and keep on disk beside the output, and a
quarter of the checkpoint writer's CPU on the rank's core.

The rebuilt rows are the rows the work step made, bit for bit (the same code draws them). The spot check, 128 rows
of the draws spread over the batch, catches a checkpoint whose draws another version of the code would make
differently: loading it raises instead of pairing band values with parameters they were not computed from.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from hpcfit.sample.hypercube import unit_points
from hpcfit.sample.priors import Prior, apply_priors
from hpcfit.sample.shuffle import Rows

SPOT_CHECK_ROWS = 128


class CheckpointDrawMismatch(ValueError):
    """A checkpoint's stored draws differ from the draws this code makes for its rows."""


@dataclass(frozen=True)
class DrawRecipe:
    """What determines a batch's parameter columns: the design, the seed, the hypercube, the storage type."""

    method: str
    seed: int
    n_samples: int
    low: tuple[float, ...]
    high: tuple[float, ...]
    priors: tuple[Prior, ...]
    partition: int      # the column drawn stratified by index (column 0 of the design)
    dtype: str

    @property
    def parameter_columns(self) -> int:
        """The columns a row's draws take: theta, then the unit draws, one per free parameter each."""
        return 2 * len(self.low)

    def draw(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        """(theta, unit) of global indices start..stop-1, float64, columns in the config's order."""
        dim = len(self.low)
        # Draw with the partition axis in column 0 (stratified by index), then restore the config's order.
        order = [self.partition] + [j for j in range(dim) if j != self.partition]
        drawn = unit_points(self.method, self.seed, start, stop, self.n_samples, dim)
        unit = np.empty_like(drawn)
        unit[:, order] = drawn
        low, high = np.array(self.low), np.array(self.high)
        theta = apply_priors(low + (high - low) * unit, unit, list(self.priors))
        return theta, unit

    def rows(self, start: int, stop: int, y: np.ndarray,
             drawn: tuple[np.ndarray, np.ndarray] | None = None) -> "BatchRows":
        """The batch's rows: index, then theta | unit | y packed in the storage type (``drawn``: this batch's
        ``draw``, when the caller has it already)."""
        theta, unit = drawn if drawn is not None else self.draw(start, stop)
        values = np.concatenate([theta, unit, y], axis=1).astype(self.dtype, copy=False)
        return BatchRows(np.arange(start, stop, dtype=np.int64), values, recipe=self, start=start)


class BatchRows(Rows):
    """The rows of one batch, which know how to rebuild their parameter columns (see the module docstring)."""

    def __init__(self, index: np.ndarray, values: np.ndarray, *, recipe: DrawRecipe, start: int):
        super().__init__(index, values)
        self.recipe = recipe
        self.start = start

    def __reduce__(self) -> tuple[Any, ...]:
        width = self.recipe.parameter_columns
        stop = self.start + self.index.size
        picks = spot_rows(self.index.size)
        return (_rebuild, (self.recipe, self.start, stop, np.ascontiguousarray(self.values[:, width:]),
                           self.values[picks, :width].copy()))


def spot_rows(n: int) -> np.ndarray:
    """The rows of a batch of n whose draws a checkpoint keeps as its spot check."""
    return np.unique(np.linspace(0, max(n - 1, 0), min(n, SPOT_CHECK_ROWS)).astype(np.int64))


def _rebuild(recipe: DrawRecipe, start: int, stop: int, y: np.ndarray, spot: np.ndarray) -> BatchRows:
    rows = recipe.rows(start, stop, y)
    width = recipe.parameter_columns
    if not np.array_equal(rows.values[spot_rows(stop - start), :width], spot, equal_nan=True):
        raise CheckpointDrawMismatch(
            f"the checkpoint of samples {start}..{stop - 1} was drawn differently from how this version of hpcfit "
            "draws them (written by another hpcfit version, or a model that changed the parameter arrays it was given): "
            "its band values cannot be reused. Run again without --resume.")
    return rows
