"""Locate the read-only shared data directory (real cubes, CCD frames, DL07 templates) used by demos and tests.

The data are never copied into the repository: they live beside the project root in ``../shared/data``
or wherever ``HPCFIT_SHARED_DATA`` points.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

ENV_VAR = "HPCFIT_SHARED_DATA"


@functools.cache
def _project_root() -> Path:
    """The folder holding the hpcfit package (resolved once: each ``resolve`` is an ``lstat`` per path component)."""
    return Path(__file__).resolve().parent.parent


def shared_data_dir() -> Path | None:
    """Return the shared data directory, or None when it cannot be found."""
    env = os.environ.get(ENV_VAR)
    if env:
        path = Path(env).expanduser()
        return path if path.is_dir() else None
    for candidate in (_project_root().parent / "shared" / "data", Path.cwd().parent / "shared" / "data"):
        if candidate.is_dir():
            return candidate
    return None


def shared_file(relative: str) -> Path | None:
    """Return the path of one shared data file, or None when it is missing."""
    base = shared_data_dir()
    if base is None:
        return None
    path = base / relative
    return path if path.exists() else None
