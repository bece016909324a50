"""Fast, in-process unit tests of the sample job's MPI-free kernels: axes, permutation, counter RNG, hypercube."""

from __future__ import annotations

import numpy as np
import pytest

from hpcfit.sample.axes import is_log, linear_range, model_name, to_model
from hpcfit.sample.counter_rng import uniform_block
from hpcfit.sample.hypercube import METHODS, unit_points
from hpcfit.sample.permutation import KeyedPermutation


def test_axes_decode_base_10():
    assert is_log("log_mass") and not is_log("mass") and not is_log("logmass")
    assert model_name("log_mass") == "mass" and model_name("redshift") == "redshift"
    assert to_model("log_mass", 2.0) == pytest.approx(100.0)
    assert to_model("mass", 2.0) == 2.0
    np.testing.assert_allclose(to_model("log_t", np.array([-1.0, 0.0, 3.0])), [0.1, 1.0, 1000.0])
    assert linear_range("log_tau", -1.0, 1.0) == pytest.approx((0.1, 10.0))
    assert linear_range("z", 0.5, 2.0) == (0.5, 2.0)


@pytest.mark.parametrize("n", [1, 2, 3, 5, 16, 17, 100, 1000, 4097])
def test_permutation_is_a_bijection(n):
    sigma = KeyedPermutation(n, key=42)
    image = sigma(np.arange(n))
    assert image.dtype == np.int64
    assert sorted(image.tolist()) == list(range(n))


def test_permutation_is_deterministic_per_key_and_index_by_index():
    n = 1000
    a, b = KeyedPermutation(n, 7)(np.arange(n)), KeyedPermutation(n, 7)(np.arange(n))
    np.testing.assert_array_equal(a, b)
    # any block evaluated alone gives the same values (no table, no state)
    np.testing.assert_array_equal(KeyedPermutation(n, 7)(np.arange(300, 450)), a[300:450])
    other = KeyedPermutation(n, 8)(np.arange(n))
    assert (other != a).mean() > 0.9  # another key is another permutation
    assert (a != np.arange(n)).mean() > 0.9  # and it actually shuffles
    # six distinct round keys (a repeated key would weaken the Feistel network)
    assert len(set(int(k) for k in KeyedPermutation(n, 7).round_keys)) == 6


def test_permutation_looks_random():
    n = 4096
    image = KeyedPermutation(n, 12345)(np.arange(n)).astype(float)
    # a pseudo-random permutation: no correlation of i with sigma(i), no long runs of successors
    assert abs(np.corrcoef(np.arange(n), image)[0, 1]) < 0.1
    assert np.mean(np.diff(image) == 1) < 0.01


def test_permutation_rejects_empty():
    with pytest.raises(ValueError):
        KeyedPermutation(0, 1)
    assert KeyedPermutation(1, 3)(np.array([0])).tolist() == [0]


def test_counter_rng_range_and_reproducibility():
    block = uniform_block(seed=3, stream=1, start=0, stop=500, dim=5)
    assert block.shape == (500, 5)
    assert block.min() >= 0.0 and block.max() < 1.0
    np.testing.assert_array_equal(block, uniform_block(3, 1, 0, 500, 5))
    assert abs(block.mean() - 0.5) < 0.03


@pytest.mark.parametrize("dim", [1, 3, 4, 5, 9])
def test_counter_rng_blocks_split_anywhere(dim):
    whole = uniform_block(11, 2, 0, 200, dim)
    parts = np.vstack([uniform_block(11, 2, a, b, dim) for a, b in [(0, 1), (1, 77), (77, 150), (150, 200)]])
    np.testing.assert_array_equal(parts, whole)


def test_counter_rng_streams_and_seeds_differ():
    a = uniform_block(5, 1, 0, 100, 3)
    assert not np.allclose(a, uniform_block(5, 2, 0, 100, 3))
    assert not np.allclose(a, uniform_block(6, 1, 0, 100, 3))
    # columns of one sample are distinct draws
    assert not np.allclose(a[:, 0], a[:, 1])


@pytest.mark.parametrize("method", METHODS)
def test_partition_axis_is_stratified_by_index(method):
    n = 64
    u = unit_points(method, seed=9, start=0, stop=n, n_total=n, dim=3)
    assert u.shape == (n, 3)
    assert u.min() >= 0.0 and u.max() < 1.0
    np.testing.assert_array_equal(np.floor(u[:, 0] * n).astype(int), np.arange(n))


def test_latin_hypercube_has_one_point_per_stratum_in_every_column():
    n, dim = 101, 4
    u = unit_points("latin_hypercube", seed=4, start=0, stop=n, n_total=n, dim=dim)
    for j in range(dim):
        assert sorted(np.floor(u[:, j] * n).astype(int).tolist()) == list(range(n)), j
    # the columns are not all the same permutation
    assert not np.array_equal(np.floor(u[:, 1] * n), np.floor(u[:, 2] * n))


