"""Process-wide settings of the ``hpcfit`` command: BLAS/OpenMP threads, glibc's malloc, and a quicker
``inspect.getmodule`` for frames (start-up's file-metadata calls).

They change the whole process, so only the command-line entry (``hpcfit.cli.entry``, ``python -m hpcfit``) applies
them, before numpy is imported; ``import hpcfit`` and the Python API change nothing. Users override them with
the usual variables (``OMP_NUM_THREADS`` ..., glibc's ``MALLOC_*``) or ``HPCFIT_BLAS_THREADS`` and
``HPCFIT_MALLOC_TUNING=0``.

The thread variables only set the start-up value (they act on libraries not loaded yet, and cannot reach a Python
caller that imported numpy first): during a job the engine pins the threads to ``run.blas_threads``
(``hpcfit.runtime.threads``), which is what makes results independent of how the process was started.
"""

from __future__ import annotations

import os


def one_thread_per_rank() -> None:
    """hpcfit's parallelism is its MPI ranks: pin BLAS/OpenMP to one thread per process unless the user chose
    otherwise (OMP_NUM_THREADS etc., or HPCFIT_BLAS_THREADS). Two reasons: several ranks per node each running a
    multi-threaded BLAS oversubscribe the cores; and a threaded BLAS may sum in a different order than a
    single-threaded one, which would make a serial run differ in the last bits from an MPI run — hpcfit promises
    the same file for any rank count. Must run before numpy is imported. During the job itself the engine pins the
    threads to ``run.blas_threads`` whatever these variables say (``hpcfit.runtime.threads``)."""
    threads = os.environ.get("HPCFIT_BLAS_THREADS", "1")
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, threads)


def keep_freed_memory() -> None:
    """numpy's temporaries of a few hundred kB to a few MB are, by glibc's default, mmap'ed on allocation and
    unmapped on release, so every temporary pays fresh page faults on first touch; on virtual machines that makes
    array arithmetic several times slower (np.exp of a new (2048, 53) temporary: 0.9 ms instead of 0.12 ms here).
    Serve allocations up to 32 MiB from the heap and keep up to 256 MiB of freed heap for reuse. Skipped when the
    user sets glibc's MALLOC_* variables or HPCFIT_MALLOC_TUNING=0, and on non-glibc systems."""
    import sys

    if not sys.platform.startswith("linux") or os.environ.get("HPCFIT_MALLOC_TUNING") == "0":
        return
    if any(key.startswith("MALLOC_") or key == "GLIBC_TUNABLES" for key in os.environ):
        return
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_top_pad, m_mmap_threshold = -1, -2, -3
        libc.mallopt(m_mmap_threshold, 32 << 20)
        libc.mallopt(m_trim_threshold, 256 << 20)
        libc.mallopt(m_top_pad, 64 << 20)
    except (OSError, AttributeError):
        pass


def quick_frame_modules() -> None:
    """astropy declares its configuration items at import time and looks up the declaring module of each with
    ``inspect.getmodule(frame)``; for a frame, the standard lookup maps the file of every module loaded so far
    through ``os.path.realpath``, one ``lstat`` per path component: about half of all file-metadata system calls
    of a rank's start-up (8,900 of 17,400 for cubefit), each a round trip to the metadata server on a parallel
    file system. A frame of a module's own code names its module in its globals: answer from there when that
    module is loaded and its file is the frame's file (the answer the full lookup gives), and fall back to the
    standard lookup otherwise. Skipped with ``HPCFIT_QUICK_GETMODULE=0``."""
    import inspect
    import sys

    original = inspect.getmodule
    if getattr(original, "hpcfit_quick", False) or os.environ.get("HPCFIT_QUICK_GETMODULE") == "0":
        return

    def getmodule(object, _filename=None):  # noqa: A002 - inspect's own signature
        if inspect.isframe(object):
            module = sys.modules.get(object.f_globals.get("__name__"))
            if module is not None and getattr(module, "__file__", None) == object.f_code.co_filename:
                return module
        return original(object, _filename)

    getmodule.hpcfit_quick = True  # type: ignore[attr-defined]
    getmodule.__doc__ = original.__doc__
    inspect.getmodule = getmodule


def configure_process() -> None:
    """Apply the settings (the command-line entry calls this first)."""
    one_thread_per_rank()
    keep_freed_memory()
    quick_frame_modules()
