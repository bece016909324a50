"""A keyed pseudo-random permutation of [0, n) evaluated index by index (no table of n entries anywhere).

A balanced Feistel network on 2k-bit integers (4^k >= n) with a splitmix64-based round function is a bijection of
[0, 4^k); "cycle walking" (re-applying it to values >= n) restricts it to a bijection of [0, n). With six rounds
this is a standard pseudo-random permutation: for a given key the map is fixed, so position σ(i) of sample i can
be computed by whichever rank holds sample i, and the shuffled order is the same for every rank count.
"""

from __future__ import annotations

import numpy as np

_ROUNDS = 6
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: a fast, well-mixing bijection of 64-bit integers."""
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


class KeyedPermutation:
    """σ: [0, n) -> [0, n), a bijection chosen by ``key``."""

    def __init__(self, n: int, key: int):
        if n < 1:
            raise ValueError("a permutation needs n >= 1")
        self.n = int(n)
        bits = max(1, int(n - 1).bit_length())
        self.half = (bits + 1) // 2
        self.mask = np.uint64((1 << self.half) - 1)
        with np.errstate(over="ignore"):
            base = _mix(np.array([key & 0xFFFFFFFFFFFFFFFF], dtype=np.uint64))[0]
            self.round_keys = [_mix(np.array([base + _GOLDEN * np.uint64(r + 1)], dtype=np.uint64))[0]
                               for r in range(_ROUNDS)]

    def _feistel(self, x: np.ndarray) -> np.ndarray:
        half = np.uint64(self.half)
        left, right = x >> half, x & self.mask
        with np.errstate(over="ignore"):
            for key in self.round_keys:
                left, right = right, left ^ (_mix(right ^ key) & self.mask)
        return (left << half) | right

    def __call__(self, indices: np.ndarray) -> np.ndarray:
        """σ(indices) for an integer array of indices in [0, n)."""
        x = np.asarray(indices, dtype=np.uint64)
        if self.n == 1:
            return np.zeros_like(x, dtype=np.int64)
        y = self._feistel(x)
        outside = y >= np.uint64(self.n)
        while outside.any():  # cycle walking: at most a few steps, since 4^k < 4n
            y[outside] = self._feistel(y[outside])
            outside = y >= np.uint64(self.n)
        return y.astype(np.int64)
