"""Benchmark: a whole hpcfit cubefit run on a ~10^5-spectrum cube against astropy's ``parallel_fit_dask``.

The cube is a 3 x 3 mosaic of the L1448 13CO cube (53 x 315 x 315: 99,225 spectra) with a little Gaussian noise
(sigma = 0.02 K, seeded) so that the tiles are not identical fits, written by this script into a temporary
folder with the original header (its spatial WCS extended over the mosaic; the spectral axis unchanged). Both
sides fit configs/cubefit_l1448.yaml's model and fitter (Gaussian1D, TRFLSQFitter, mean bounded to 3000..6000 m/s,
stddev 10..3000 m/s) — the config itself, with only the cube and output paths replaced:

* hpcfit: ``mpiexec -n R python -m hpcfit run`` end to end (launcher, start-up, plan, fit, write, exit);
* astropy: the whole ``parallel_fit_dask`` call (open the cube, build the model, fit with the processes scheduler
  and W workers; imports done beforehand, no output written): as bench/cubefit_vs_astropy.py.

R = W = 2 by default (the machine's cores). The runs alternate, best of ``--repeat`` on each side (same N); the
hpcfit run's phases (prepare, set-up, work, write: the output's attributes ``wall_seconds``/``work_seconds`` and
the log) are printed so the fixed costs that hide the fitting speed show. The machine's load average is
reported with the figures.

Usage: .venv/bin/python bench/cubefit_mosaic_vs_dask.py [--ranks 2] [--workers 2] [--repeat 2] [--tiles 3]
       [--noise 0.02] [--no-reference] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from cubefit_vs_astropy import load, run_reference  # noqa: E402

from hpcfit.shared_data import shared_file  # noqa: E402


def make_mosaic(source: Path, tiles: int, noise: float, directory: Path) -> Path:
    """A tiles x tiles mosaic of the cube's spatial plane, plus seeded Gaussian noise, as a FITS file."""
    from astropy.io import fits

    with fits.open(source) as hdul:
        data, header = hdul[0].data.astype(np.float32), hdul[0].header.copy()
    mosaic = np.tile(data, (1, tiles, tiles))
    mosaic += np.random.default_rng(1448).normal(0.0, noise, mosaic.shape).astype(np.float32)
    header["NAXIS1"], header["NAXIS2"] = mosaic.shape[2], mosaic.shape[1]
    path = directory / f"l1448_mosaic_{tiles}x{tiles}.fits"
    fits.PrimaryHDU(mosaic, header).writeto(path, overwrite=True)
    return path


def write_config(cube: Path, workdir: Path) -> tuple[Path, Path]:
    """configs/cubefit_l1448.yaml with the mosaic as data and an output in ``workdir``."""
    text = (REPO / "configs" / "cubefit_l1448.yaml").read_text()
    text = re.sub(r"(?m)^    path: .*$", f"    path: {cube}", text, count=1)
    text = re.sub(r"(?m)^output: .*$", f"output: {workdir / 'mosaic.h5'}", text, count=1)
    text = re.sub(r"(?m)^  diagnostics_path: .*$", f"  diagnostics_path: {workdir / 'diagnostics'}", text)
    text = re.sub(r"(?m)^  progress: .*$", "  progress: none", text)
    config = workdir / "mosaic.yaml"
    config.write_text(text)
    return config, workdir / "mosaic.h5"


def run_hpcfit(cube: Path, ranks: int, workdir: Path) -> dict[str, float]:
    import h5py

    config, output = write_config(cube, workdir)
    launcher = shutil.which("mpiexec.mpich") or shutil.which("mpiexec")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    start = time.perf_counter()
    proc = subprocess.run([launcher, "-n", str(ranks), sys.executable, "-m", "hpcfit", "run", str(config), "-v",
                           "--set", "run.overwrite=true"], capture_output=True, text=True, env=env)
    end_to_end = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"hpcfit failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    with h5py.File(output) as h5:
        job, work = float(h5.attrs["wall_seconds"]), float(h5.attrs["work_seconds"])
    return {"end_to_end": end_to_end, "job": job, "work": work, "start_up": end_to_end - job,
            "job_outside_work": job - work}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--tiles", type=int, default=3)
    parser.add_argument("--noise", type=float, default=0.02)
    parser.add_argument("--no-reference", action="store_true", help="hpcfit only (its phases)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    source = shared_file("l1448_13co.fits")
    if source is None:
        raise SystemExit("L1448 cube not found: set HPCFIT_SHARED_DATA")
    print(f"machine: {os.cpu_count()} cores, shared; load average {load()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="hpcfit_mosaic_") as tmp:
        tmp = Path(tmp)
        cube = make_mosaic(Path(source), args.tiles, args.noise, tmp)
        from astropy.io import fits

        with fits.open(cube) as hdul:
            shape = hdul[0].data.shape
        n_fits = shape[1] * shape[2]
        ours, refs = [], []
        for rep in range(args.repeat):
            run_dir = tmp / f"run{rep}"
            run_dir.mkdir()
            ours.append(run_hpcfit(cube, args.ranks, run_dir))
            print(f"  hpcfit -n {args.ranks}: " + ", ".join(f"{k} {v:.2f} s" for k, v in ours[-1].items())
                  + f"; load {load()}", flush=True)
            if not args.no_reference:
                refs.append(run_reference(cube, args.workers)[1])
                print(f"  parallel_fit_dask, {args.workers} workers: {refs[-1]:.2f} s; load {load()}", flush=True)
    best = {k: min(r[k] for r in ours) for k in ours[0]}
    print(f"L1448 {args.tiles}x{args.tiles} mosaic {shape}, {n_fits:,} spectra, configs/cubefit_l1448.yaml's model; "
          f"best of {args.repeat} alternated; load average at the end {load()}")
    print(f"hpcfit mpiexec -n {args.ranks} end to end {best['end_to_end']:.2f} s: start-up (launch to engine) "
          f"{best['start_up']:.2f} s, engine outside the fit phase (plan, set-up, write) "
          f"{best['job_outside_work']:.2f} s, fit phase {best['work']:.2f} s ({n_fits / best['work']:,.0f} fits/s)")
    figures = {"shape": shape, "fits": n_fits, "ranks": args.ranks, "repeat": args.repeat, "hpcfit_best_s": best,
               "hpcfit_runs": ours, "load_end": os.getloadavg()}
    if refs:
        ratio = min(refs) / best["end_to_end"]
        print(f"HEADLINE: hpcfit whole run {best['end_to_end']:.2f} s vs parallel_fit_dask whole call "
              f"({args.workers} workers, processes) {min(refs):.2f} s -> {ratio:.1f}x")
        figures.update(reference_best_s=min(refs), reference_runs=refs, ratio=ratio)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
