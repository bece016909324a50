"""Science calibration: the formula (against plain numpy and ccdproc done right), dark scaled by exposure, bad
flat pixels -> NaN + mask, in-place use, the uncertainty model (checked by Monte Carlo), a synthetic night end to end,
and the five real M13 frames calibrated with synthetic masters of their shape."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from hpcfit.calibrate.kernels import combine as C
from hpcfit.calibrate.kernels import frames as F
from hpcfit.calibrate.kernels import reading as R
from hpcfit.calibrate.kernels.calibrate import NoiseModel, ScienceCalibrator, bad_pixel_mask, calibrate_frame, inverse_flat
from hpcfit.calibrate.kernels.synthetic import make_masters, make_night

M13 = [f"m13_raw/M13_blue_000{i}.fits" for i in range(1, 6)]


def _masters(shape=(40, 50), seed=3):
    bias, dark, flat = make_masters(shape, seed=seed)
    return bias, dark, flat


def _reference(raw, bias, dark, flat, t):
    """The textbook formula in float64."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return (raw.astype(np.float64) - bias - dark.astype(np.float64) * t) / flat


def test_calibration_equals_the_formula():
    bias, dark, flat = _masters()
    raw = (bias + dark * 30 + flat * np.random.default_rng(0).uniform(0, 3000, bias.shape)).astype(np.float32)
    cal = ScienceCalibrator(bias, dark, flat)
    image = cal.calibrate(raw, 30.0)
    assert image.dtype == np.float32 and not cal.bad_pixels.any()
    np.testing.assert_allclose(image, _reference(raw, bias, dark, flat, 30.0), rtol=2e-6, atol=2e-3)
    # in place on the raw buffer gives the same bits
    buffer = raw.copy()
    assert cal.calibrate(buffer, 30.0, out=buffer) is buffer
    assert np.array_equal(buffer, image)
    # integer input (raw ADU) is accepted too
    np.testing.assert_allclose(cal.calibrate(np.rint(raw).astype(np.uint16), 30.0),
                               _reference(np.rint(raw), bias, dark, flat, 30.0), rtol=2e-6, atol=2e-3)


def test_batch_calibration_equals_frame_by_frame():
    bias, dark, flat = _masters((300, 50))  # several row blocks
    rng = np.random.default_rng(2)
    raws = [(bias + rng.uniform(0, 1000, bias.shape)).astype(np.float32) for _ in range(4)]
    times = [10.0, 30.0, 10.0, 0.5]
    cal = ScienceCalibrator(bias, dark, flat)
    single = [cal.calibrate(r, t) for r, t in zip(raws, times)]
    copies = [r.copy() for r in raws]
    batch = cal.calibrate_batch(copies, times, outs=copies)  # in place
    assert all(b is c for b, c in zip(batch, copies))
    assert all(np.array_equal(a, b) for a, b in zip(single, batch))
    with pytest.raises(ValueError, match="4 frames, 2 exposure times"):
        cal.calibrate_batch(raws, times[:2])


def test_dark_is_scaled_by_the_science_exposure():
    bias, dark, flat = _masters()
    cal = ScienceCalibrator(bias, dark, flat)
    raw = (bias + 100.0).astype(np.float32)
    short, long = cal.calibrate(raw, 10.0), cal.calibrate(raw, 300.0)
    np.testing.assert_allclose(short - long, dark * 290.0 / flat, rtol=1e-4, atol=1e-3)
    for t in (1.0, 2.0, 3.0, 4.0, 5.0, 10.0):  # more exposure times than the cache holds: still exact
        np.testing.assert_allclose(cal.calibrate(raw, t), _reference(raw, bias, dark, flat, t), rtol=2e-6,
                                   atol=2e-3)
    with pytest.raises(ValueError, match="a valid exposure time is needed to scale the dark rate"):
        cal.calibrate(raw, None)  # a dark rate without an exposure time cannot be scaled
    assert np.array_equal(ScienceCalibrator(bias).calibrate(raw, None), raw - bias)


def test_bad_flat_pixels_become_nan_and_are_masked():
    bias, dark, flat = _masters()
    flat = flat.copy()
    flat[0, 0], flat[1, 1], flat[2, 2], flat[3, 3] = 0.0, -0.5, np.nan, np.inf
    bias = bias.copy()
    bias[4, 4] = np.nan
    image, mask, sigma = calibrate_frame(bias + 50, 10.0, bias=bias, dark_rate=dark, flat=flat)
    bad = np.zeros(flat.shape, bool)
    bad[[0, 1, 2, 3, 4], [0, 1, 2, 3, 4]] = True
    assert np.array_equal(mask, bad) and sigma is None
    assert np.isnan(image[bad]).all() and np.isfinite(image[~bad]).all()
    assert not (image == -1).any()
    assert np.array_equal(np.isnan(inverse_flat(flat)), bad_pixel_mask(flat))
    with pytest.raises(ValueError, match="masters disagree in shape"):
        ScienceCalibrator(bias, dark, flat[:-1])


