"""Stack combination: sorting network, sigma-clipped median/mean against astropy's sigma_clip and ccdproc's
Combiner, independence from the row-band split, exact whole-frame medians from band pieces, and masters of a
synthetic night that recover the truth (cosmic rays removed, darks as rates)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from astropy.stats import sigma_clip

from hpcfit.calibrate.kernels import combine as C
from hpcfit.calibrate.kernels import reading as R
from hpcfit.calibrate.kernels.combine import SigmaClip, combine
from hpcfit.calibrate.kernels.synthetic import make_night

CLIPS = [None, SigmaClip(), SigmaClip(dev="mad_std"), SigmaClip(2.0, 2.0, None, "mean", "std"),
         SigmaClip(1.5, None, 3, "median", "mad_std"), SigmaClip(None, 2.5, 1)]


def _noisy_stack(rng, n, shape=(30, 40), nan_fraction=0.02):
    stack = rng.normal(100, 5, (n, *shape)).astype(np.float32)
    stack[rng.random(stack.shape) < 0.05] += rng.uniform(50, 500)  # cosmic-ray-like outliers
    stack = np.round(stack)  # integer ADU: ties everywhere, as in real frames
    stack[rng.random(stack.shape) < nan_fraction] = np.nan
    return stack


def _reference(stack, method, clip):
    """Straightforward: astropy's sigma_clip along axis 0, then nanmedian / nanmean of what is kept."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if clip is None:
            kept = np.ma.masked_invalid(stack.astype(np.float64))
        else:
            kept = sigma_clip(stack.astype(np.float64), axis=0, maxiters=clip.iters, cenfunc=clip.center,
                              stdfunc=clip.dev, sigma_lower=np.inf if clip.low is None else clip.low,
                              sigma_upper=np.inf if clip.high is None else clip.high, masked=True)
        data = kept.filled(np.nan)
        combined = np.nanmedian(data, axis=0) if method == "median" else np.nanmean(data, axis=0)
    return combined, (~kept.mask).sum(axis=0)


def test_sorting_network_sorts_every_binary_input():
    # 0-1 principle: a comparator network that sorts all 2**n binary inputs sorts everything
    for n in range(1, 17):
        bits = ((np.arange(2 ** n)[None, :] >> np.arange(n)[:, None]) & 1).astype(np.float32)
        C.sort_frames(bits)
        assert (np.diff(bits, axis=0) >= 0).all(), n


@pytest.mark.parametrize("n", [5, 24, 25, 40])
def test_sort_frames_matches_numpy(n):
    values = np.random.default_rng(n).normal(size=(n, 300)).astype(np.float32)
    assert np.array_equal(C.sort_frames(values.copy()), np.sort(values, axis=0))


@pytest.mark.parametrize("n", [1, 2, 3, 4, 7, 10, 31])
@pytest.mark.parametrize("method", ["median", "mean"])
@pytest.mark.parametrize("clip", CLIPS, ids=lambda c: "none" if c is None else f"{c.center}-{c.dev}-{c.iters}")
def test_combine_matches_astropy_sigma_clip(n, method, clip):
    stack = _noisy_stack(np.random.default_rng(100 + n), n)
    result = combine(stack, method, clip, chunk_bytes=4000)  # small chunks: exercise the chunk loop
    expected, count = _reference(stack, method, clip)
    assert np.array_equal(result.count, count)
    assert result.data.dtype == np.float32
    np.testing.assert_allclose(result.data, expected, rtol=2e-6, atol=1e-4, equal_nan=True)
    assert np.array_equal(np.isnan(result.data), count == 0)


