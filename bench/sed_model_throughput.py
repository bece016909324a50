"""Throughput of the built-in SED model: spectra (parameter vectors -> band fluxes) per second and samples per
minute per core, at batch sizes 1k, 10k and 100k, over the reference's default hypercube (``des`` bands).

Run:  PYTHONPATH=. python bench/sed_model_throughput.py [--dtype float64] [--ssp synthetic] [--z-band 2,2.5]
Single-threaded numbers: set OMP_NUM_THREADS / OPENBLAS_NUM_THREADS=1 for a per-core figure (the script does).
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import time  # noqa: E402

import numpy as np  # noqa: E402

from hpcfit.models.sed.builtin import DEFAULT_BOUNDS, BuiltinSEDModel  # noqa: E402

LOG_AXES = ("mass", "agn_mass", "agn_torus_mass", "tau")  # sampled as log_* in the reference


def draw(n: int, rng: np.random.Generator, bounds: dict[str, tuple[float, float]]) -> dict[str, np.ndarray]:
    """Uniform draws in the hypercube (log-uniform on the reference's log_* axes), linear values."""
    out = {}
    for name, (lo, hi) in bounds.items():
        if name in LOG_AXES:
            out[name] = 10.0 ** rng.uniform(np.log10(lo), np.log10(hi), n)
        else:
            out[name] = rng.uniform(lo, hi, n)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dtype", default="float32", choices=("float64", "float32"))
    parser.add_argument("--ssp", default="bc03", choices=("bc03", "synthetic"))
    parser.add_argument("--filters", default="des")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--z-band", default=None, help="low,high: one rank's redshift band (default: the full 0-6)")
    args = parser.parse_args()

    bounds = dict(DEFAULT_BOUNDS)
    if args.z_band:
        bounds["redshift"] = tuple(float(v) for v in args.z_band.split(","))
    start = time.perf_counter()
    model = BuiltinSEDModel(args.filters, ssp=args.ssp, dtype=args.dtype, bounds=bounds)
    build = time.perf_counter() - start
    tables_mb = model.star_table.nbytes / 2**20
    print(f"model: {model.description}")
    print(f"build {build:.1f} s, stellar table {model.star_table.shape} {tables_mb:.0f} MiB ({args.dtype}), "
          f"redshift {bounds['redshift']}, load average {os.getloadavg()[0]:.1f}")
    rng = np.random.default_rng(0)
    print(f"{'batch':>8} {'spectra/s':>12} {'M samples/min/core':>20}")
    for size in (int(s) for s in args.sizes.split(",")):
        params = draw(size, rng, bounds)
        model(params)  # warm-up
        best = np.inf
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            out = model(params)
            best = min(best, time.perf_counter() - t0)
        assert np.all(np.isfinite(out)) and np.all(out > 0)
        rate = size / best
        print(f"{size:>8} {rate:>12.3g} {rate * 60 / 1e6:>20.2f}")


if __name__ == "__main__":
    main()
