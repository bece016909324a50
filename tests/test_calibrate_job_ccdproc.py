"""The calibrate job against ccdproc "done right" on the same synthetic night: masters (dark rates per frame, flats
scaled by their medians, one 3-sigma clip around the median, median combine, normalised flat) and calibrated frames
(the dark scaled by the science exposure) agree within float32 rounding. Skipped without ccdproc."""

from __future__ import annotations

import warnings

import h5py
import numpy as np
import pytest

from hpcfit.calibrate.kernels.synthetic import make_night
from hpcfit.cli import main

ccdproc = pytest.importorskip("ccdproc")

SHAPE = (64, 80)


def _ccd(path):
    from astropy.nddata import CCDData

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return CCDData.read(path, unit="adu")


def _combine(ccds, **kwargs):
    # one clipping pass (ccdproc's only) around the median with the standard deviation, then the median
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ccdproc.combine(ccds, method="median", sigma_clip=True, sigma_clip_low_thresh=3,
                               sigma_clip_high_thresh=3, sigma_clip_func="median", sigma_clip_dev_func="std",
                               **kwargs)


def ccdproc_reduction(truth):
    """Masters and calibrated frames the ccdproc way, with the dark handled as a rate and scaled."""
    import astropy.units as u
    from astropy.nddata import CCDData

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bias = _combine([_ccd(p) for p in truth.paths["bias"]])
        rates = []
        for p in truth.paths["dark"]:
            ccd = ccdproc.subtract_bias(_ccd(p), bias)
            rates.append(ccd.divide(truth.exptimes[truth.key(p)] * u.s))
        dark = _combine(rates)  # ADU/s
        one_second = CCDData(dark.data, unit="adu")

        def dark_free(path):
            t = truth.exptimes[truth.key(path)]
            return ccdproc.subtract_dark(ccdproc.subtract_bias(_ccd(path), bias), one_second,
                                         dark_exposure=1 * u.s, data_exposure=t * u.s, scale=True)

        flats = [dark_free(p) for p in truth.paths["flat"]]
        flat = _combine(flats, scale=lambda a: 1 / np.median(a))
        flat = flat.divide(np.median(flat.data))
        science = {p.name: ccdproc.flat_correct(dark_free(p), flat, norm_value=1.0).data
                   for p in truth.paths["science"]}
    return bias.data, dark.data, flat.data, science


def test_same_as_ccdproc_done_right(tmp_path):
    truth = make_night(tmp_path / "night", shape=SHAPE, n_bias=9, n_dark=7, n_flat=7, n_science=3)
    (tmp_path / "c.yaml").write_text("""\
job: calibrate
output: ours.h5
calibrate:
  inputs: [night]
  combine: {method: median, sigma_clip: {low: 3, high: 3, iters: 1, center: median, dev: std}}
""")
    assert main(["run", str(tmp_path / "c.yaml")]) == 0
    bias, dark, flat, science = ccdproc_reduction(truth)
    with h5py.File(tmp_path / "ours.h5") as h5:
        # float32 stacks here, float64 in ccdproc: equal to float32 rounding of the values involved
        np.testing.assert_allclose(h5["masters/bias"][0], bias, rtol=1e-6, atol=1e-4)
        np.testing.assert_allclose(h5["masters/dark"][0], dark, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(h5["masters/flat"][0], flat, rtol=1e-5, atol=1e-6)
        for name, image in zip(h5["science/names"][()], h5["science/images"][()]):
            np.testing.assert_allclose(image, science[name.decode()], rtol=1e-5, atol=2e-3)
