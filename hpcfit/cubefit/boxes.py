"""Map contiguous ranges of flat (C-order) indices onto rectangular boxes of an N-d grid.

Work is split into chunks of consecutive flat indices over the iterating axes (so chunks have equal sizes
whatever the shape), while files are read and written with rectangular hyperslabs. A flat range covers at most
2·(ndim−1)+1 boxes: a partial leading row, a block of full rows, a partial trailing row, recursively.
"""

from __future__ import annotations

from math import prod

Box = tuple[slice, ...]


def flat_range_boxes(shape: tuple[int, ...], start: int, stop: int) -> list[tuple[Box, int, int]]:
    """Boxes covering flat indices [start, stop) of an array of ``shape``, with their flat sub-ranges, in order."""
    if start >= stop:
        return []
    if not shape:
        return [((), start, stop)]
    if len(shape) == 1:
        return [((slice(start, stop),), start, stop)]
    inner = prod(shape[1:])
    first, offset = divmod(start, inner)
    last, rest = divmod(stop, inner)
    boxes: list[tuple[Box, int, int]] = []
    if offset:
        end = min(stop, (first + 1) * inner)
        for box, a, b in flat_range_boxes(shape[1:], offset, end - first * inner):
            boxes.append(((slice(first, first + 1),) + box, a + first * inner, b + first * inner))
        first += 1
        if end == stop:
            return boxes
    if last > first:
        full = tuple(slice(0, n) for n in shape[1:])
        boxes.append(((slice(first, last),) + full, first * inner, last * inner))
    if rest and last >= first:
        for box, a, b in flat_range_boxes(shape[1:], 0, rest):
            boxes.append(((slice(last, last + 1),) + box, a + last * inner, b + last * inner))
    return boxes
