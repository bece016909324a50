"""hpcfit: run astronomers' embarrassingly parallel model runs on MPI, from one YAML config into one HDF5 file.

Four jobs share one engine: ``sample`` (photometry training sets), ``gridfit`` (grid SED fitting),
``cubefit`` (fit an astropy model to every spectrum or plane of a cube) and ``calibrate`` (CCD reduction).
"""

import os as _os

__version__ = "0.1.0"


def _one_thread_per_rank() -> None:
    """Several MPI ranks on a node each running a multi-threaded BLAS oversubscribe the cores (each rank's
    OpenBLAS starts one thread per core). hpcfit's parallelism is the ranks: pin BLAS/OpenMP to one thread per
    rank unless the user chose otherwise. Must run before numpy is imported."""
    size = _os.environ.get("PMI_SIZE") or _os.environ.get("OMPI_COMM_WORLD_SIZE") or _os.environ.get("SLURM_NTASKS")
    if size and size.isdigit() and int(size) > 1:
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            _os.environ.setdefault(var, "1")


_one_thread_per_rank()
