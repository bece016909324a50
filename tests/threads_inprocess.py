"""Run hpcfit configs in-process the way a notebook would: numpy imported first, its BLAS already multi-threaded.

Started by tests/test_threads.py in a fresh interpreter (with OPENBLAS_NUM_THREADS/OMP_NUM_THREADS=2 in its
environment): ``python threads_inprocess.py CONFIG...``. Prints one JSON line: the BLAS thread limits before,
during (read back from each output file) and after the runs, and each run's exit code.
"""

from __future__ import annotations

import json
import sys

import numpy as np  # first, before hpcfit: the hpcfit command's environment settings cannot act any more
from threadpoolctl import threadpool_info


def blas_threads() -> dict[str, int]:
    """Thread limit of each loaded BLAS library, by file."""
    return {pool["filepath"]: pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"}


def start_blas() -> None:
    """Make the BLAS start its thread pool: a matrix product large enough to be split over threads."""
    a = np.random.default_rng(0).standard_normal((1200, 1200))
    assert np.isfinite((a @ a).sum())


def main(configs: list[str]) -> int:
    start_blas()
    before = blas_threads()
    from hpcfit.cli import main as hpcfit_main  # after numpy and its threads, as in a notebook

    codes = [hpcfit_main(["run", config]) for config in configs]
    print(json.dumps({"before": before, "after": blas_threads(), "codes": codes}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
