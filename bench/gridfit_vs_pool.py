"""Benchmark: hpcfit gridfit (mpiexec) against a faithful re-implementation of the reference student code
(multiprocessing.Pool.starmap) on the same DL07 grid and the same 21 DustPedia galaxies, for growing grids.

The reference, as its write-up describes it:
  1. ``models = pool.starmap(Model, params)`` -- one Model per parameter tuple (its DL07 spectrum), built in the
     pool; then ``[model.L_density() for model in models]`` in the parent: each model's luminosity density in each
     of the 7 bands, the spectrum integrated through each filter curve with np.interp + np.trapezoid;
  2. ``pool.starmap(fit, pairs)`` over every (galaxy, model) pair, one chi2 per call (best free scale
     s = sum(w f q) / sum(w q^2), q = model flux at the galaxy's distance in mJy), then the minimum per galaxy.
Both sides use the same grid (U_min: 23 values, U_max = 1e6, gamma: n values in 0..1, q_PAH: 7 values), the same
quoted band convention and the same catalogue. hpcfit additionally computes the likelihood-weighted estimates of
every parameter and the dust mass and writes everything to HDF5; its times are end to end (mpiexec, Python start,
template loading, output), and the "fit stage" is the chi2 + reductions part reported by the job.

The reference runs only up to --ref-max models (1e4 by default: its cost grows as 21 x N pickled calls). The
machine is shared: repeat and take the best (--repeat) when numbers look noisy.

Usage: .venv/bin/python bench/gridfit_vs_pool.py [--sizes 1e3,1e4,1e5,1e6] [--ranks 1,2] [--processes 2]
       [--ref-max 1e4] [--kernel]   (--kernel: the chi2 stage's GFLOP/s on a 5,000-galaxy catalogue)
"""

from __future__ import annotations

import argparse
import itertools
import os
import subprocess
import sys
import tempfile
import time
from multiprocessing import Pool
from pathlib import Path

import h5py
import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from hpcfit.shared_data import shared_file  # noqa: E402

BANDS = (("MIPS24", "MIPS1"), ("PACS70", "PACS_blue"), ("PACS100", "PACS_green"), ("PACS160", "PACS_red"),
         ("SPIRE250", "PSW"), ("SPIRE350", "PMW"), ("SPIRE500", "PLW"))
N_UMIN, N_QPAH = 23, 7
MPC_M = 3.0856775814913673e22

CONFIG = """\
job: gridfit
output: {output}
gridfit:
  catalog: {{path: {catalog}, id_column: name, distance_column: distance_mpc}}
  bands:
{bands}
  grid:
    model: dl07
    dl07: {{umin: all, umax: [1e6], gamma: {{linspace: [0, 1, {n_gamma}]}}, qpah: all}}
  fit:
    chi2: best
    results_table: none
run: {{overwrite: true, checkpoint: false, progress: none}}
"""

# ----------------------------------------------------------------------------------------------------------------
# The reference, re-implemented as its write-up describes (one object / one chi2 per pool call)
# ----------------------------------------------------------------------------------------------------------------

_TEMPLATES = None
_FILTERS = None


def _templates():
    global _TEMPLATES
    if _TEMPLATES is None:
        from hpcfit.models.dl07 import load_dl07

        _TEMPLATES = load_dl07()
    return _TEMPLATES


def _filters():
    global _FILTERS
    if _FILTERS is None:
        from hpcfit.models.filters import load_filter

        _FILTERS = [load_filter(name) for _, name in BANDS]
    return _FILTERS


class Model:
    """One dust-emission model: its spectrum L_nu (W/Hz per M_sun) on the template wavelengths."""

    def __init__(self, umin, umax, gamma, qpah):
        t = _templates()
        self.params = (umin, umax, gamma, qpah)
        self.wavelength = t.wavelength  # Angstrom
        self.spectrum = t.lnu(umin, umax, gamma, qpah)

    def L_density(self):  # noqa: N802 - the reference's name
        """Luminosity density in each band: the spectrum averaged through each filter curve, times the filter's
        quote factor (the flux density an IR bolometer quotes for this spectrum)."""
        out = []
        for filt in _filters():
            response = np.interp(self.wavelength, filt.wavelength, filt.photon_response, left=0.0, right=0.0)
            weight = response / self.wavelength
            band = np.trapezoid(self.spectrum * weight, self.wavelength) / np.trapezoid(weight, self.wavelength)
            out.append(band * filt.quote_factor(self.wavelength))
        return np.array(out)


