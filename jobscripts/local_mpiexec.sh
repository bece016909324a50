#!/bin/bash
# Run a config on this machine with N ranks: jobscripts/local_mpiexec.sh CONFIG.yaml [N] [--set key=value ...]
# More ranks than cores works (MPICH oversubscribes without flags) but is slower than one rank per core.
set -euo pipefail
HERE="$(cd "$(dirname "$0")/.." && pwd)"
CONFIG=${1:?usage: local_mpiexec.sh CONFIG.yaml [N] [--set key=value ...]}
shift
N=$(nproc)
if [[ $# -gt 0 && "$1" =~ ^[0-9]+$ ]]; then N=$1; shift; fi
MPIEXEC=$(command -v mpiexec.mpich || command -v mpiexec)
"$HERE/.venv/bin/hpcfit" validate "$CONFIG" "$@"
exec "$MPIEXEC" -n "$N" "$HERE/.venv/bin/hpcfit" run "$CONFIG" "$@"
