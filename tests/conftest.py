"""Shared pytest fixtures: the shared-data locator (skipping with a clear reason) and temporary work dirs."""

from __future__ import annotations

import pytest

from hpcfit.shared_data import ENV_VAR, shared_file


@pytest.fixture
def shared_path():
    """Return a function giving the path of a shared data file, skipping the test when it is absent."""

    def get(relative: str):
        path = shared_file(relative)
        if path is None:
            pytest.skip(f"shared data file '{relative}' not found: set {ENV_VAR} or place it in ../shared/data")
        return path

    return get


@pytest.fixture(scope="session", autouse=True)
def private_disk_cache(tmp_path_factory):
    """Every test (and the mpiexec runs it starts) uses a disk cache of its session, never the user's
    ~/.cache/hpcfit: tests see cold then warm entries of their own code, whatever other checkouts wrote."""
    import os

    from hpcfit.disk_cache import ENV_VAR as CACHE_VAR

    previous = os.environ.get(CACHE_VAR)
    os.environ[CACHE_VAR] = str(tmp_path_factory.mktemp("disk_cache"))
    yield
    if previous is None:
        os.environ.pop(CACHE_VAR, None)
    else:
        os.environ[CACHE_VAR] = previous
