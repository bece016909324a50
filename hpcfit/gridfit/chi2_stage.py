"""gridfit's chi2 stage as work items: one item per (galaxy block, model chunk) pair, MPI-free.

An item computes chi2 and the best scale of every pair of its block and chunk (``chi2.chi2_block``) and reduces
them on the spot to the chunk's two per-galaxy partials, the best fit (MINLOC record) and the likelihood-weighted
moments (``fit_block.reduce_chunk``); with ``chi2: full`` it also returns its chi2 columns for /chi2. Blocks and
chunks are fixed by the plan from the inputs alone, and an item is computed the same way on whichever rank gets it,
so folding a block's partials in chunk order (in ``write``) gives the same bits for any rank count, schedule,
resume or slicing.

Memory: an item holds one block x chunk pair of chi2 and scale arrays (sized by ``fit.block_memory_mb``); its
result is 2 records per galaxy of the block, plus the chi2 columns with ``chi2: full``.

The decomposition (:func:`decompose`) is fine enough to keep many ranks busy: at least ``ITEMS_TARGET`` chi2 items
(4 per rank on 64 ranks) whenever the problem has that many ``MIN_ITEM_PAIRS``-sized items' worth of pairs, by
cutting the catalogue into more galaxy blocks (and, for catalogues too small for that, the grid into more model
chunks). It depends on the problem size and the config only, never on the number of ranks.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from hpcfit.engine.job import WorkItem
from hpcfit.gridfit.chi2 import TILE_ROWS, Photometry, rows_per_block
from hpcfit.gridfit.fit_block import Estimates, LoadedChunk, reduce_chunk
from hpcfit.gridfit.grid import ModelChunk

PAIR_UNIT = "galaxy-model pairs"
CHUNK_TARGET = 64  # default number of model chunks (and grid-stage items)
CHUNK_MIN, CHUNK_MAX = 256, 16384  # default chunk sizes are clamped to this range ...
CHUNK_FINE_MIN = 64  # ... except when a small catalogue needs finer chunks to make enough chi2 items
ITEMS_TARGET = 256  # chi2 items wanted: 4 per rank on 64 ranks, so that dynamic scheduling can balance
MIN_ITEM_PAIRS = 1 << 21  # items of at least this many pairs (~80 ms of work): checkpoint + scheduling (~10 ms) stay small


@dataclass(frozen=True)
class Decomposition:
    """Model chunks of ``chunk`` models and galaxy blocks of ``block`` galaxies (fixed by the plan)."""

    chunk: int
    block: int

    def n_items(self, n_galaxies: int, n_models: int) -> int:
        return -(-n_galaxies // self.block) * -(-n_models // self.chunk)


def decompose(n_galaxies: int, n_models: int, memory_bytes: float, *, models_per_chunk: int | None = None,
              galaxies_per_block: int | None = None) -> Decomposition:
    """Chunks and blocks of the chi2 stage, from the problem size and the config only (never the rank count).

    Chunks: ``models_per_chunk``, else n_models / CHUNK_TARGET clamped to CHUNK_MIN..CHUNK_MAX. Blocks:
    ``galaxies_per_block``, else as many as it takes to reach min(ITEMS_TARGET, pairs / MIN_ITEM_PAIRS) items and
    to fit one block x chunk pair of chi2 and scale arrays in ``memory_bytes``; a block of more than TILE_ROWS
    galaxies is a multiple of TILE_ROWS (rounded up), so that every galaxy sits in the same row tile of the chi2
    kernel as in one big block. When even blocks of TILE_ROWS galaxies give too few items, the chunks shrink (to CHUNK_FINE_MIN
    models at least) unless ``models_per_chunk`` is set.
    """
    g, n = max(n_galaxies, 1), max(n_models, 1)
    wanted = int(min(ITEMS_TARGET, max(1, -(-g * n // MIN_ITEM_PAIRS))))
    chunk = models_per_chunk or int(min(max(-(-n // CHUNK_TARGET), CHUNK_MIN), CHUNK_MAX))
    chunk = min(chunk, n)
    if galaxies_per_block:
        return Decomposition(chunk, min(galaxies_per_block, g))
    max_blocks = -(-g // TILE_ROWS)
    if models_per_chunk is None and max_blocks * -(-n // chunk) < wanted:
        chunk = min(chunk, max(CHUNK_FINE_MIN, -(-n // -(-wanted // max_blocks))))
    n_chunks = -(-n // chunk)
    by_memory = rows_per_block(chunk, memory_bytes, n_arrays=2)
    blocks = max(-(-g // by_memory), min(-(-wanted // n_chunks), max_blocks))
    block = -(-g // blocks)
    if blocks > 1 and g > TILE_ROWS:
        block = -(-block // TILE_ROWS) * TILE_ROWS
    return Decomposition(chunk, max(1, min(block, g)))


@dataclass(frozen=True)
class PairTask:
    """The payload of a chi2 item: galaxies [g0, g1) against model chunk ``chunk`` (its grid-stage item)."""

    block: int
    g0: int
    g1: int
    chunk: int


@dataclass(eq=False)
class PairResult:
    """What a chi2 item returns (and what its checkpoint holds)."""

    start: int                 # first model of the chunk: the fold order
    stop: int
    best: np.ndarray           # packed best-fit records of the block (fit_block.reduce_chunk)
    moments: np.ndarray        # packed moments records of the block
    chi2: np.ndarray | None    # (g1 - g0, stop - start) with chi2: full, else None


def chi2_items(n_galaxies: int, block: int, chunks: list[tuple[int, int]]) -> list[WorkItem]:
    """The chi2 stage's items, block by block and in chunk order within a block (indices set by Plan.staged);
    ``chunks`` are the (start, stop) model ranges of the grid stage's items, in order."""
    n_models = chunks[-1][1] if chunks else 0
    items = []
    for b, g0 in enumerate(range(0, n_galaxies, block)):
        g1 = min(g0 + block, n_galaxies)
        for k, (start, stop) in enumerate(chunks):
            pairs = (g1 - g0) * (stop - start)
            items.append(WorkItem(index=-1, label=f"galaxies {g0:,}-{g1 - 1:,} x models {start:,}-{stop - 1:,} "
                                                  f"of {n_models:,}",
                                  size=pairs, cost=float(pairs), data=PairTask(b, g0, g1, k)))
    return items


def fit_pair(phot: Photometry, chunk: ModelChunk, estimates: Estimates, buffers: tuple[np.ndarray, np.ndarray],
             keep_chi2: bool, timings: dict[str, float]) -> PairResult:
    """chi2 of one block against one chunk, reduced to its partials; ``buffers`` are (block, chunk)-sized scratch
    arrays reused across items (the chi2 kept for /chi2 is a copy)."""
    from hpcfit.gridfit.chi2 import chi2_block

    g, n = phot.n_galaxies, chunk.n_models
    loaded = LoadedChunk.of(chunk)  # transposed fluxes, cheap next to the block's GEMMs: not kept between items
    t0 = time.perf_counter()
    chi2, scale = chi2_block(phot, loaded.models, out=(buffers[0][:g, :n], buffers[1][:g, :n]))
    t1 = time.perf_counter()
    best, moments = reduce_chunk(phot, loaded, estimates, chi2, scale)
    timings["chi2"] += t1 - t0
    timings["reduce"] += time.perf_counter() - t1
    timings["pairs"] += g * n
    return PairResult(chunk.start, chunk.stop, best, moments, chi2.copy() if keep_chi2 else None)


__all__ = ["Decomposition", "PAIR_UNIT", "PairResult", "PairTask", "chi2_items", "decompose", "fit_pair"]