@pytest.mark.parametrize("method", METHODS)
def test_points_do_not_depend_on_the_block_split(method):
    n, dim = 128, 3
    whole = unit_points(method, 21, 0, n, n, dim)
    parts = np.vstack([unit_points(method, 21, a, b, n, dim) for a, b in [(0, 32), (32, 33), (33, 128)]])
    np.testing.assert_allclose(parts, whole, rtol=0, atol=0)


def test_sobol_balance():
    n, dim = 256, 3
    u = unit_points("sobol", 2, 0, n, n, dim)
    # a scrambled Sobol' net: every 1/16 interval of each non-partition column holds exactly n/16 points
    for j in range(1, dim):
        counts = np.bincount(np.floor(u[:, j] * 16).astype(int), minlength=16)
        assert counts.tolist() == [n // 16] * 16


def test_uniform_columns_are_uniform_and_one_dimensional_case():
    u = unit_points("uniform", 1, 0, 2000, 2000, 3)
    for j in (1, 2):
        counts = np.bincount(np.floor(u[:, j] * 10).astype(int), minlength=10)
        assert counts.min() > 150
    one = unit_points("latin_hypercube", 1, 10, 20, 50, 1)
    assert one.shape == (10, 1)
    np.testing.assert_array_equal(np.floor(one[:, 0] * 50).astype(int), np.arange(10, 20))


def test_unknown_method():
    with pytest.raises(ValueError, match="unknown sampling method"):
        unit_points("grid", 1, 0, 10, 10, 2)


def test_golden_values_pin_the_generators():
    """Same seed, same samples across releases: a training set must be regenerable bit for bit. These values pin
    every constant of the Feistel network, the Philox layout and the stream/key offsets (a different constant
    would give an equally random but different, hence irreproducible, sample)."""
    assert KeyedPermutation(10, 1)(np.arange(10)).tolist() == [6, 0, 2, 1, 8, 9, 4, 7, 3, 5]
    assert KeyedPermutation(1000, 2026)(np.arange(0, 1000, 97)).tolist() == [
        892, 247, 527, 360, 535, 522, 448, 303, 991, 51, 899]
    np.testing.assert_allclose(uniform_block(7, 3, 5, 7, 3),
                               [[0.77338705, 0.51250827, 0.7236288], [0.8285385, 0.78793543, 0.16938981]],
                               rtol=0, atol=1e-8)
    np.testing.assert_allclose(unit_points("latin_hypercube", 5, 0, 4, 40, 3),
                               [[0.01794214, 0.91030338, 0.3940445], [0.03040745, 0.03182229, 0.88940245],
                                [0.06749315, 0.51069568, 0.15019483], [0.09112182, 0.66690064, 0.08062653]],
                               rtol=0, atol=1e-8)
    np.testing.assert_allclose(unit_points("uniform", 5, 0, 2, 40, 3),
                               [[0.01794214, 0.84673839, 0.71686584], [0.03040745, 0.88813226, 0.31547539]],
                               rtol=0, atol=1e-8)


def test_golden_values_at_the_edges():
    """Small n (where the bit width is clamped or n - 1 is a power of two), a dimension that fills a whole Philox
    block, two-column and Sobol' designs."""
    assert KeyedPermutation(2, 3)(np.arange(2)).tolist() == [0, 1]
    assert KeyedPermutation(5, 3)(np.arange(5)).tolist() == [4, 3, 1, 2, 0]
    assert KeyedPermutation(17, 3)(np.arange(17)).tolist() == [1, 16, 15, 9, 5, 0, 10, 14, 3, 2, 4, 7, 6, 11, 13,
                                                               8, 12]
    # n a power of two: the bit width comes from n - 1 (n + 1 would widen the Feistel domain)
    assert KeyedPermutation(16, 3)(np.arange(16)).tolist() == [11, 14, 1, 5, 0, 13, 10, 8, 15, 2, 4, 6, 3, 9, 7, 12]
    np.testing.assert_allclose(uniform_block(7, 3, 5, 7, 4),
                               [[0.77338705, 0.51250827, 0.7236288, 0.05478095],
                                [0.8285385, 0.78793543, 0.16938981, 0.42708154]], rtol=0, atol=1e-8)
    np.testing.assert_allclose(unit_points("latin_hypercube", 5, 0, 2, 40, 2),
                               [[0.01794214, 0.91030338], [0.03040745, 0.03182229]], rtol=0, atol=1e-8)
    np.testing.assert_allclose(unit_points("sobol", 5, 3, 5, 40, 3),
                               [[0.09112182, 0.85710774, 0.52150233], [0.10978748, 0.90289039, 0.31099695]],
                               rtol=0, atol=1e-8)
