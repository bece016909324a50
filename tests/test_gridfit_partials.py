"""gridfit without a serial rank 0: the decomposition (enough chi2 items for 64 ranks at production sizes, fixed
by the problem alone), the exchange of partial records to the galaxies' owner ranks and their fold in chunk order
(bit for bit the fold of one rank holding everything, whatever order the rows arrive in), and the catalogue parsed
once per run (rank 0) under ``mpiexec -n 2``."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import pytest

from hpcfit.gridfit.chi2 import TILE_ROWS
from hpcfit.gridfit.chi2_stage import ITEMS_TARGET, MIN_ITEM_PAIRS, decompose
from hpcfit.gridfit.fit_block import fold
from hpcfit.gridfit.partials import LEAD, fold_rows, owner_ranges, pack_rows, round_window, route
from launch import find_mpiexec

MEMORY = 256 * 2**20


@pytest.mark.parametrize("galaxies, models", [(100_000, 100_000), (100_000, 1_932), (5_000, 99_981),
                                              (10_000, 100_000), (21, 999_971), (2_000_000, 30_000)])
def test_big_problems_get_enough_items_for_64_ranks(galaxies, models):
    parts = decompose(galaxies, models, MEMORY)
    items = parts.n_items(galaxies, models)
    pairs = galaxies * models
    assert items >= min(ITEMS_TARGET, pairs // MIN_ITEM_PAIRS)
    if pairs >= ITEMS_TARGET * MIN_ITEM_PAIRS:  # production sizes: 4 items per rank on 64 ranks
        assert items >= 4 * 64
    assert parts.block * parts.chunk * 16 <= MEMORY * 1.1  # chi2 + scale of a block x chunk fit the budget
    if -(-galaxies // parts.block) > 1 and galaxies > TILE_ROWS:
        assert parts.block % TILE_ROWS == 0  # blocks cut at the kernel's row tiles


def test_small_problems_keep_big_items_and_the_config_wins():
    assert decompose(21, 1_932, MEMORY).n_items(21, 1_932) == 8  # DustPedia: one block, 8 chunks (as before)
    parts = decompose(4_000, 10_000, MEMORY)
    assert (parts.chunk, parts.block) == (256, 4_000)
    assert decompose(30, 87, MEMORY, models_per_chunk=17, galaxies_per_block=8) == type(parts)(17, 8)
    assert decompose(10**6, 10**5, 1e6).block <= 1e6 / (16 * 1563) + TILE_ROWS  # a small budget: small blocks


def _partials(rng, n_gal, n_chunks, best_size, moments_size):
    """Random packed partials: [(g0, chunk, count, best, moments)] of blocks of 7 galaxies."""
    parts = []
    for g0 in range(0, n_gal, 7):
        count = min(7, n_gal - g0)
        for k in range(n_chunks):
            best = rng.random((count, best_size))
            best[:, 1] = k * 100 + rng.integers(0, 100, count)  # model index within chunk k
            best[:, 0] = rng.choice([0.5, 1.0, 2.0], count)  # ties across chunks
            moments = rng.random((count, moments_size))
            moments[:, 0] = -rng.random(count) * 10  # log_lmax
            parts.append((g0, k, count, best.reshape(-1), moments.reshape(-1)))
    return parts


def test_exchange_and_fold_give_the_single_rank_fold_bit_for_bit():
    rng = np.random.default_rng(4)
    n_gal, n_chunks, extra, n_q = 40, 6, 3, 2
    best_size, moments_size = 3 + extra, 2 + 3 * n_q
    parts = _partials(rng, n_gal, n_chunks, best_size, moments_size)
    # the reference: one rank folds each block's partials in chunk order (the fold of earlier versions)
    expected_best, expected_moments = [], []
    for g0 in range(0, n_gal, 7):
        block = sorted((p for p in parts if p[0] == g0), key=lambda p: p[1])
        b, m = fold([(p[3], p[4]) for p in block], extra, n_q)
        expected_best.append(b.reshape(-1, best_size))
        expected_moments.append(m.reshape(-1, moments_size))
    expected_best, expected_moments = np.vstack(expected_best), np.vstack(expected_moments)
    for size in (1, 2, 3, 5):
        bounds = owner_ranges(n_gal, size)
        # the items are spread over the ranks in any order; each rank packs its own
        order = rng.permutation(len(parts))
        ranks = [pack_rows([parts[i] for i in order[r::size]], best_size, moments_size) for r in range(size)]
        window, rounds = round_window(bounds, n_chunks, 8 * (LEAD + best_size + moments_size), 8 * 100 * 13 * 6)
        assert rounds >= 1
        folded_best = np.full_like(expected_best, np.nan)
        folded_moments = np.full_like(expected_moments, np.nan)
        for j in range(rounds):
            sent = [route(rows, bounds, window, j) for rows in ranks]
            for owner in range(size):  # what an Alltoallv delivers to ``owner``, in sender order
                received = np.vstack([rows[counts[:owner].sum():counts[:owner + 1].sum()] for rows, counts in sent])
                lo, hi = bounds[owner], bounds[owner + 1]
                w0, w1 = min(hi, lo + j * window), min(hi, lo + (j + 1) * window)
                if w1 > w0:
                    b, m = fold_rows(received[rng.permutation(len(received))], w0, w1, n_chunks, best_size, extra,
                                     n_q)
                    folded_best[w0:w1] = b.reshape(-1, best_size)
                    folded_moments[w0:w1] = m.reshape(-1, moments_size)
        np.testing.assert_array_equal(folded_best, expected_best)
        np.testing.assert_array_equal(folded_moments, expected_moments)


def test_fold_rows_refuses_missing_or_duplicated_records():
    rng = np.random.default_rng(1)
    parts = _partials(rng, 7, 3, 4, 5)
    rows = pack_rows(parts, 4, 5)
    with pytest.raises(ValueError, match="21 partial records for 7 galaxies x 4 chunks"):
        fold_rows(rows, 0, 7, 4, 4, 1, 1)
    rows[3, 1] = rows[4, 1] = 0.0  # two records of one galaxy for chunk 0, none for another chunk
    rows[3, 0] = rows[4, 0] = 3.0
    with pytest.raises(ValueError, match="do not cover every galaxy and chunk once"):
        fold_rows(rows, 0, 7, 3, 4, 1, 1)


def test_owner_ranges_cover_every_galaxy_once():
    for n, size in ((10, 3), (2, 5), (0, 2), (1000, 64)):
        bounds = owner_ranges(n, size)
        assert bounds[0] == 0 and bounds[-1] == n and np.all(np.diff(bounds) >= 0)
        assert np.max(np.diff(bounds)) - np.min(np.diff(bounds)) <= 1


def test_the_catalogue_is_parsed_once_under_two_ranks(shared_path, tmp_path):
    import os
    import subprocess

    launcher = find_mpiexec()
    if launcher is None:
        pytest.skip("no mpiexec on PATH")
    tests = Path(__file__).resolve().parent
    config = tests.parent / "configs" / "gridfit_dustpedia.yaml"
    env = dict(os.environ, PYTHONPATH=f"{tests.parent}{os.pathsep}{tests}")
    done = subprocess.run([launcher, "-n", "2", sys.executable, str(tests / "scripts" / "count_catalogue_reads.py"),
                           "run", str(config), "--set", f"output={tmp_path / 'out.h5'}", "--set", "run.progress=none"],
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = sorted(re.findall(r"catalogue-reads: rank \d of 2 parsed \d+ time\(s\), received \d+ broadcast "
                              r"catalogue\(s\)", done.stdout))
    assert lines == ["catalogue-reads: rank 0 of 2 parsed 1 time(s), received 0 broadcast catalogue(s)",
                     "catalogue-reads: rank 1 of 2 parsed 0 time(s), received 1 broadcast catalogue(s)"]
