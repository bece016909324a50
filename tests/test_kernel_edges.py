"""Edge cases of the gridfit and calibrate kernels that mutation testing found unpinned (``make mutants``)."""

from __future__ import annotations

import numpy as np

from hpcfit.calibrate.kernels.calibrate import exposure_offset
from hpcfit.calibrate.kernels.combine import SigmaClip, normalise, prepare_darks
from hpcfit.gridfit.chi2 import chi2_block, prepare_photometry
from hpcfit.gridfit.reduce import Moments


def test_chi2_block_of_no_models_or_no_galaxies():
    phot = prepare_photometry(np.ones((3, 2)), np.full((3, 2), 0.1))
    chi2, scale = chi2_block(phot, np.zeros((0, 2)))
    assert chi2.shape == (3, 0) and scale.shape == (3, 0)
    empty = prepare_photometry(np.ones((0, 2)), np.ones((0, 2)))
    chi2, scale = chi2_block(empty, np.ones((4, 2)))
    assert chi2.shape == (0, 4) and scale.shape == (0, 4)


def test_moments_of_an_empty_block():
    m = Moments.from_block(np.zeros((2, 0)), np.zeros((0, 1)), ["a"])
    assert m.names == ("a",) and m.mean.shape == (2, 1)


def test_sigma_clip_defaults_are_three_sigma():
    assert (SigmaClip().low, SigmaClip().high) == (3.0, 3.0)


def test_in_place_helpers_return_their_array():
    stack = np.full((2, 3, 4), 10.0, dtype=np.float32)
    out = prepare_darks(stack, np.ones((3, 4), dtype=np.float32), [1.0, 3.0])
    assert out is stack
    np.testing.assert_allclose(out[0], 9.0)
    np.testing.assert_allclose(out[1], 3.0)
    master = np.full((3, 4), 8.0, dtype=np.float32)
    assert normalise(master, 2.0) is master
    np.testing.assert_allclose(master, 4.0)


def test_exposure_offset():
    bias = np.full((2, 2), 100.0)
    rate = np.full((2, 2), 0.5, dtype=np.float32)
    assert exposure_offset(None, None, 10.0) is None
    got = exposure_offset(bias, None, 10.0)
    assert got.dtype == np.float32 and np.all(got == 100.0)
    out = np.empty((2, 2), dtype=np.float32)
    assert exposure_offset(bias, None, 10.0, out=out) is out and np.all(out == 100.0)
    np.testing.assert_array_equal(exposure_offset(bias, rate, 10.0), np.full((2, 2), 105.0, dtype=np.float32))
    np.testing.assert_array_equal(exposure_offset(None, rate, 4.0), np.full((2, 2), 2.0, dtype=np.float32))
