"""Putting sample rows at their final (shuffled) positions, collectively, without any rank holding them all.

Row i of the catalogue goes to output position σ(i) (a keyed permutation, see ``permutation``), or to i when
not shuffling. The output positions are split into equal contiguous blocks, one per rank.

In memory: ranks exchange rows with ``Alltoallv`` — each row goes to the rank owning its position — in K rounds:
round r delivers to every rank the rows of the r-th of K equal windows of its block (``RoundPlan``). So each
block fills window after window (its pages become resident in order, not all at once as a random scatter would
make them), and the rows a rank still has to send are held grouped by round (``HeldRows``): once a group of rounds
has been sent its memory is freed and handed back to the OS. A rank's peak is about 1.2 times its share of the
rows (with G = 10 groups: (1 + 1/G) x the rows, which are held with their positions) instead of twice. The block is kept as one array per column group (``Block``), so each
dataset is written with one contiguous collective write, without a copy. Memory per rank is O(N/P).

Out of core (when N/P rows do not fit the memory budget): pass 1 scatters every item's rows into *bucket* files by
output position range (a bucket's rows fit in memory); pass 2 gives each bucket to one rank, which reads its
files, places the rows and writes the bucket's contiguous range. Memory per rank is O(bucket), whatever N.
Bucket boundaries depend only on N and the budget, not on the rank count, so slices and merges can share them.
"""

from __future__ import annotations

import os
import shutil
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


class RoundPlan:
    """Which exchange round delivers each output position: rank d's block [lo_d, hi_d) is cut into ``rounds`` equal
    windows, and round r delivers window r of every block. Rounds are cut into ``groups`` consecutive groups,
    the unit in which held rows are released."""

    def __init__(self, offsets: np.ndarray, rounds: int, groups: int):
        self.offsets = np.asarray(offsets, dtype=np.int64)
        self.rounds = max(1, int(rounds))
        self.groups = max(1, min(int(groups), self.rounds))
        self.widths = np.maximum(np.diff(self.offsets), 1)
        self.group_starts = np.array([g * self.rounds // self.groups for g in range(self.groups + 1)], dtype=np.int64)

    @classmethod
    def for_rows(cls, n_total: int, size: int, rows_per_round: int, groups: int = 10) -> "RoundPlan":
        offsets = block_offsets(n_total, size)
        widest = int(np.diff(offsets).max(initial=1))
        return cls(offsets, -(-widest // max(1, rows_per_round)), groups)

    def round_of(self, positions: np.ndarray) -> np.ndarray:
        dest = np.searchsorted(self.offsets, positions, side="right") - 1
        return (positions - self.offsets[dest]) * self.rounds // self.widths[dest]


class HeldRows:
    """The rows this rank has computed, waiting to be sent, grouped by exchange round so that they can be freed
    group by group. ``add`` splits one item's rows (the caller drops the item afterwards)."""

    def __init__(self, plan: RoundPlan):
        self.plan = plan
        # per group: a list of (values, index, positions, round boundaries) pieces, one per item
        self.pieces: list[list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]] = [[] for _ in
                                                                                         range(plan.groups)]

    def add(self, rows: Rows, positions: np.ndarray) -> None:
        plan = self.plan
        rounds = plan.round_of(positions)
        order = np.argsort(rounds, kind="stable")
        rounds = rounds[order]
        cuts = np.searchsorted(rounds, plan.group_starts)
        for g in range(plan.groups):
            a, b = int(cuts[g]), int(cuts[g + 1])
            take = order[a:b]
            first, last = int(plan.group_starts[g]), int(plan.group_starts[g + 1])
            bounds = np.searchsorted(rounds[a:b], np.arange(first, last + 1))
            self.pieces[g].append((rows.values[take], rows.index[take], positions[take], bounds))

    def take_round(self, r: int, width: int, dtype: np.dtype) -> tuple[Rows, np.ndarray]:
        """The rows of round r (from every item) and their positions."""
        g = int(np.searchsorted(self.plan.group_starts, r, side="right") - 1)
        k = r - int(self.plan.group_starts[g])
        parts = [(v[b[k]:b[k + 1]], i[b[k]:b[k + 1]], p[b[k]:b[k + 1]]) for v, i, p, b in self.pieces[g]]
        if not parts:
            return Rows(np.zeros(0, dtype=np.int64), np.zeros((0, width), dtype=dtype)), np.zeros(0, dtype=np.int64)
        return (Rows(np.concatenate([x[1] for x in parts]), np.concatenate([x[0] for x in parts])),
                np.concatenate([x[2] for x in parts]))

    def release_group(self, g: int) -> None:
        self.pieces[g] = []
        return_freed_memory()


class Block:
    """This rank's output rows: one array per column group (each dataset is then written without a copy) and the
    global sample index of each row."""

    def __init__(self, n_rows: int, widths: list[int], dtype: np.dtype):
        self.parts = [np.empty((n_rows, w), dtype=dtype) for w in widths]
        self.index = np.empty(n_rows, dtype=np.int64)
        self.edges = np.concatenate([[0], np.cumsum(widths)]).astype(int)

    def put(self, local: np.ndarray, values: np.ndarray, index: np.ndarray) -> None:
        for part, a, b in zip(self.parts, self.edges[:-1], self.edges[1:]):
            part[local] = values[:, a:b]
        self.index[local] = index


def exchange_round(comm, rows: Rows, positions: np.ndarray, offsets: np.ndarray, block: Block) -> None:
    """Send each row to the owner of its position and place the rows received into this rank's block."""
    dest = np.searchsorted(offsets, positions, side="right") - 1
    order = np.argsort(dest, kind="stable")
    counts = np.bincount(dest, minlength=comm.size)
    received_values = comm.alltoallv(rows.values[order], counts)
    received_meta = comm.alltoallv(np.stack([positions[order], rows.index[order]], axis=1), counts)
    block.put(received_meta[:, 0] - offsets[comm.rank], received_values, received_meta[:, 1])


_TRIM: list = []


def return_freed_memory() -> None:
    """Hand freed heap memory back to the OS. numpy allocates arrays of up to tens of MB with malloc, and glibc
    keeps freed blocks inside the heap resident; ``malloc_trim`` releases them (elsewhere this is a no-op)."""
    if not _TRIM:
        try:
            import ctypes

            _TRIM.append(ctypes.CDLL(None).malloc_trim)
        except (OSError, AttributeError):
            _TRIM.append(None)
    if _TRIM[0] is not None:
        _TRIM[0](0)


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


def gather_bucket(directory: Path, bucket: int, items: list[int], edges: np.ndarray, widths: list[int],
                  dtype: np.dtype) -> Block:
    """Pass 2: the rows of one bucket, in output order, as a ``Block`` (one array per column group)."""
    lo, hi = int(edges[bucket]), int(edges[bucket + 1])
    block = Block(hi - lo, widths, dtype)
    block.index.fill(-1)
    for item in items:
        with np.load(bucket_file(directory, bucket, item)) as part:
            block.put(part["position"] - lo, part["values"], part["index"])
    if (block.index < 0).any():
        raise RuntimeError(f"bucket {bucket}: {(block.index < 0).sum()} row(s) missing from the spill files")
    return block


def remove_bucket(directory: Path, bucket: int) -> None:
    """Delete one bucket's spill files (once its rows are in the output)."""
    shutil.rmtree(Path(directory) / f"bucket-{bucket:05d}", ignore_errors=True)
