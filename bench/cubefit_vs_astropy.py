"""Benchmark: hpcfit cubefit (mpiexec -n 2) against astropy's parallel_fit_dask (processes scheduler, 2 workers)
on the full L1448 13CO cube (11,025 spectra) with the model of astropy's parallel-fitting guide.

Both fit Gaussian1D(amplitude=1, mean=4000 m/s, stddev=500 m/s) with TRFLSQFitter and mean bounded to
3000..6000 m/s (the guide writes km/s, which astropy applies as m/s; in km/s taken literally they would exclude
the whole spectral range, so both sides use m/s here). Reported: fits/s of each and their ratio (target >= 30x),
and the agreement (fraction of spectra whose three parameters agree within 1e-3 relative; target >= 99 %), with
the worst disagreements and which solution has the lower chi-square there. hpcfit runs with its default
work-item size unless --chunk says otherwise (see docs/cubefit.md, "Work-item size").

Usage: .venv/bin/python bench/cubefit_vs_astropy.py [--ranks 2] [--workers 2] [--repeat 3] [--chunk N]
       [--cube PATH] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from hpcfit.shared_data import shared_file  # noqa: E402

CONFIG = """\
job: cubefit
output: {output}
cubefit:
  data: {{path: {cube}, unit: K}}
  fitting_axes: 0
  world: wcs
  model:
    class: Gaussian1D
    parameters:
      amplitude: 1.0
      mean: {{value: 4000, unit: m/s, bounds: [3000, 6000]}}
      stddev: {{value: 500, unit: m/s}}
  fitter: TRFLSQFitter
run: {{progress: none}}
"""


def run_reference(cube: Path, workers: int) -> tuple[np.ndarray, float]:
    """astropy's parallel_fit_dask as in the guide; returns (params (3, ny, nx), seconds of the fit call)."""
    import dask
    from astropy import units as u
    from astropy.io import fits
    from astropy.modeling.fitting import TRFLSQFitter, parallel_fit_dask
    from astropy.modeling.models import Gaussian1D
    from astropy.wcs import WCS

    with fits.open(cube) as hdul:
        data = hdul[0].data
        wcs = WCS(hdul[0].header)
    model = Gaussian1D(amplitude=1 * u.one, mean=4000 * u.m / u.s, stddev=500 * u.m / u.s)
    model.mean.bounds = (3000, 6000) * u.m / u.s
    fitter = TRFLSQFitter()
    start = time.perf_counter()
    with dask.config.set(num_workers=workers):
        fitted = parallel_fit_dask(model=model, fitter=fitter, data=data, world=wcs, fitting_axes=0,
                                   data_unit=u.one, scheduler="processes")
    seconds = time.perf_counter() - start
    return np.stack([fitted.amplitude.value, fitted.mean.value, fitted.stddev.value]), seconds


def run_hpcfit(cube: Path, ranks: int, chunk: int | None, workdir: Path) -> tuple[np.ndarray, dict[str, float]]:
    import h5py

    output = workdir / "hpcfit_l1448.h5"
    config = workdir / "bench.yaml"
    text = CONFIG.format(output=output, cube=cube)
    if chunk:  # otherwise hpcfit's default work-item size
        text = text.replace("  fitter: TRFLSQFitter\n", f"  fitter: TRFLSQFitter\n  chunk_n_max: {chunk}\n")
    config.write_text(text)
    launcher = shutil.which("mpiexec.mpich") or shutil.which("mpiexec")
    cmd = [launcher, "-n", str(ranks), sys.executable, "-m", "hpcfit", "run", str(config), "--set",
           "run.overwrite=true"]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    end_to_end = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"hpcfit failed:\n{proc.stdout}\n{proc.stderr}")
    with h5py.File(output) as h5:
        params = np.stack([h5[f"parameters/{n}"][()] for n in ("amplitude", "mean", "stddev")])
        timing = {"work": float(h5.attrs["work_seconds"]), "job": float(h5.attrs["wall_seconds"]),
                  "end_to_end": end_to_end}
    return params, timing


