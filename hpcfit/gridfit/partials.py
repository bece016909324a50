"""The chi2 items' partial results on their way to the ranks that own the galaxies, MPI-free.

After the chi2 stage every rank holds the partials of the items it computed (or loaded from checkpoints): for
each galaxy of the item's block, a best-fit record and a moments record of the item's model chunk
(:mod:`hpcfit.gridfit.fit_block`). Each galaxy has one owner rank (contiguous ranges of about G/P galaxies,
:func:`owner_ranges`); the partials travel to it as rows of one float64 array (:func:`pack_rows`: galaxy, chunk,
best record, moments record), in rounds of at most ``window`` galaxies per owner so that no rank holds more than
a memory budget of them (:func:`round_window`). The owner folds each galaxy's records **in chunk order**
(:func:`fold_rows`), exactly the fold of one rank holding everything, so the answers are bit for bit the same for
any number of ranks; the exchange itself only moves bytes (the job does it with one Alltoallv per round).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from hpcfit.gridfit.reduce import merge_best_packed, merge_moments_packed

LEAD = 2  # leading columns of a row: galaxy index, chunk index (exact in float64)


def owner_ranges(n_galaxies: int, size: int) -> np.ndarray:
    """Bounds (size + 1,) of the galaxies each rank owns: rank r owns [bounds[r], bounds[r + 1])."""
    return np.array([n_galaxies * r // size for r in range(size + 1)], dtype=np.int64)


def round_window(bounds: np.ndarray, n_chunks: int, row_bytes: int, memory_bytes: float) -> tuple[int, int]:
    """(window, rounds): galaxies per owner per round so that a round's received rows fit ``memory_bytes``, and
    the number of rounds (the same on every rank: it comes from the largest range)."""
    largest = int(np.max(np.diff(bounds))) if bounds.size > 1 else 0
    window = max(1, int(memory_bytes // max(n_chunks * row_bytes, 1)))
    window = min(window, max(largest, 1))
    return window, (-(-largest // window) if largest else 0)


def pack_rows(parts: Sequence[tuple[int, int, int, np.ndarray, np.ndarray]], best_size: int,
              moments_size: int) -> np.ndarray:
    """One row per (galaxy, item) from ``parts`` = [(g0, chunk index, n galaxies, best, moments)]:
    [galaxy, chunk, best record, moments record] (LEAD + best_size + moments_size doubles)."""
    width = LEAD + best_size + moments_size
    n = sum(p[2] for p in parts)
    rows = np.empty((n, width))
    at = 0
    for g0, chunk, count, best, moments in parts:
        block = rows[at:at + count]
        block[:, 0] = np.arange(g0, g0 + count)
        block[:, 1] = chunk
        block[:, LEAD:LEAD + best_size] = np.asarray(best).reshape(count, best_size)
        block[:, LEAD + best_size:] = np.asarray(moments).reshape(count, moments_size)
        at += count
    return rows


def route(rows: np.ndarray, bounds: np.ndarray, window: int, round_index: int) -> tuple[np.ndarray, np.ndarray]:
    """The rows of this round (galaxies in [bounds[r] + j w, min(bounds[r + 1], bounds[r] + (j + 1) w)) of each
    owner r), sorted by owner, and the count per owner."""
    galaxy = rows[:, 0].astype(np.int64)
    owner = np.searchsorted(bounds, galaxy, side="right") - 1
    offset = galaxy - bounds[owner]
    take = (offset >= round_index * window) & (offset < (round_index + 1) * window)
    selected = np.flatnonzero(take)
    order = selected[np.argsort(owner[selected], kind="stable")]
    counts = np.bincount(owner[order], minlength=bounds.size - 1)
    return rows[order], counts


def fold_rows(rows: np.ndarray, g0: int, g1: int, n_chunks: int, best_size: int, n_extra: int,
              n_quantities: int) -> tuple[np.ndarray, np.ndarray]:
    """Packed best-fit and moments records of galaxies [g0, g1), each the left fold of its ``n_chunks`` rows in
    chunk order (every galaxy must have exactly one row per chunk)."""
    n = g1 - g0
    if rows.shape[0] != n * n_chunks:
        raise ValueError(f"galaxies {g0}-{g1 - 1}: {rows.shape[0]} partial records for {n} galaxies x "
                         f"{n_chunks} chunks")
    order = np.lexsort((rows[:, 1], rows[:, 0]))  # by galaxy, then chunk
    ordered = rows[order].reshape(n, n_chunks, -1)
    if n and not (np.array_equal(ordered[:, 0, 0], np.arange(g0, g1))
                  and np.all(ordered[:, :, 1] == np.arange(n_chunks))):
        raise ValueError(f"galaxies {g0}-{g1 - 1}: the partial records do not cover every galaxy and chunk once")
    best = np.ascontiguousarray(ordered[:, 0, LEAD:LEAD + best_size]).reshape(-1)
    moments = np.ascontiguousarray(ordered[:, 0, LEAD + best_size:]).reshape(-1)
    for k in range(1, n_chunks):
        best = merge_best_packed(best, ordered[:, k, LEAD:LEAD + best_size].reshape(-1), n_extra)
        moments = merge_moments_packed(moments, ordered[:, k, LEAD + best_size:].reshape(-1), n_quantities)
    return best, moments


__all__ = ["LEAD", "fold_rows", "owner_ranges", "pack_rows", "round_window", "route"]