def fit(flux, error, distance_mpc, model_lum):
    """chi2 and best scale (dust mass, M_sun) of one galaxy against one model: one call per pair."""
    q = np.asarray(model_lum) * 1e29 / (4.0 * np.pi * (distance_mpc * MPC_M) ** 2)  # mJy per M_sun
    w = 1.0 / np.asarray(error) ** 2
    scale = max(np.sum(w * flux * q) / np.sum(w * q * q), 0.0)
    return np.sum(w * (flux - scale * q) ** 2), scale


def reference(catalog, n_gamma: int, processes: int) -> dict:
    ids, distance, flux, error = catalog
    params = list(itertools.product(_templates().umin, [1e6], np.linspace(0, 1, n_gamma), _templates().qpah))
    t0 = time.perf_counter()
    with Pool(processes) as pool:
        models = pool.starmap(Model, params)
        lum_densities = [model.L_density() for model in models]
        t1 = time.perf_counter()
        pairs = [(flux[g], error[g], distance[g], lum) for g in range(len(ids)) for lum in lum_densities]
        results = pool.starmap(fit, pairs)
    t2 = time.perf_counter()
    chi2 = np.array([r[0] for r in results]).reshape(len(ids), len(params))
    scale = np.array([r[1] for r in results]).reshape(len(ids), len(params))
    best = np.argmin(chi2, axis=1)
    return {"seconds": t2 - t0, "grid_seconds": t1 - t0, "fit_seconds": t2 - t1, "best": best,
            "mass": scale[np.arange(len(ids)), best], "n_models": len(params)}


def read_catalog(path: Path):
    from astropy.table import Table

    t = Table.read(path)
    flux = np.column_stack([np.asarray(t[f"{b}_mJy"], float) for b, _ in BANDS])
    error = np.column_stack([np.asarray(t[f"{b}_err_mJy"], float) for b, _ in BANDS])
    return np.asarray(t["name"]).astype(str), np.asarray(t["distance_mpc"], float), flux, error


# ----------------------------------------------------------------------------------------------------------------
# hpcfit
# ----------------------------------------------------------------------------------------------------------------


def write_config(directory: Path, catalog: Path, n_gamma: int, name: str) -> Path:
    bands = "\n".join(f"  - {{name: {b}, filter: {f}, flux_column: {b}_mJy, error_column: {b}_err_mJy}}"
                      for b, f in BANDS)
    path = directory / f"{name}.yaml"
    path.write_text(CONFIG.format(catalog=catalog, bands=bands, n_gamma=n_gamma, output=f"{name}.h5"))
    return path


