"""Benchmark: hpcfit gridfit (mpiexec) against two references on the same DL07 grid and the same 21 DustPedia
galaxies, for growing grids: a faithful re-implementation of the reference student code (multiprocessing.Pool
.starmap, one call per galaxy-model pair) and a vectorised numpy reference (the same maths as array operations in
one process), so the naive Pool loop is not the only yardstick.

The reference, as its write-up describes it:
  1. ``models = pool.starmap(Model, params)`` -- one Model per parameter tuple (its DL07 spectrum), built in the
     pool; then ``[model.L_density() for model in models]`` in the parent: each model's luminosity density in each
     of the 7 bands, the spectrum integrated through each filter curve with np.interp + np.trapezoid;
  2. ``pool.starmap(fit, pairs)`` over every (galaxy, model) pair, one chi2 per call (best free scale
     s = sum(w f q) / sum(w q^2), q = model flux at the galaxy's distance in mJy), then the minimum per galaxy.
The vectorised reference (single process, float64): every model's spectrum with one broadcast ``lnu`` call, the
band luminosities as one product with the trapezoid-and-filter weights (the same integral as L_density), then for
all galaxies x models at once the closed-form best scale, chi2 and the best model per galaxy (models in blocks of
20,000 to bound memory).
All use the same grid (U_min: 23 values, U_max = 1e6, gamma: n values in 0..1, q_PAH: 7 values), the same quoted
band convention and the same catalogue. hpcfit additionally computes the likelihood-weighted estimates of every
parameter and the dust mass and writes everything to HDF5.

Timing, the same on every side: wall clock of a fresh command from launch to exit (Python start-up, imports,
catalogue and template loading, grid, fit, output), best of --repeat runs on each side. hpcfit's "fit stage" (the
chi2 + reductions part reported by the job) is detail only. Cores: Pool(P) and hpcfit -n P use P cores; the numpy
reference and hpcfit -n 1 use one.

The Pool reference runs only up to --ref-max models (1e4 by default: its cost grows as 21 x N pickled calls), the
numpy reference up to --vec-max (1e6). The machine is shared: the load average is printed with every row.

Usage: .venv/bin/python bench/gridfit_vs_pool.py [--sizes 1e3,1e4,1e5,1e6] [--ranks 1,2] [--processes 2]
       [--ref-max 1e4] [--vec-max 1e6] [--repeat 2] [--kernel]   (--kernel: the chi2 stage's GFLOP/s on a 5,000-galaxy catalogue)
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


def vectorised(catalog, n_gamma: int, block: int = 20_000) -> dict:
    """The same maths as the Pool reference, as array operations in one process."""
    ids, distance, flux, error = catalog
    t = _templates()
    grid = np.array(list(itertools.product(t.umin, [1e6], np.linspace(0, 1, n_gamma), t.qpah)))
    x = np.asarray(t.wavelength, float)
    # trapezoid weights: np.trapezoid(y * w, x) == y @ (w * c) with c_i = (dx_{i-1} + dx_i) / 2
    dx = np.diff(x)
    c = np.zeros_like(x)
    c[:-1] += dx / 2
    c[1:] += dx / 2
    columns = []
    for filt in _filters():
        response = np.interp(x, filt.wavelength, filt.photon_response, left=0.0, right=0.0)
        weight = response / x
        columns.append(weight * c / np.sum(weight * c) * filt.quote_factor(x))
    band = np.column_stack(columns)  # (n_lambda, 7)
    factor = 1e29 / (4.0 * np.pi * (distance * MPC_M) ** 2)  # mJy per (W/Hz) per M_sun, per galaxy
    w = 1.0 / error**2  # (G, 7)
    best_chi2 = np.full(len(ids), np.inf)
    best = np.zeros(len(ids), int)
    mass = np.zeros(len(ids))
    for a in range(0, len(grid), block):
        g = grid[a:a + block]
        lum = t.lnu(g[:, 0], g[:, 1], g[:, 2], g[:, 3]) @ band  # (M, 7)
        q = factor[:, None, None] * lum[None]  # (G, M, 7)
        scale = np.maximum(np.einsum("gb,gmb->gm", w * flux, q) / np.einsum("gb,gmb->gm", w, q * q), 0.0)
        chi2 = np.einsum("gb,gmb->gm", w, (flux[:, None, :] - scale[..., None] * q) ** 2)
        k = np.argmin(chi2, axis=1)
        low = chi2[np.arange(len(ids)), k]
        better = low < best_chi2
        best_chi2[better], best[better] = low[better], a + k[better]
        mass[better] = scale[np.arange(len(ids)), k][better]
    return {"best": best, "mass": mass, "n_models": len(grid)}


def reference_child(kind: str, n_gamma: int, processes: int, output: str) -> None:
    """A whole reference run in a fresh interpreter (timed from outside): read, grid, fit, save the best fits."""
    catalog = read_catalog(shared_file("dustpedia_21galaxies.csv"))
    result = reference(catalog, n_gamma, processes) if kind == "pool" else vectorised(catalog, n_gamma)
    np.savez(output, best=result["best"], mass=result["mass"], n_models=result["n_models"],
             grid_seconds=result.get("grid_seconds", np.nan), fit_seconds=result.get("fit_seconds", np.nan))


def run_reference(directory: Path, kind: str, n_gamma: int, processes: int) -> dict:
    output = directory / f"ref_{kind}_{n_gamma}.npz"
    command = [sys.executable, __file__, "--reference-child", kind, str(n_gamma), str(processes), str(output)]
    t0 = time.perf_counter()
    proc = subprocess.run(command, env=dict(os.environ, PYTHONPATH=str(REPO)), capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(proc.stdout + proc.stderr)
    with np.load(output) as z:
        result = {key: z[key] for key in z.files}
    output.unlink()
    return {"seconds": wall, "best": result["best"], "mass": result["mass"], "n_models": int(result["n_models"]),
            "grid_seconds": float(result["grid_seconds"]), "fit_seconds": float(result["fit_seconds"])}


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
    if len(sys.argv) == 6 and sys.argv[1] == "--reference-child":
        reference_child(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5])
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1e3,1e4,1e5,1e6", help="approximate grid sizes (models)")
    ap.add_argument("--ranks", default="1,2", help="MPI rank counts for hpcfit")
    ap.add_argument("--processes", type=int, default=2, help="Pool processes of the reference")
    ap.add_argument("--ref-max", type=float, default=1e4, help="largest grid the Pool reference is run on")
    ap.add_argument("--vec-max", type=float, default=1e6, help="largest grid the numpy reference is run on")
    ap.add_argument("--repeat", type=int, default=2, help="runs per measurement on every side; the fastest is kept")
    ap.add_argument("--kernel", action="store_true", help="also measure the chi2 stage on 5,000 galaxies")
    args = ap.parse_args()
    catalog_path = shared_file("dustpedia_21galaxies.csv")
    if catalog_path is None or shared_file("dl07") is None:
        sys.exit("needs the shared data (dustpedia_21galaxies.csv, dl07/, filters_ir/)")
    ranks = [int(r) for r in args.ranks.split(",")]
    last, first = ranks[-1], ranks[0]
    print(f"21 DustPedia galaxies x DL07 grid (23 U_min x 7 q_PAH x n gamma), 7 bands; {os.cpu_count()} cores (shared "
          f"machine, load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}); every time is the wall of a fresh "
          f"command, best of {args.repeat} on each side; Pool reference: Pool({args.processes}), numpy reference: "
          f"1 process; hpcfit: mpiexec -n {'/'.join(map(str, ranks))}")
    print(f"{'models':>9} | {'Pool ref s':>10} | {'numpy ref s':>11} | " + " | ".join(
        f"hpcfit n={r}: wall s (fit stage s)" for r in ranks) +
        f" | Pool/hpcfit n={last} | numpy/hpcfit n={first} | numpy/hpcfit n={last} | agree | load")
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        for size in (float(s) for s in args.sizes.split(",")):
            n_gamma = max(1, round(size / (N_UMIN * N_QPAH)))
            pool = vec = None
            if size <= args.ref_max:
                pool = min((run_reference(directory, "pool", n_gamma, args.processes) for _ in range(args.repeat)),
                           key=lambda r: r["seconds"])
            if size <= args.vec_max:
                vec = min((run_reference(directory, "numpy", n_gamma, 1) for _ in range(args.repeat)),
                          key=lambda r: r["seconds"])
            runs = {}
            for r in ranks:
                config = write_config(directory, catalog_path, n_gamma, f"grid{n_gamma}_n{r}")
                runs[r] = min((run_hpcfit(config, r) for _ in range(args.repeat)), key=lambda x: x["seconds"])
            ours = runs[last]
            cells = " | ".join(f"{runs[r]['seconds']:>18.2f} ({runs[r]['fit_seconds']:.3f})" for r in ranks)
            agree = []
            for name, ref in (("Pool", pool), ("numpy", vec)):
                if ref is not None:
                    dm = np.max(np.abs(ref["mass"] / ours["mass"] - 1))
                    agree.append(f"{name}: best {np.mean(ref['best'] == ours['best']):.0%}, mass {dm:.1e}")
            ratio = lambda ref, r: f"{ref['seconds'] / runs[r]['seconds']:>8.1f}x" if ref else f"{'-':>9}"  # noqa: E731
            print(f"{ours['n_models']:>9,} | {pool['seconds'] if pool else float('nan'):>10.2f} | "
                  f"{vec['seconds'] if vec else float('nan'):>11.2f} | {cells} | {ratio(pool, last):>17} | "
                  f"{ratio(vec, first):>18} | {ratio(vec, last):>18} | {'; '.join(agree) or '-'} | "
                  f"{os.getloadavg()[0]:.1f}", flush=True)
        if args.kernel:
            kernel_section(directory, last)


if __name__ == "__main__":
    main()