def test_combine_is_independent_of_the_row_band_split():
    rng = np.random.default_rng(5)
    stack = _noisy_stack(rng, 9, shape=(64, 50), nan_fraction=0.0)
    stack[:, 40:44] = np.nan  # one band has missing values: the masked code path there, the fast path elsewhere
    stack[2, 10, 10] = np.inf
    for clip in (SigmaClip(), SigmaClip(dev="mad_std", iters=None)):
        whole = combine(stack, "median", clip)
        for bands in (R.row_bands(64, 3), R.row_bands(64, 7)):
            parts = [combine(stack[:, a:b], "median", clip, chunk_bytes=3000) for a, b in bands]
            assert np.array_equal(np.concatenate([p.data for p in parts]), whole.data, equal_nan=True)
            assert np.array_equal(np.concatenate([p.count for p in parts]), whole.count)


def test_combine_output_buffers_and_errors():
    stack = np.random.default_rng(0).normal(size=(5, 6, 7)).astype(np.float32)
    out, count = np.empty((6, 7), np.float32), np.empty((6, 7), np.uint8)
    result = combine(stack, "median", None, out=out, count_out=count)
    assert result.data is out and np.array_equal(out, np.median(stack, axis=0)) and (count == 5).all()
    ints = combine(np.arange(30, dtype=np.uint16).reshape(3, 2, 5), "median", None)
    assert ints.data.dtype == np.float32 and np.array_equal(ints.data, np.arange(10, 20).reshape(2, 5))
    with pytest.raises(ValueError, match="combine method must be 'median' or 'mean', not 'mode'"):
        combine(stack, "mode")
    with pytest.raises(ValueError, match=r"need a non-empty \(N, \.\.\.\) stack"):
        combine(stack[:0])
    with pytest.raises(ValueError, match="sigma_clip.low must be > 0"):
        SigmaClip(low=-1)
    with pytest.raises(ValueError, match="sigma_clip.iters must be an integer >= 1"):
        SigmaClip(iters=0)
    with pytest.raises(ValueError, match="sigma_clip.dev must be 'mad_std' or 'std', not 'iqr'"):
        SigmaClip(dev="iqr")


