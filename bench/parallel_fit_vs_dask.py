"""Benchmark: ``hpcfit.parallel_fit(ranks=None)`` in one process against astropy's
``parallel_fit_dask(scheduler="processes")`` on the full L1448 13CO cube (11,025 spectra), the guide's code on
both sides.

Same call on both sides (the model, fitter, data, world, fitting_axes and data_unit of astropy's guide, bounds
included), timed from the call to the returned model; imports and reading the cube are done before. hpcfit runs
in this process on one core; dask gets a process pool of --workers (default: every core of the machine). Best of
--repeat on each side, runs alternated (hpcfit, dask, hpcfit, dask, ...). Reported: both times, the ratio, the
agreement of the maps (share of spectra fitted by both whose three parameters agree within 1e-6 relative) and
the machine load (``os.getloadavg``) before and after.

Optional (--ranks N): the same call with ``ranks=N`` (written to a folder, ``mpiexec -n N python -m hpcfit run``,
read back), whole call timed the same way.

Usage: .venv/bin/python bench/parallel_fit_vs_dask.py [--repeat 3] [--workers 2] [--ranks 2] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import hpcfit  # noqa: E402
from hpcfit.shared_data import shared_file  # noqa: E402


def guide_inputs(cube: Path):
    """The guide's data, WCS and model (the whole cube; mean bounds written in km/s as in the guide)."""
    from astropy import units as u
    from astropy.io import fits
    from astropy.modeling.models import Gaussian1D
    from astropy.wcs import WCS

    with fits.open(cube) as hdulist:
        data = hdulist[0].data
        wcs = WCS(hdulist[0].header)
    model = Gaussian1D(amplitude=1 * u.one, mean=4000 * u.m / u.s, stddev=500 * u.m / u.s)
    model.mean.bounds = (3000, 6000) * u.km / u.s
    return data, wcs, model


def timed(function, **kwargs):
    start = time.perf_counter()
    result = function(**kwargs)
    return result, time.perf_counter() - start


def maps(model) -> np.ndarray:
    return np.stack([getattr(model, name).value for name in model.param_names])


def agreement(ours: np.ndarray, theirs: np.ndarray, rtol: float = 1e-6) -> tuple[float, int]:
    both = np.all(np.isfinite(ours) & np.isfinite(theirs), axis=0)
    close = np.all(np.abs(ours - theirs) <= rtol * np.abs(theirs), axis=0) & both
    return float(close.sum() / max(both.sum(), 1)), int(both.sum())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--ranks", type=int, default=0, help="also time ranks=N (0: skip)")
    parser.add_argument("--cube", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    cube = args.cube or shared_file("l1448_13co.fits")
    if cube is None:
        print("L1448 cube not found: set HPCFIT_SHARED_DATA or pass --cube", file=sys.stderr)
        return 2

    import dask
    from astropy import units as u
    from astropy.modeling.fitting import TRFLSQFitter, parallel_fit_dask

    data, wcs, model = guide_inputs(cube)
    common = dict(model=model, data=data, world=wcs, fitting_axes=0, data_unit=u.one)
    load_before = os.getloadavg()
    ours_t, dask_t, ranks_t = [], [], []
    ours = theirs = None
    for _ in range(args.repeat):
        ours, t = timed(hpcfit.parallel_fit, fitter=TRFLSQFitter(), **common)
        ours_t.append(t)
        with dask.config.set(num_workers=args.workers):
            theirs, t = timed(parallel_fit_dask, fitter=TRFLSQFitter(), scheduler="processes", **common)
        dask_t.append(t)
        if args.ranks:
            mpi, t = timed(hpcfit.parallel_fit, fitter=TRFLSQFitter(), ranks=args.ranks, **common)
            ranks_t.append(t)
            assert all(np.array_equal(a, b, equal_nan=True) for a, b in zip(maps(mpi), maps(ours)))
        print(f"  run: hpcfit {ours_t[-1]:.2f} s, dask {dask_t[-1]:.2f} s"
              + (f", hpcfit ranks={args.ranks} {ranks_t[-1]:.2f} s" if ranks_t else ""), flush=True)
    load_after = os.getloadavg()
    share, n_both = agreement(maps(ours), maps(theirs))
    report = {
        "spectra": int(np.prod(data.shape[1:])), "repeat": args.repeat, "dask_workers": args.workers,
        "hpcfit_in_process_best_s": min(ours_t), "dask_processes_best_s": min(dask_t),
        "ratio": min(dask_t) / min(ours_t), "agreement_1e-6": share, "fitted_by_both": n_both,
        "load_before": load_before, "load_after": load_after,
    }
    if ranks_t:
        report[f"hpcfit_ranks{args.ranks}_best_s"] = min(ranks_t)
        report[f"ratio_ranks{args.ranks}"] = min(dask_t) / min(ranks_t)
    print(f"L1448, {report['spectra']:,} spectra, best of {args.repeat} (alternated), load "
          f"{load_before[0]:.1f} -> {load_after[0]:.1f}:")
    print(f"  hpcfit.parallel_fit(ranks=None), 1 process:          {min(ours_t):7.2f} s")
    print(f"  parallel_fit_dask(scheduler='processes'), {args.workers} workers: {min(dask_t):7.2f} s")
    print(f"  ratio: {report['ratio']:.1f}x; maps agree within 1e-6 on {100 * share:.2f} % of the {n_both:,} "
          "spectra both fitted")
    if ranks_t:
        print(f"  hpcfit.parallel_fit(ranks={args.ranks}) (mpiexec, whole call): {min(ranks_t):7.2f} s "
              f"({report[f'ratio_ranks{args.ranks}']:.1f}x)")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
