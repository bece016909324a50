"""Cost of naming the output's dimensions (hpcfit.io.dims.finish_file, run by rank 0 on the closed file) next to
writing the file itself: a sample-like file of N rows (theta (N, 9), x (N, 7), index (N,)), best of 3, alternated.

    python bench/dims_finish.py [N]          (default 2,000,000 rows: ~260 MB)
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

from hpcfit.io.dims import FileFinish, finish_file


def write(path: Path, n: int) -> float:
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    with h5py.File(path, "w") as h5:
        h5.create_dataset("samples/theta", data=rng.random((n, 9)))
        h5.create_dataset("samples/simulated_y", data=rng.random((n, 7))).attrs["unit"] = "maggies"
        h5.create_dataset("samples/sample_index", data=np.arange(n))
    os.sync()
    return time.perf_counter() - t0


def finish(path: Path) -> float:
    plan = FileFinish()
    coords = {"parameter": [f"p{i}" for i in range(9)], "band": [f"b{i}" for i in range(7)]}
    plan.name_dimensions("samples/theta", ("sample", "parameter"), coords)
    plan.name_dimensions("samples/simulated_y", ("sample", "band"), coords)
    plan.name_dimensions("samples/sample_index", ("sample",), coords)
    plan.link("theta", "samples/theta")
    plan.link("x", "samples/simulated_y")
    t0 = time.perf_counter()
    finish_file(path, plan)
    os.sync()
    return time.perf_counter() - t0


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 2_000_000
    directory = Path(tempfile.mkdtemp(prefix="hpcfit_dims_"))
    writes, finishes = [], []
    try:
        for _ in range(3):
            path = directory / "f.h5"
            writes.append(write(path, n))
            size = path.stat().st_size
            finishes.append(finish(path))
            grown = path.stat().st_size - size
            path.unlink()
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    print(f"N = {n:,} rows, file {size / 1e6:.0f} MB; load: {os.getloadavg()[0]:.2f}")
    print(f"write (best of 3)  {min(writes):.3f} s")
    print(f"finish_file (best) {min(finishes) * 1e3:.1f} ms  ({min(finishes) / min(writes):.2%} of the write; "
          f"file grew by {grown} bytes)")


if __name__ == "__main__":
    main()
