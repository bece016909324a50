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
