#!/usr/bin/env bash
# The whole scaling study (docs/scaling.md): micro-benchmarks, the 1/2/4-rank runs (3 repetitions), the model,
# the plot and the tables. About 10-15 minutes on 2 quiet cores. Usage: bash bench/scaling/run_all.sh [--append]
#   --append   add 3 more repetitions to bench/scaling/measurements.json instead of replacing it
# scheduler4.json keeps the earlier helper-thread scheduler's figures (the model's `server=True` what-if); it is
# not re-measured (the scheduler it measured is gone). A full run of run_jobs.py supersedes the per-job overlays
# in measurements/ and measurements_gridfit.json (later runs of some jobs, laid over measurements.json by
# report.py), so they are removed; measurements_gridfit_before.json (gridfit before issue 14) stays as a record.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
MPIEXEC=${MPIEXEC:-$(command -v mpiexec.mpich || command -v mpiexec)}
OUT=bench/scaling
$PY $OUT/startup.py $OUT/startup.json
$MPIEXEC -n 2 $PY $OUT/components.py $OUT/components.json --repeat 5
$MPIEXEC -n 2 $PY $OUT/claim_latency.py $OUT/claim_latency_2.json --repeat 3
$MPIEXEC -n 4 $PY $OUT/claim_latency.py $OUT/claim_latency_4.json --repeat 3
$PY $OUT/gridfit_components.py $OUT/gridfit_components.json
$PY $OUT/survey_costs.py $OUT/survey_costs.json
$PY $OUT/gridfit_rank0.py $OUT/gridfit_rank0.json
$PY $OUT/run_jobs.py --repeat 3 --out $OUT/measurements.json "$@"
rm -rf $OUT/measurements $OUT/measurements_gridfit.json
$PY $OUT/report.py
