"""Putting sample rows at their final (shuffled) positions, collectively, without any rank holding them all.

Row i of the catalogue goes to output position σ(i) (a keyed permutation, see ``permutation``), or to i when
not shuffling. The output positions are split into equal contiguous blocks, one per rank.

In memory: ranks exchange rows with ``Alltoallv`` — each row goes to the rank owning its position — one round
per work item, so at any time a rank holds its own output block plus about two items' rows; each rank then writes
its block with one contiguous collective write. Memory per rank is O(N/P).

Out of core (when N/P rows do not fit the memory budget): pass 1 scatters every item's rows into *bucket* files by
output position range (a bucket's rows fit in memory); pass 2 gives each bucket to one rank, which reads its
files, places the rows and writes the bucket's contiguous range. Memory per rank is O(bucket), whatever N.
Bucket boundaries depend only on N and the budget, not on the rank count, so slices and merges can share them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np


def block_offsets(n_total: int, size: int) -> np.ndarray:
    """offsets[r]..offsets[r+1]: the output positions owned by rank r (equal shares)."""
    return np.array([r * n_total // size for r in range(size + 1)], dtype=np.int64)


@dataclass
class Rows:
    """Rows of the catalogue: their global sample indices and packed values (theta | normalised | y)."""

    index: np.ndarray   # (n,) int64
    values: np.ndarray  # (n, W)


def exchange_round(comm, rows: Rows, positions: np.ndarray, offsets: np.ndarray, block: np.ndarray,
                   block_index: np.ndarray) -> None:
    """Send each row to the owner of its position and place the rows received into this rank's block."""
    dest = np.searchsorted(offsets, positions, side="right") - 1
    order = np.argsort(dest, kind="stable")
    counts = np.bincount(dest, minlength=comm.size)
    received_values = comm.alltoallv(rows.values[order], counts)
    received_meta = comm.alltoallv(np.stack([positions[order], rows.index[order]], axis=1), counts)
    local = received_meta[:, 0] - offsets[comm.rank]
    block[local] = received_values
    block_index[local] = received_meta[:, 1]


def bucket_edges(n_total: int, bucket_rows: int) -> np.ndarray:
    n_buckets = max(1, -(-n_total // max(bucket_rows, 1)))
    return np.array([b * n_total // n_buckets for b in range(n_buckets + 1)], dtype=np.int64)


def scatter_to_buckets(rows: Rows, positions: np.ndarray, edges: np.ndarray, directory: Path,
                       item: int) -> dict[int, int]:
    """Pass 1: write an item's rows into one file per bucket they fall in; return {bucket: row count}."""
    bucket = np.searchsorted(edges, positions, side="right") - 1
    order = np.argsort(bucket, kind="stable")
    counts = np.bincount(bucket, minlength=len(edges) - 1)
    written: dict[int, int] = {}
    start = 0
    for b in np.flatnonzero(counts):
        take = order[start:start + counts[b]]
        start += counts[b]
        path = bucket_file(directory, int(b), item)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with open(tmp, "wb") as handle:
            np.savez(handle, position=positions[take], index=rows.index[take], values=rows.values[take])
        os.replace(tmp, path)
        written[int(b)] = int(counts[b])
    return written


def bucket_file(directory: Path, bucket: int, item: int) -> Path:
    return Path(directory) / f"bucket-{bucket:05d}" / f"item-{item:06d}.npz"


def gather_bucket(directory: Path, bucket: int, items: list[int], edges: np.ndarray, width: int,
                  dtype: np.dtype) -> Rows:
    """Pass 2: the rows of one bucket, in output order."""
    lo, hi = int(edges[bucket]), int(edges[bucket + 1])
    values = np.empty((hi - lo, width), dtype=dtype)
    index = np.full(hi - lo, -1, dtype=np.int64)
    for item in items:
        with np.load(bucket_file(directory, bucket, item)) as part:
            local = part["position"] - lo
            values[local] = part["values"]
            index[local] = part["index"]
    if (index < 0).any():
        raise RuntimeError(f"bucket {bucket}: {(index < 0).sum()} row(s) missing from the spill files")
    return Rows(index, values)
