"""BLAS/OpenMP threads during a job: pinned, so that results do not depend on who imported numpy first.

A multi-threaded BLAS may split a sum over threads and add the partial sums in another order than a
single-threaded one, so the last bits of a result depend on the thread count. hpcfit promises the same file for
any rank count, which holds only if every rank of every run uses the same count. Environment variables
(``OMP_NUM_THREADS`` ...) act only on libraries loaded after they are set, so the ``hpcfit`` command's settings
(``hpcfit.process``) cannot reach a Python caller that imported numpy first; ``pinned_threads`` can: it sets the
limit of every BLAS/OpenMP library already loaded (threadpoolctl) and the variables for the ones loaded during
the job, and puts both back afterwards.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import threadpoolctl
from threadpoolctl import threadpool_info, threadpool_limits

# Read by OpenBLAS, the OpenMP runtimes and MKL when they are loaded: libraries first loaded inside the job
# (a module imported lazily by a job's setup or work) start with the pinned count too.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")

# path -> its real path when it is a symbolic link, None when it is not; only for paths whose directory has no link
_links: dict[str, str | None] = {}


def steady_realpath(path: str) -> str:
    """``os.path.realpath`` that checks each directory of a path once per process, not once per path.

    threadpoolctl resolves the file of every loaded library (150-300 with numpy, scipy, h5py and their extension
    modules), and ``os.path.realpath`` ``lstat``s every component of each: eight calls for a file in a venv's
    site-packages, the same few directories over and over, each a metadata-server round trip on Lustre. The
    installed libraries do not change during a run, so whether a path is a link is remembered (as threadpoolctl
    already remembers whole paths). Relative paths and other systems go to ``os.path.realpath``.
    """
    if os.name != "posix" or not isinstance(path, str) or not path.startswith("/"):
        return os.path.realpath(path)
    resolved = "/"
    for name in path.split("/"):
        if name in ("", "."):
            continue
        if name == "..":  # ``resolved`` holds no link, so its parent is its real parent (as realpath does)
            resolved = os.path.dirname(resolved)
            continue
        candidate = os.path.join(resolved, name)
        if candidate not in _links:
            _links[candidate] = os.path.realpath(candidate) if os.path.islink(candidate) else None
        resolved = _links[candidate] or candidate
    return resolved


if os.environ.get("HPCFIT_STEADY_IMPORTS") != "0" and hasattr(threadpoolctl, "_realpath"):
    # threadpoolctl's own cached realpath, called on every library file it inspects (threadpoolctl 3.x)
    threadpoolctl._realpath = steady_realpath


@contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    """Set environment variables for the duration of the block, then restore (or remove) them."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextmanager
def pinned_threads(threads: int) -> Iterator[None]:
    """Limit every BLAS and OpenMP thread pool of this process to ``threads`` for the duration of the block.

    On exit the libraries loaded before the block get back their previous limits and the variables their previous
    values, so an in-process caller's process is left as it was (a library first loaded inside the block keeps
    the pinned count: it had none before).
    """
    if threads < 1:
        raise ValueError(f"threads must be at least 1, got {threads}")
    with _environment({name: str(threads) for name in THREAD_VARIABLES}), threadpool_limits(limits=threads):
        yield


def thread_pools() -> list[dict[str, Any]]:
    """The BLAS/OpenMP libraries loaded in this process and their current thread limits (threadpoolctl's view)."""
    return threadpool_info()


def describe_thread_pools() -> str:
    """One line per loaded BLAS/OpenMP library with its thread limit, for the output file's provenance."""
    return "; ".join(f"{pool.get('internal_api', '?')} {pool.get('version') or ''} "
                     f"({os.path.basename(pool.get('filepath', '?'))}): {pool.get('num_threads')} thread(s)"
                     for pool in thread_pools())