def run_hpcfit(config: Path, ranks: int) -> dict:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    command = [sys.executable, "-m", "hpcfit", "run", str(config)]
    if ranks > 1 or os.environ.get("HPCFIT_BENCH_MPI1"):
        command = ["mpiexec", "-n", str(ranks)] + command
    t0 = time.perf_counter()
    proc = subprocess.run(command, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(proc.stdout + proc.stderr)
    with h5py.File(config.with_suffix(".h5")) as h5:
        return {"seconds": wall, "fit_seconds": float(h5.attrs["gridfit_fit_seconds"]),
                "chi2_seconds": float(h5.attrs["gridfit_chi2_seconds"]),
                "gflops": float(h5.attrs["gridfit_chi2_gflops_per_rank"]), "work_seconds": float(h5.attrs["work_seconds"]),
                "best": h5["best/model_index"][()], "mass": h5["best/dust_mass"][()],
                "n_models": int(h5.attrs["gridfit_n_models"])}


def kernel_section(directory: Path, ranks: int) -> None:
    """The job's chi2 stage on a bigger synthetic catalogue, next to numpy matmul of the same block shapes."""
    from astropy.table import Table

    catalog = shared_file("dustpedia_21galaxies.csv")
    t = Table.read(catalog)
    rng = np.random.default_rng(0)
    big = t[rng.integers(0, len(t), 5000)]
    big["name"] = [f"g{i}" for i in range(len(big))]
    for b, _ in BANDS:
        big[f"{b}_mJy"] = big[f"{b}_mJy"] * rng.lognormal(0, 0.05, len(big))
    path = directory / "big.csv"
    big.write(path, overwrite=True)
    config = write_config(directory, path, 621, "kernel")  # 99,981 models
    found = run_hpcfit(config, ranks)
    with h5py.File(config.with_suffix(".h5")) as h5:
        block, chunk = int(h5.attrs["gridfit_block_galaxies"]), int(h5.attrs["gridfit_chunk_models"])
    a, m = rng.random((block, 7)), rng.random((7, chunk))
    out = np.empty((block, chunk))
    best = min(_timed(lambda: np.matmul(a, m, out=out)) for _ in range(5))
    matmul = 2.0 * block * chunk * 7 / best / 1e9
    pairs = 5000 * found["n_models"]
    print(f"\nchi2 stage on 5,000 galaxies x {found['n_models']:,} models ({ranks} rank(s), blocks of {block} x "
          f"{chunk}): {found['chi2_seconds']:.2f} s on the slowest rank, {found['gflops']:.2f} GFLOP/s per rank "
          f"(the 2 products, 4 G N B FLOPs); numpy matmul of one ({block}, 7) @ (7, {chunk}) block: {matmul:.2f} "
          f"GFLOP/s -> {found['gflops'] / matmul:.0%} of the same-shape GEMM rate")
    print(f"fit stage (chi2 + best fit + moments of 6 quantities): {found['fit_seconds']:.2f} s, "
          f"{pairs / found['fit_seconds'] / 1e6:.1f} M pairs/s; end to end {found['seconds']:.1f} s")


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1e3,1e4,1e5,1e6", help="approximate grid sizes (models)")
    ap.add_argument("--ranks", default="1,2", help="MPI rank counts for hpcfit")
    ap.add_argument("--processes", type=int, default=2, help="Pool processes of the reference")
    ap.add_argument("--ref-max", type=float, default=1e4, help="largest grid the reference is run on")
    ap.add_argument("--repeat", type=int, default=1, help="runs per measurement; the fastest is kept")
    ap.add_argument("--kernel", action="store_true", help="also measure the chi2 stage on 5,000 galaxies")
    args = ap.parse_args()
    catalog_path = shared_file("dustpedia_21galaxies.csv")
    if catalog_path is None or shared_file("dl07") is None:
        sys.exit("needs the shared data (dustpedia_21galaxies.csv, dl07/, filters_ir/)")
    catalog = read_catalog(catalog_path)
    ranks = [int(r) for r in args.ranks.split(",")]
    print(f"21 DustPedia galaxies x DL07 grid (23 U_min x 7 q_PAH x n gamma), 7 bands; {os.cpu_count()} cores; "
          f"reference: Pool({args.processes}); hpcfit: mpiexec -n {'/'.join(map(str, ranks))}")
    header = (f"{'models':>9} | {'reference s':>11} (grid + fit) | " + " | ".join(
        f"hpcfit n={r}: wall s (fit stage s)" for r in ranks) + f" | ratio n={ranks[-1]} | agree")
    print(header)
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        for size in (float(s) for s in args.sizes.split(",")):
            n_gamma = max(1, round(size / (N_UMIN * N_QPAH)))
            ref = None
            if size <= args.ref_max:
                ref = min((reference(catalog, n_gamma, args.processes) for _ in range(args.repeat)),
                          key=lambda r: r["seconds"])
            runs = {}
            for r in ranks:
                config = write_config(directory, catalog_path, n_gamma, f"grid{n_gamma}_n{r}")
                runs[r] = min((run_hpcfit(config, r) for _ in range(args.repeat)), key=lambda x: x["seconds"])
            last = runs[ranks[-1]]
            cells = " | ".join(f"{runs[r]['seconds']:>18.2f} ({runs[r]['fit_seconds']:.3f})" for r in ranks)
            if ref is not None:
                agree = np.mean(ref["best"] == last["best"])
                dm = np.max(np.abs(ref["mass"] / last["mass"] - 1))
                ref_text = f"{ref['seconds']:>11.2f} ({ref['grid_seconds']:.1f} + {ref['fit_seconds']:.1f})"
                tail = f" | {ref['seconds'] / last['seconds']:>9.1f}x | best {agree:.0%}, mass {dm:.1e}"
            else:
                ref_text, tail = f"{'-':>11} {'':15}", f" | {'-':>10} |"
            print(f"{last['n_models']:>9,} | {ref_text} | {cells}{tail}")
        if args.kernel:
            kernel_section(directory, ranks[-1])


if __name__ == "__main__":
    main()
