#!/usr/bin/env bash
# The whole scaling study (docs/scaling.md): micro-benchmarks, the 1/2/4-rank runs (3 repetitions), the model,
# the plot and the tables. About 10-15 minutes on 2 cores. Usage: bash bench/scaling/run_all.sh [--append]
#   --append   add 3 more repetitions to bench/scaling/measurements.json instead of replacing it
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
MPIEXEC=${MPIEXEC:-$(command -v mpiexec.mpich || command -v mpiexec)}
OUT=bench/scaling
$PY $OUT/components.py --startup $OUT/startup.json
$MPIEXEC -n 2 $PY $OUT/components.py $OUT/components.json --repeat 5
$MPIEXEC -n 4 $PY $OUT/components.py $OUT/scheduler4.json --repeat 3 --scheduler-only
$PY $OUT/run_jobs.py --repeat 3 --out $OUT/measurements.json "$@"
$PY $OUT/report.py