# ------------------------------------------------------------------------------------------------------- ccdproc
@pytest.mark.parametrize("center", ["median", "mean"])
def test_combine_equals_ccdproc_combiner(center):
    ccdproc = pytest.importorskip("ccdproc")
    from astropy.nddata import CCDData

    rng = np.random.default_rng(11)
    stack = _noisy_stack(rng, 12, shape=(40, 60), nan_fraction=0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        combiner = ccdproc.Combiner([CCDData(p, unit="adu") for p in stack])
        combiner.sigma_clipping(low_thresh=2.5, high_thresh=3.0, func=center, dev_func="std")  # one iteration
        kept = (~combiner.data_arr.mask).sum(axis=0)
        their_median = combiner.median_combine().data
        their_mean = combiner.average_combine().data
    clip = SigmaClip(2.5, 3.0, 1, center, "std")
    ours_median = combine(stack, "median", clip)
    ours_mean = combine(stack, "mean", clip)
    assert np.array_equal(ours_median.count, kept)
    assert np.array_equal(ours_median.data, their_median.astype(np.float32))
    np.testing.assert_allclose(ours_mean.data, their_mean, rtol=1e-6)
    plain = ccdproc.combine([CCDData(p, unit="adu") for p in stack], method="median")
    assert np.array_equal(combine(stack, "median", None).data, plain.data.astype(np.float32))


# ----------------------------------------------------------------------------------------- whole-frame median pieces
@pytest.mark.parametrize("size", [1, 2, 999, 1000])
def test_global_median_from_bands_is_exact(size):
    rng = np.random.default_rng(size)
    frames = rng.normal(1.0, 0.1, (3, size, 7)).astype(np.float32)
    frames[0, : size // 2] = np.nan  # missing values are ignored
    frames[1] = np.round(frames[1] * 20)  # heavy ties: many equal values share a bin
    frames[2, 0, 0] = 1e6  # an extreme value stretches the histogram range
    for parts in (1, 2, 5):
        bands = [frames[:, a:b] for a, b in R.row_bands(size, parts) if b > a]
        med = C.global_median(bands, nbins=64)
        assert np.array_equal(med, np.nanmedian(frames.reshape(3, -1).astype(np.float64), axis=1))


def test_global_median_of_an_empty_frame_is_nan():
    frames = np.full((2, 4, 5), np.nan, dtype=np.float32)
    frames[1] = 3.0
    med = C.global_median([frames[:, :2], frames[:, 2:]])
    assert np.isnan(med[0]) and med[1] == 3.0
    with pytest.raises(ValueError, match="the master flat's median is nan: cannot normalise"):
        C.normalise(np.ones(3, np.float32), float(med[0]))


# ------------------------------------------------------------------------------------------ synthetic night masters
@pytest.fixture(scope="module")
def night(tmp_path_factory):
    return make_night(tmp_path_factory.mktemp("night"), n_bias=9, n_dark=8, n_flat=7, n_science=2)


def _read(night, kind):
    paths = night.paths[kind]
    return R.read_stack(paths, 0, night.shape[0]), np.array([night.exptimes[night.key(p)] for p in paths])


def test_master_bias_recovers_the_truth_to_the_noise_level(night):
    stack, _ = _read(night, "bias")
    master = combine(stack, "median", SigmaClip()).data
    residual = master - night.bias
    # median of n Gaussian values: sigma * sqrt(pi / 2) / sqrt(n); plus the 1-ADU quantisation
    expected = np.hypot(night.read_noise_adu * 1.2533 / np.sqrt(len(stack)), 0.29)
    assert abs(residual.mean()) < 0.05 * expected
    assert 0.8 * expected < residual.std() < 1.25 * expected


def test_master_dark_is_a_rate_and_cosmic_rays_are_removed(night):
    bias = night.bias
    stack, t = _read(night, "dark")
    assert len(set(t)) > 1  # mixed dark exposures: only a rate makes them combinable
    C.prepare_darks(stack, bias, t)
    hit = np.any([night.cosmic_rays[night.key(p)] for p in night.paths["dark"]], axis=0) & ~night.hot_pixels
    assert hit.sum() > 20
    noise = night.read_noise_adu / t.mean()  # ADU/s per frame at a normal pixel
    for method, clip in [("median", SigmaClip()), ("mean", SigmaClip(dev="mad_std"))]:
        master = combine(stack, method, clip).data
        assert np.abs(master - night.dark_rate)[hit].max() < 5 * noise, method
        hot = night.hot_pixels
        # hot pixels: Poisson on ~t * rate electrons per frame
        rel = np.abs(master[hot] - night.dark_rate[hot]) / night.dark_rate[hot]
        assert np.median(rel) < 0.02
    # without clipping a mean keeps the cosmic rays: the test above can fail
    unclipped = combine(stack, "mean", None).data
    assert np.abs(unclipped - night.dark_rate)[hit].max() > 20 * noise


def test_master_flat_recovers_the_truth(night):
    bias, dark = night.bias, night.dark_rate
    stack, t = _read(night, "flat")
    C.prepare_flats(stack, bias, dark, t)
    ny = night.shape[0]
    bands = [stack[:, a:b] for a, b in R.row_bands(ny, 3)]
    medians = C.global_median(bands)
    np.testing.assert_allclose(medians, np.median(stack.reshape(len(stack), -1), axis=1), rtol=1e-6)
    C.scale_frames(stack, medians)
    master = combine(stack, "median", SigmaClip()).data
    C.normalise(master, C.global_median([master[None, :50], master[None, 50:]])[0])
    assert abs(np.median(master) - 1) < 1e-6
    truth = night.flats["V"]
    level = 20000.0 * np.median(truth)  # ADU per flat
    expected = 1.2533 * np.sqrt(level * night.gain) / (level * night.gain) / np.sqrt(len(stack))
    ratio = master / truth
    assert abs(np.median(ratio) - 1) < 0.002
    assert ratio.std() < 1.2 * expected
    # the dust rings and vignetting are in the master: it correlates with the truth's structure
    assert np.corrcoef(master.ravel(), truth.ravel())[0, 1] > 0.99
