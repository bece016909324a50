"""Benchmark: GFLOP/s of the gridfit chi2 block kernel against numpy matmul of the same shapes on this machine.

FLOPs of the kernel = its two products, 2 x (2 G N B); the reference is one numpy matmul (G_block, B) @ (B, N) per
block with its own 2 G N B FLOPs, so the printed ratio is "fraction of the machine's GEMM rate for these shapes"
(issue 5 target: >= 50 %). With B = 7 that GEMM is bound by writing its (G, N) output, not by arithmetic, so the
square-GEMM peak is printed too, for context. The likelihood stage (best fit + moments of the same block) is timed
separately. Run single-threaded BLAS (OPENBLAS_NUM_THREADS=1) to see one MPI rank's view.

    python bench/gridfit_chi2_kernel.py                      # 20,000 galaxies x 100,000 models x 7 bands
    python bench/gridfit_chi2_kernel.py --galaxies 2000 --models 20000
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from hpcfit.gridfit.chi2 import (
    ModelSlice,
    best_in_block,
    chi2_block,
    chi2_flops,
    prepare_photometry,
    rows_per_block,
)
from hpcfit.gridfit.reduce import BestFit, Moments, ScaleQuantity


def square_gemm_peak(n: int = 2000, repeat: int = 3) -> float:
    a = np.random.default_rng(0).random((n, n))
    best = min(_timed(lambda: a @ a) for _ in range(repeat))
    return 2.0 * n**3 / best / 1e9


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--galaxies", type=int, default=20_000)
    ap.add_argument("--models", type=int, default=100_000)
    ap.add_argument("--bands", type=int, default=7)
    ap.add_argument("--block-mb", type=float, default=256.0, help="memory for one (G_block, N) float64 array")
    ap.add_argument("--repeat", type=int, default=2, help="passes over the catalogue; the fastest is kept")
    ap.add_argument("--likelihood", action="store_true", help="also time best fit + moments (slower)")
    args = ap.parse_args()

    rng = np.random.default_rng(1)
    n_gal, n_mod, n_band = args.galaxies, args.models, args.bands
    models = ModelSlice.from_fluxes(rng.uniform(0.1, 2.0, (n_mod, n_band)))
    params = rng.uniform(0.0, 1.0, (n_mod, 4))
    truth = rng.integers(0, n_mod, n_gal)
    flux = models.fluxes[truth] * 10.0 ** rng.uniform(5, 8, n_gal)[:, None]
    error = 0.1 * flux
    flux += error * rng.normal(size=flux.shape)
    g_block = min(n_gal, rows_per_block(n_mod, args.block_mb * 2**20, n_arrays=1))
    chi2 = np.empty((g_block, n_mod))
    scale = np.empty((g_block, n_mod))
    ref_out = np.empty((g_block, n_mod))

    t_kernel = t_ref = t_like = np.inf
    for _ in range(args.repeat):
        tk = tr = tl = 0.0
        for g0 in range(0, n_gal, g_block):
            g1 = min(g0 + g_block, n_gal)
            phot = prepare_photometry(flux[g0:g1], error[g0:g1])
            out = (chi2[: g1 - g0], scale[: g1 - g0])
            tr += _timed(lambda: np.matmul(phot.fwk, models.mt, out=ref_out[: g1 - g0]))
            tk += _timed(lambda: chi2_block(phot, models, out=out))
            if args.likelihood:
                def like():
                    local, c, s = best_in_block(phot, models, *out)
                    BestFit.from_block(local, c, s, 0, extra=params[local])
                    Moments.from_block(out[0], params, ["a", "b", "c", "d"], scale=out[1],
                                       scale_quantities=[ScaleQuantity("log_mass")], best_local=local)
                tl += _timed(like)
        t_kernel, t_ref = min(t_kernel, tk), min(t_ref, tr)
        t_like = min(t_like, tl) if args.likelihood else t_like

    kernel_gflops = chi2_flops(n_gal, n_mod, n_band) / t_kernel / 1e9
    ref_gflops = 2.0 * n_gal * n_mod * n_band / t_ref / 1e9
    peak = square_gemm_peak()
    print(f"shape: {n_gal} galaxies x {n_mod} models x {n_band} bands, blocks of {g_block} galaxies; "
          f"BLAS threads: {os.environ.get('OPENBLAS_NUM_THREADS', 'default')}")
    print(f"chi2 kernel (2 products + scale/chi2):  {t_kernel:8.3f} s  {kernel_gflops:7.2f} GFLOP/s")
    print(f"numpy matmul, same shapes (1 product):  {t_ref:8.3f} s  {ref_gflops:7.2f} GFLOP/s")
    print(f"square GEMM 2000^3 peak:                           {peak:7.2f} GFLOP/s")
    print(f"ratio kernel / same-shape matmul: {kernel_gflops / ref_gflops:6.1%}   (target >= 50 %)")
    print(f"ratio kernel / square GEMM peak:  {kernel_gflops / peak:6.1%}   (B = {n_band}: memory-bound shape)")
    pairs = n_gal * n_mod
    print(f"chi2 stage: {t_kernel / pairs * 1e9:.2f} ns per (galaxy, model) pair")
    if args.likelihood:
        print(f"best fit + moments (4 params + log mass): {t_like:8.3f} s  {t_like / pairs * 1e9:.2f} ns per pair")


if __name__ == "__main__":
    main()
