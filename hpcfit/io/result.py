"""Reading an hpcfit output file back in Python: what every job's result object shares.

Each job's folder has a ``result.py`` with a subclass of :class:`JobResult` (``RESULT = ...``) that turns its HDF5
layout into astropy objects; ``hpcfit.open(path)`` picks the subclass from the file's ``job`` attribute. Datasets are
read when asked for, so opening a large file is cheap.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import h5py


class ResultFileError(ValueError):
    """The file is not an hpcfit output file of the expected job (the message names the file)."""


def _text(value: Any) -> Any:
    return value.decode() if isinstance(value, bytes) else value


class JobResult:
    """An hpcfit output file, opened for reading. Subclasses add the job's own views."""

    job: str = ""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            with h5py.File(self.path, "r") as h5:
                self.attrs: dict[str, Any] = {key: _text(value) for key, value in h5.attrs.items()}
        except OSError as exc:
            raise ResultFileError(f"{self.path}: not a readable HDF5 file ({exc})") from None
        found = self.attrs.get("job")
        if found is None:
            raise ResultFileError(f"{self.path}: no 'job' attribute; not an hpcfit output file")
        if self.job and found != self.job:
            raise ResultFileError(f"{self.path}: a {found} output, not a {self.job} one")

    @property
    def provenance(self) -> dict[str, Any]:
        """The root attributes: versions, config text, command line, ranks, hosts, times."""
        return dict(self.attrs)

    @property
    def config(self) -> str:
        """The config text the run used."""
        return str(self.attrs.get("config", ""))

    def h5(self) -> h5py.File:
        """The file opened read-only (use as a context manager)."""
        return h5py.File(self.path, "r")

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.attrs.get('job')} {str(self.path)!r}>"