def test_uncertainty_matches_a_monte_carlo():
    rng = np.random.default_rng(42)
    shape, t, noise = (16, 16), 20.0, NoiseModel(gain=2.0, read_noise=7.0)
    bias, dark, flat = _masters(shape, seed=5)
    scene = rng.uniform(5, 200, shape).astype(np.float32)  # ADU/s
    electrons = (dark * t + flat * scene * t) * noise.gain
    cal = ScienceCalibrator(bias, dark, flat, noise=noise)
    images, sigmas = [], []
    for _ in range(600):
        raw = bias + rng.poisson(electrons) / noise.gain + rng.normal(0, noise.read_noise / noise.gain, shape)
        raw = raw.astype(np.float32)
        image = cal.calibrate(raw, t)
        images.append(image)
        sigmas.append(cal.uncertainty(raw, t, image))
    ratio = np.std(images, axis=0) / np.mean(sigmas, axis=0)
    assert abs(np.mean(ratio) - 1) < 0.02
    assert np.all(np.abs(ratio - 1) < 0.2)  # each pixel: 600 samples give ~3 % scatter
    # master uncertainties add in quadrature as documented
    err = np.full(shape, 3.0, np.float32)
    with_bias_err = ScienceCalibrator(bias, dark, flat, noise=noise, bias_err=err)
    raw = images[0]
    base = cal.uncertainty(raw, t, raw)
    np.testing.assert_allclose(with_bias_err.uncertainty(raw, t, raw) ** 2, base ** 2 + (err / flat) ** 2, rtol=1e-5)
    with pytest.raises(ValueError, match=r"no NoiseModel\(gain, read_noise\) was given"):
        ScienceCalibrator(bias).uncertainty(raw, t, raw)
    with pytest.raises(ValueError, match="gain must be > 0"):
        NoiseModel(gain=0.0, read_noise=1.0)


def test_calibration_equals_ccdproc_done_right():
    ccdproc = pytest.importorskip("ccdproc")
    import astropy.units as u
    from astropy.nddata import CCDData

    bias, dark, flat = _masters()
    raw = np.rint(bias + dark * 45 + flat * np.random.default_rng(1).uniform(0, 5000, bias.shape))
    ccd = CCDData(raw.astype(np.float32), unit="adu")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        step = ccdproc.subtract_bias(ccd, CCDData(bias, unit="adu"))
        # the dark master is a rate: a 1-s "dark", scaled to the science exposure (scale=True is the pitfall)
        step = ccdproc.subtract_dark(step, CCDData(dark, unit="adu"), dark_exposure=1 * u.s,
                                     data_exposure=45 * u.s, scale=True)
        theirs = ccdproc.flat_correct(step, CCDData(flat, unit=""), norm_value=1.0).data
    ours = ScienceCalibrator(bias, dark, flat).calibrate(raw, 45.0)
    np.testing.assert_allclose(ours, theirs, rtol=2e-6, atol=2e-3)


def test_synthetic_night_end_to_end(tmp_path):
    night = make_night(tmp_path, n_bias=7, n_dark=7, n_flat=7, n_science=3)
    frames = F.scan_frames(F.find_frames(tmp_path))
    groups = F.group_frames(frames)
    ny = night.shape[0]

    def stack_of(kind):
        members = next(v for k, v in groups.items() if k.kind == kind)
        return R.read_stack(members, 0, ny), [f.exptime for f in members]

    clip = C.SigmaClip()
    bias = C.combine(stack_of("bias")[0], "median", clip).data
    darks, t_dark = stack_of("dark")
    dark = C.combine(C.prepare_darks(darks, bias, t_dark), "median", clip).data
    flats, t_flat = stack_of("flat")
    C.prepare_flats(flats, bias, dark, t_flat)
    C.scale_frames(flats, C.global_median([flats]))
    flat = C.combine(flats, "median", clip).data
    C.normalise(flat, C.global_median([flat[None]])[0])

    cal = ScienceCalibrator(bias, dark, flat)
    for frame in (f for f in frames if f.kind == "science"):
        image = cal.calibrate(R.read_image(frame), frame.exptime)
        truth = night.science_truth(frame.path)
        clean = ~night.cosmic_rays[night.key(frame.path)]
        residual = (image - truth)[clean]
        true_flat = night.flats[frame.filter][clean]
        collected = true_flat * truth[clean] + night.dark_rate[clean] * frame.exptime  # ADU above bias
        expected = np.sqrt(collected / night.gain + night.read_noise_adu ** 2) / true_flat  # per-pixel noise
        pulls = residual / expected
        assert abs(np.median(pulls)) < 0.05
        assert 0.9 < 1.4826 * np.median(np.abs(pulls - np.median(pulls))) < 1.15
        # hot pixels: the dark was scaled by 30 s, not left at its own exposure; residuals stay at the noise level
        hot = night.hot_pixels & clean
        assert np.median(np.abs(residual[hot[clean]] / expected[hot[clean]])) < 1.0
        wrong = cal.calibrate(R.read_image(frame), 120.0)  # what an unscaled 120-s dark would do
        assert np.median(np.abs((wrong - truth)[hot])) > 10 * np.median(expected[hot[clean]])


def test_real_m13_frames_calibrated_with_synthetic_masters(shared_path):
    paths = [shared_path(p) for p in M13]
    frames = F.scan_frames(paths)
    shape = frames[0].shape
    bias, dark, flat = make_masters(shape, bias_level=100.0)
    flat[500, 600:610] = 0.0  # a dead column segment in the flat
    cal = ScienceCalibrator(bias, dark, flat)
    buffer = np.empty(shape, np.float32)
    for frame in frames:
        raw = R.read_rows(frame, 0, shape[0], out=buffer)  # physical ADU, BZERO applied
        assert 0 <= raw.min() and raw.max() <= 65535 and abs(np.median(raw) - 512) < 50
        expected = _reference(raw, bias, dark, flat, frame.exptime)
        image = cal.calibrate(raw, frame.exptime, out=buffer)  # in place: no second frame-sized buffer
        assert image is buffer
        assert np.array_equal(np.isnan(image), cal.bad_pixels) and cal.bad_pixels.sum() == 10
        ok = ~cal.bad_pixels
        np.testing.assert_allclose(image[ok], expected[ok], rtol=2e-6, atol=2e-3)
