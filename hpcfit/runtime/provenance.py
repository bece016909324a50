"""Provenance written into the root attributes of every output file.

Enough to reproduce and to trust a result: what ran (hpcfit version, job, config text, command line), where and
how (host(s), rank count, MPI library), with which software (Python, numpy, astropy, h5py/HDF5, mpi4py, scipy),
and when (start and end times, UTC ISO 8601).
"""

from __future__ import annotations

import getpass
import os
import platform
import sys
from datetime import datetime, timezone
from importlib import metadata
from typing import Any

from hpcfit._version import __version__
from hpcfit.runtime.comm import Comm


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def software_versions() -> dict[str, str]:
    """Versions of the software stack that shapes the numbers."""
    import h5py
    import numpy

    versions = {
        "hpcfit_version": __version__,
        "python_version": platform.python_version(),
        "numpy_version": numpy.__version__,
        "astropy_version": _version("astropy"),
        "scipy_version": _version("scipy"),
        "h5py_version": h5py.__version__,
        "hdf5_version": h5py.version.hdf5_version,
        "h5py_parallel": str(bool(h5py.get_config().mpi)),
        "mpi4py_version": _version("mpi4py"),
    }
    if "mpi4py.MPI" in sys.modules:
        MPI = sys.modules["mpi4py.MPI"]
        versions["mpi_library"] = MPI.Get_library_version().strip().splitlines()[0]
        versions["mpi_standard"] = "{}.{}".format(*MPI.Get_version())
    else:
        versions["mpi_library"] = "none (serial run)"
    return versions


def run_provenance(comm: Comm, *, job: str, config_text: str, config_path: str, argv: list[str],
                   start_time: str) -> dict[str, Any]:
    """Root attributes describing this run (collective: gathers the host names). What is the same on every rank
    (user, directory, platform, package versions) is looked up on rank 0 and broadcast: ``platform.platform()``
    forks ``uname -p`` and the version lookups stat every sys.path entry, which 64 ranks need not all do."""
    hosts = sorted(set(comm.allgather(comm.host)))
    same = comm.bcast({"user": _user(), "working_directory": os.getcwd(), "platform": platform.platform(),
                       "versions": software_versions()} if comm.is_root else None)
    info: dict[str, Any] = {
        "job": job,
        "config": config_text,
        "config_path": os.path.abspath(config_path) if config_path else "",
        "command_line": " ".join(argv),
        "n_ranks": comm.size,
        "hosts": ",".join(hosts),
        "host": hosts[0] if hosts else "",
        "start_time": start_time,
        "user": same["user"],
        "working_directory": same["working_directory"],
        "platform": same["platform"],
    }
    info["peak_rss_mb_per_rank"] = [round(m, 1) for m in comm.allgather(peak_rss_mb())]
    info.update(same["versions"])
    for var in ("SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID"):
        if var in os.environ:
            info[var.lower()] = os.environ[var]
    return info


def peak_rss_mb() -> float:
    """This process's peak resident memory so far, in MB (0 where the platform does not say)."""
    try:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # kB on Linux
    except (ImportError, OSError):
        return 0.0


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no passwd entry in some containers
        return os.environ.get("USER", "unknown")