def chi2(cube: Path, params: np.ndarray) -> np.ndarray:
    from astropy.io import fits
    from astropy.wcs import WCS

    with fits.open(cube) as hdul:
        data = hdul[0].data.astype(float)
        x = WCS(hdul[0].header).sub([3]).pixel_to_world_values(np.arange(data.shape[0]))
    amp, mean, std = (p[None] for p in params)
    model = amp * np.exp(-0.5 * ((x[:, None, None] - mean) / std) ** 2)
    return np.nansum((data - model) ** 2, axis=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--chunk", type=int, default=None,
                        help="fits per work item (cubefit.chunk_n_max); default: hpcfit's own default")
    parser.add_argument("--cube", type=Path, default=None)
    parser.add_argument("--repeat", type=int, default=3, help="runs of each system, alternated (medians reported)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this JSON file")
    args = parser.parse_args()
    cube = args.cube or shared_file("l1448_13co.fits")
    if cube is None:
        raise SystemExit("L1448 cube not found: set HPCFIT_SHARED_DATA or pass --cube")
    n_fits = 105 * 105

    # The machine is shared and noisy: alternate the two systems and keep the median of each.
    our_runs, ref_runs = [], []
    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory() as tmp:
            ours, timing = run_hpcfit(Path(cube), args.ranks, args.chunk, Path(tmp))
        our_runs.append(timing)
        ref, seconds = run_reference(Path(cube), args.workers)
        ref_runs.append(seconds)
    timing = {key: float(np.median([t[key] for t in our_runs])) for key in our_runs[0]}
    ref_seconds = float(np.median(ref_runs))

    both_nan = np.isnan(ours) & np.isnan(ref)
    close = np.isclose(ours, ref, rtol=1e-3, atol=0) | both_nan
    agree = close.all(axis=0)
    rel = np.nanmax(np.abs(ours - ref) / np.maximum(np.abs(ref), 1e-300), axis=0)
    ref_rate = n_fits / ref_seconds
    rates = {k: n_fits / v for k, v in timing.items()}
    chi_ours, chi_ref = chi2(Path(cube), ours), chi2(Path(cube), ref)
    worst = np.argsort(np.where(agree, -1, np.nan_to_num(rel, nan=np.inf)).ravel())[::-1][:5]

    print(f"L1448 13CO cube, {n_fits:,} spectra, Gaussian1D + TRFLSQFitter, mean bounded 3000..6000 m/s; "
          f"medians of {args.repeat} alternated runs (reference {min(ref_runs):.2f}-{max(ref_runs):.2f} s, "
          f"hpcfit fit phase {min(t['work'] for t in our_runs):.2f}-{max(t['work'] for t in our_runs):.2f} s)")
    print(f"astropy parallel_fit_dask (processes, {args.workers} workers): {ref_seconds:7.2f} s  "
          f"{ref_rate:9,.0f} fits/s")
    best_ref = n_fits / min(ref_runs)
    for key, label in (("work", "fit phase"), ("job", "whole job (plan+fit+write)"),
                       ("end_to_end", "end to end (incl. mpiexec + Python start-up)")):
        best = n_fits / min(t[key] for t in our_runs)
        print(f"hpcfit mpiexec -n {args.ranks}, {label:46s}: {timing[key]:7.2f} s  {rates[key]:9,.0f} fits/s  "
              f"= {rates[key] / ref_rate:6.1f}x the reference (best runs: {best:,.0f} vs {best_ref:,.0f} fits/s, "
              f"{best / best_ref:.1f}x)")
    print(f"agreement: {agree.mean() * 100:.2f} % of spectra have all parameters within 1e-3 relative "
          f"({(~agree).sum()} differ)")
    for flat in worst:
        if agree.ravel()[flat]:
            break
        j, i = divmod(int(flat), 105)
        better = "hpcfit" if chi_ours[j, i] < chi_ref[j, i] else "astropy"
        print(f"  ({j:3d},{i:3d}) max rel diff {rel[j, i]:.2e}  hpcfit {np.round(ours[:, j, i], 4)}  "
              f"astropy {np.round(ref[:, j, i], 4)}  lower chi2: {better}")
    if args.json:
        args.json.write_text(json.dumps({"reference_fits_per_s": ref_rate, "hpcfit_fits_per_s": rates,
                                         "ratio_fit_phase": rates["work"] / ref_rate,
                                         "ratio_job": rates["job"] / ref_rate,
                                         "ratio_end_to_end": rates["end_to_end"] / ref_rate,
                                         "agreement": float(agree.mean())}, indent=2))


if __name__ == "__main__":
    main()
