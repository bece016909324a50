"""A rank's pieces of one dataset merged into one union-of-hyperslabs write (hpcfit.io.piece_union): the file gets
exactly what one write per piece gives, in every layout of pieces; what cannot be merged is left as it was."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from hpcfit.cubefit.boxes import flat_range_boxes
from hpcfit.io import piece_union
from hpcfit.io.piece_union import PieceUnion, merge_pieces


def _write_both(tmp_path, shape, dtype, items):
    """The dataset written piece by piece and through merge_pieces; both arrays and what merge gave."""
    out = {}
    with h5py.File(tmp_path / "f.h5", "w") as h5:
        for label in ("separate", "merged"):
            dset = h5.create_dataset(label, shape, dtype, fillvalue=-1)
            entries = items if label == "separate" else merge_pieces(shape, dtype, items)
            if label == "merged":
                out["entries"] = entries
            for entry in entries:
                if isinstance(entry, PieceUnion):
                    entry.write(dset)
                else:
                    sel, arr = entry
                    dset[piece_union.full_selection(sel, shape)] = arr
            out[label] = dset[()]
    return out


def _flat_range_pieces(shape, ranges, values):
    items = []
    for a, b in ranges:
        for box, lo, hi in flat_range_boxes(shape, a, b):
            items.append((box, values.reshape(-1)[lo:hi].reshape([s.stop - s.start for s in box])))
    return items


def test_flat_ranges_of_a_map_are_one_write_in_file_order(tmp_path):
    """cubefit's case: a rank's items are flat ranges of the map, given out of order, each one to three boxes."""
    shape = (13, 17)
    values = np.arange(13 * 17, dtype=float).reshape(shape) * 0.5
    items = _flat_range_pieces(shape, [(150, 190), (3, 40), (60, 61), (200, 221)], values)
    got = _write_both(tmp_path, shape, "f8", items)
    assert len(got["entries"]) == 1 and got["entries"][0].pieces == len(items) > 4
    np.testing.assert_array_equal(got["merged"], got["separate"])
    mask = got["separate"] != -1
    np.testing.assert_array_equal(got["merged"][mask], values[mask])
    assert (~mask).sum() == 13 * 17 - (40 + 37 + 1 + 21)


def test_interleaved_tiles_are_placed_element_by_element(tmp_path):
    """Tiles side by side interleave in the file's row-major order: concatenating them would scramble the map."""
    shape = (6, 8, 2)  # a trailing axis left out of the selections
    values = np.random.default_rng(1).normal(size=shape).astype("f4")
    tiles = [(slice(0, 3), slice(4, 8)), (slice(0, 3), slice(0, 4)), (slice(3, 6), slice(2, 5))]
    items = [(t, values[t]) for t in tiles]
    got = _write_both(tmp_path, shape, "f4", items)
    assert isinstance(got["entries"][0], PieceUnion)
    np.testing.assert_array_equal(got["merged"], got["separate"])
    for t in tiles:
        np.testing.assert_array_equal(got["merged"][t], values[t])


def test_overlapping_pieces_are_written_one_by_one_last_wins(tmp_path):
    shape = (4, 5)
    items = [((slice(0, 2), slice(0, 5)), np.ones((2, 5))), ((slice(1, 3), slice(0, 5)), np.full((2, 5), 2.0))]
    got = _write_both(tmp_path, shape, "f8", items)
    assert got["entries"] is items
    assert got["merged"][1, 0] == 2.0
    np.testing.assert_array_equal(got["merged"], got["separate"])


@pytest.mark.parametrize("case", ["one piece", "object dtype", "too many", "too many bytes", "interleaved, large"])
def test_what_is_not_merged(monkeypatch, case):
    shape, dtype = (64, 64), np.dtype("f8")
    items = [((slice(r, r + 1),), np.zeros((1, 64))) for r in range(0, 64, 2)]
    if case == "one piece":
        items = items[:1]
    elif case == "object dtype":
        dtype = h5py.string_dtype()
    elif case == "too many":
        monkeypatch.setattr(piece_union, "MAX_PIECES", len(items) - 1)
    elif case == "too many bytes":
        monkeypatch.setattr(piece_union, "MAX_BYTES", 64 * 8 * len(items) - 1)
    else:
        items = [((slice(0, 64), slice(c, c + 1)), np.zeros((64, 1))) for c in range(0, 64, 2)]
        monkeypatch.setattr(piece_union, "MAX_SORTED_ELEMENTS", 64 * len(items) - 1)
    assert merge_pieces(shape, dtype, items) is items
    if case in ("too many", "too many bytes", "interleaved, large"):
        monkeypatch.undo()
        assert isinstance(merge_pieces(shape, dtype, items)[0], PieceUnion)


def test_values_are_cast_to_the_dataset_type(tmp_path):
    shape = (3, 4)
    items = [((slice(2, 3),), np.array([[1, 2, 3, 4]], dtype=np.int64)),
             ((slice(0, 1),), np.array([[5, 6, 7, 8]], dtype=np.int64))]
    got = _write_both(tmp_path, shape, "i1", items)
    assert got["entries"][0].values.dtype == np.int8
    np.testing.assert_array_equal(got["merged"], got["separate"])
