"""A sample batch's checkpoint form (hpcfit.sample.batch): only the band values and a spot check of the draws are
pickled, the rows come back bit for bit, and draws that the code would make differently are refused.

The whole path (a checkpoint written by one run and loaded by another) is covered by test_sample_job's slices +
merge test, whose merged file must equal the uninterrupted run's."""

from __future__ import annotations

import dataclasses
import pickle

import numpy as np
import pytest

from hpcfit.sample.batch import CheckpointDrawMismatch, DrawRecipe, spot_rows
from hpcfit.sample.priors import Prior

LOW, HIGH = (0.0, 8.0, 0.0, -1.0), (6.0, 12.0, 2.0, 1.5)


def recipe(method: str = "uniform", dtype: str = "float32", seed: int = 42) -> DrawRecipe:
    priors = (Prior("uniform", 0.0, 6.0), Prior("uniform", 8.0, 12.0), Prior("clipped_normal", 0.0, 2.0, 0.5, 0.3),
              Prior("uniform", -1.0, 1.5))
    return DrawRecipe(method, seed, 100_000, LOW, HIGH, priors, partition=0, dtype=dtype)


def band_values(n: int, bands: int = 7) -> np.ndarray:
    return np.random.default_rng(3).lognormal(-20, 2, size=(n, bands))


@pytest.mark.parametrize("method", ["uniform", "latin_hypercube", "sobol"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_checkpoint_form_rebuilds_the_same_rows_from_a_quarter_of_the_bytes(method, dtype):
    r = recipe(method, dtype)
    start, stop = 30_000, 40_000
    rows = r.rows(start, stop, band_values(stop - start))
    blob = pickle.dumps(rows, protocol=pickle.HIGHEST_PROTOCOL)
    back = pickle.loads(blob)
    assert back.values.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(back.index, np.arange(start, stop))
    assert np.array_equal(back.values, rows.values)  # bit for bit, every column
    full = rows.index.nbytes + rows.values.nbytes
    # 7 band columns of 15 (4 theta, 4 unit, 7 bands) plus the spot check and the recipe
    assert len(blob) < full * 0.5, (len(blob), full)
    # the rebuilt rows pickle the same way again (a merge of merged checkpoints)
    assert np.array_equal(pickle.loads(pickle.dumps(back)).values, rows.values)


def test_draws_made_differently_are_refused():
    good = recipe(seed=42)
    rows = good.rows(0, 5000, band_values(5000))
    # A checkpoint whose stored draws are not what this code draws for the same recipe (as if written by another
    # version): the band values must not be paired with other parameters.
    other = good.rows(0, 5000, band_values(5000), drawn=recipe(seed=43).draw(0, 5000))
    forged = pickle.dumps(other)
    assert np.array_equal(pickle.loads(pickle.dumps(rows)).values, rows.values)
    with pytest.raises(CheckpointDrawMismatch, match="samples 0..4999.*without --resume"):
        pickle.loads(forged)


def test_the_recipe_draws_every_column_the_work_step_stores():
    r = recipe()
    theta, unit = r.draw(0, 1000)
    assert theta.shape == unit.shape == (1000, 4)
    assert np.all((unit >= 0) & (unit < 1))
    # partition column stratified by index: a contiguous index range is a contiguous redshift band
    assert np.all(np.diff(theta[:, 0]) > 0)
    assert np.all((theta[:, 1] >= 8) & (theta[:, 1] < 12))
    swapped = dataclasses.replace(r, partition=1)
    assert np.all(np.diff(swapped.draw(0, 1000)[0][:, 1]) > 0)


def test_spot_rows_cover_the_batch():
    assert list(spot_rows(1)) == [0]
    assert list(spot_rows(5)) == [0, 1, 2, 3, 4]
    picks = spot_rows(100_000)
    assert picks[0] == 0 and picks[-1] == 99_999 and picks.size == 128
