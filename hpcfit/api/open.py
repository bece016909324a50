"""``hpcfit.open(path)``: any hpcfit output file as its job's result object (``hpcfit/<job>/result.py``).

The job is read from the file's ``job`` attribute; the job's reader is found through the registry's module map, so
a file of a job this installation does not have is refused by name, and a file that is not an hpcfit output
(no ``job`` attribute, or not HDF5) gets a message saying so.
"""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path

from hpcfit.io.result import JobResult, ResultFileError
from hpcfit.registry import JOBS


def result_module(job: str) -> str:
    """The module holding a job's reader (``RESULT``): beside the job's ``job.py``."""
    return JOBS.modules[job].rsplit(".", 1)[0] + ".result"


def open(path: str | Path) -> JobResult:  # noqa: A001 - hpcfit.open, like h5py.File / astropy's fits.open
    """Open an hpcfit output file for reading: a ``JobResult`` subclass of the file's job (e.g. ``GridfitResult``
    with ``.table``), reading datasets when they are asked for. Raises ``ResultFileError`` (a ``ValueError``)
    naming the file when it is not an hpcfit output file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    job = JobResult(path).attrs["job"]
    if job not in JOBS.modules:
        raise ResultFileError(f"{path}: its job attribute '{job}' names no job of this installation "
                              f"(jobs: {', '.join(JOBS.modules)})")
    module = result_module(job)
    if importlib.util.find_spec(module) is None:  # a job without a reader of its own: the shared views
        return JobResult(path)
    return importlib.import_module(module).RESULT(path)
