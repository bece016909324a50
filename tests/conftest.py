"""Shared pytest fixtures: the shared-data locator (skipping with a clear reason) and temporary work dirs."""

from __future__ import annotations

import sys

from hpcfit.process import configure_process

# In-process runs are compared with `mpiexec hpcfit` runs bit for bit: give them the command's thread settings
# (one BLAS thread) before numpy is imported, as the command line does.
configure_process()
assert "numpy" not in sys.modules, "numpy was imported before tests/conftest.py: BLAS threads are not pinned"

import pytest  # noqa: E402

from hpcfit.shared_data import ENV_VAR, shared_file  # noqa: E402


@pytest.fixture
def shared_path():
    """Return a function giving the path of a shared data file, skipping the test when it is absent."""

    def get(relative: str):
        path = shared_file(relative)
        if path is None:
            pytest.skip(f"shared data file '{relative}' not found: set {ENV_VAR} or place it in ../shared/data")
        return path

    return get
