"""Fast unit tests of hpcfit.cubefit.boxes: flat C-order ranges -> rectangular boxes (checked by brute force)."""

from __future__ import annotations

import itertools
from math import prod

import numpy as np
import pytest

from hpcfit.cubefit.boxes import flat_range_boxes

SHAPES = [(7,), (3, 4), (2, 3, 4), (3, 1, 5), (2, 2, 2, 3)]


def _covered(shape: tuple[int, ...], start: int, stop: int) -> np.ndarray:
    """Flat indices the boxes cover, in the order the boxes list them, checking each box's flat sub-range."""
    flat = np.arange(prod(shape)).reshape(shape)
    seen = []
    for box, a, b in flat_range_boxes(shape, start, stop):
        values = flat[box].ravel()
        assert list(values) == list(range(a, b)), (shape, start, stop, box, a, b)
        seen.extend(values)
    return np.array(seen, dtype=int)


@pytest.mark.parametrize("shape", SHAPES)
def test_every_flat_range_is_covered_exactly_in_order(shape):
    size = prod(shape)
    for start, stop in itertools.combinations(range(size + 1), 2):
        assert list(_covered(shape, start, stop)) == list(range(start, stop)), (shape, start, stop)


@pytest.mark.parametrize("shape", SHAPES)
def test_at_most_2ndim_minus_1_boxes(shape):
    size = prod(shape)
    bound = 2 * (len(shape) - 1) + 1
    for start, stop in itertools.combinations(range(size + 1), 2):
        assert len(flat_range_boxes(shape, start, stop)) <= bound


def test_empty_and_scalar_ranges():
    assert flat_range_boxes((3, 4), 5, 5) == []
    assert flat_range_boxes((3, 4), 6, 2) == []
    assert flat_range_boxes((), 0, 1) == [((), 0, 1)]


def test_whole_rows_are_one_box():
    assert flat_range_boxes((3, 4), 4, 12) == [((slice(1, 3), slice(0, 4)), 4, 12)]
    assert flat_range_boxes((3, 4), 0, 12) == [((slice(0, 3), slice(0, 4)), 0, 12)]
