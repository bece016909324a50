#!/usr/bin/env bash
# `make bench`: every benchmark, each side by side with the reference system it must beat, printing ratios.
# Results (stdout of each) go to bench/results/<name>.txt. The benchmarks take minutes each and want a quiet
# machine: the figures of the issues' closing notes came from these scripts.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
"$PY" -m pip install -q --disable-pip-version-check -e ".[bench]" >/dev/null
mkdir -p bench/results
run() {  # name, command...
    local name=$1; shift
    echo "== $name: $*"
    "$@" 2>&1 | tee "bench/results/$name.txt"
}
run cubefit_vs_astropy   "$PY" bench/cubefit_vs_astropy.py --ranks 2 --workers 2
run cubefit_solver_agreement "$PY" bench/cubefit_solver_agreement.py
run cubefit_mosaic_vs_dask "$PY" bench/cubefit_mosaic_vs_dask.py --ranks 2 --workers 2
run gridfit_chi2_kernel  "$PY" bench/gridfit_chi2_kernel.py
run gridfit_vs_pool      "$PY" bench/gridfit_vs_pool.py
run sed_model_throughput "$PY" bench/sed_model_throughput.py
run sample_vs_pool       "$PY" bench/sample_vs_pool.py
run calib_kernels        "$PY" bench/calib_kernels.py
run calibrate_vs_ccdproc "$PY" bench/calibrate_vs_ccdproc.py
run scaling              bash bench/scaling/run_all.sh
echo "== done: bench/results/"
