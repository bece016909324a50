"""hpcfit: run astronomers' embarrassingly parallel model runs on MPI, from one YAML config into one HDF5 file.

Four jobs share one engine: ``sample`` (photometry training sets), ``gridfit`` (grid SED fitting),
``cubefit`` (fit an astropy model to every spectrum or plane of a cube) and ``calibrate`` (CCD reduction).
"""

import os as _os

__version__ = "0.1.0"


def _one_thread_per_rank() -> None:
    """hpcfit's parallelism is its MPI ranks: pin BLAS/OpenMP to one thread per process unless the user chose
    otherwise (OMP_NUM_THREADS etc., or HPCFIT_BLAS_THREADS). Two reasons: several ranks per node each running a
    multi-threaded BLAS oversubscribe the cores; and a threaded BLAS may sum in a different order than a
    single-threaded one, which would make a serial run differ in the last bits from an MPI run — hpcfit promises
    the same file for any rank count. Must run before numpy is imported."""
    threads = _os.environ.get("HPCFIT_BLAS_THREADS", "1")
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        _os.environ.setdefault(var, threads)


_one_thread_per_rank()
