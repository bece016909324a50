"""Helpers for tests that launch real MPI jobs (``mpiexec -n N python -m hpcfit ...``) as subprocesses."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
# A hang guard only (a collective that never returns), not a performance limit: generous on a loaded machine.
HANG_GUARD_SECONDS = 600
PROBE = Path(__file__).resolve().parent / "rank_probe.py"


def find_mpiexec() -> str | None:
    """The launcher that matches mpi4py's MPI library (MPICH's on Debian), or None."""
    explicit = os.environ.get("HPCFIT_MPIEXEC")
    if explicit:
        return explicit
    for name in ("mpiexec.mpich", "mpiexec", "mpirun"):
        path = shutil.which(name)
        if path:
            return path
    return None


def serial_h5py_dir() -> Path | None:
    """A stock (serial) h5py installed aside by the setup script, for the serial-fallback tests."""
    path = Path(sys.prefix) / "serial-h5py"
    return path if (path / "h5py").is_dir() else None


@dataclass
class Completed:
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def hpcfit(args: list[str], *, n: int | None = None, cwd: Path | None = None, env: dict[str, str] | None = None,
           serial_h5py: bool = False, probe_ranks: bool = False) -> Completed:
    """Run ``python -m hpcfit ARGS`` (under ``mpiexec -n n`` when n is given). ``probe_ranks``: run it through
    ``rank_probe.py``, whose line per rank ``assert_every_rank_exited`` checks (for runs that write no file)."""
    full_env = dict(os.environ)
    full_env.pop("HPCFIT_INJECT_FAULT", None)
    paths = [str(REPO)]
    if serial_h5py:
        serial = serial_h5py_dir()
        if serial is None:
            pytest.skip("no serial h5py installed aside (.venv/serial-h5py); run `make setup`")
        paths.insert(0, str(serial))
    extra = dict(env or {})
    # a PYTHONPATH given by the test is added to the tree under test, never put in its place (else the launched
    # ranks would import whatever hpcfit the venv's editable install points at)
    wanted = [extra.pop("PYTHONPATH", ""), full_env.get("PYTHONPATH", "")]
    full_env["PYTHONPATH"] = os.pathsep.join(paths + [p for p in wanted if p])
    full_env.update(extra)
    command = [sys.executable, *([str(PROBE)] if probe_ranks else ["-m", "hpcfit"]), *args]
    if n is not None:
        launcher = find_mpiexec()
        if launcher is None:
            pytest.skip("no mpiexec on PATH")
        command = [launcher, "-n", str(n), *command]
    start = time.monotonic()
    proc = subprocess.run(command, cwd=cwd, env=full_env, capture_output=True, text=True,
                          timeout=HANG_GUARD_SECONDS)
    return Completed(proc.returncode, proc.stdout, proc.stderr, time.monotonic() - start)


def assert_every_rank_exited(result: Completed, n_ranks: int, code: int) -> None:
    """Assert that a ``probe_ranks`` run had ``n_ranks`` MPI ranks and that each of them exited with ``code``."""
    # found anywhere, not line by line: the launcher may interleave the ranks' output mid-line
    lines = sorted(re.findall(r"rank-probe: rank \d+ of \d+ exited with code -?\d+", result.stdout))
    expected = sorted(f"rank-probe: rank {r} of {n_ranks} exited with code {code}" for r in range(n_ranks))
    assert lines == expected, f"expected {n_ranks} rank(s) exiting {code}, got {lines}\n{result.output}"
