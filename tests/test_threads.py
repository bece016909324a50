"""Thread-independent results: a Python caller that imported numpy first and runs a multi-threaded BLAS gets, from
``hpcfit.cli.main`` in-process, the same file as ``mpiexec -n 2 hpcfit`` — for every job — because the engine pins
the BLAS/OpenMP threads during the job (``run.blas_threads``) and gives the caller its threads back afterwards."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import h5py
import pytest

from cube_case import cube_workdir
from gridfit_helpers import write_config as write_gridfit_config
from gridfit_helpers import write_inputs as write_gridfit_inputs
from h5compare import assert_ran_with, assert_same_datasets
from launch import HANG_GUARD_SECONDS, REPO, hpcfit

from hpcfit.calibrate.kernels.synthetic import make_night
from hpcfit.runtime.threads import pinned_threads, thread_pools

HERE = Path(__file__).resolve().parent

# The built-in SED model (a BLAS-using model, unlike the toy plug-in) on its synthetic SSPs.
SAMPLE = """\
job: sample
output: inproc.h5
sample:
  free_params: {redshift: [0, 6], log_mass: [8, 12], dust2: [0, 2], tage: [0.001, 13.8], log_tau: [-1, 1.47],
                log_agn_mass: [-7, 1.17], inclination: [0, 90]}
  sampling: {n_samples: 4000, seed: 5, batch_size: 1000, filters: dustpedia_ir}
  model: {name: builtin, options: {ssp: synthetic}}
"""

CALIBRATE = """\
job: calibrate
output: inproc.h5
calibrate:
  inputs: [night]
  uncertainty: true
  batch_frames: 2
"""

JOBS = ("sample", "gridfit", "cubefit", "calibrate")


def _case(tmp_path_factory, job: str) -> Path:
    """A directory holding the small inputs of ``job`` and its config ``cfg.yaml`` (output ``inproc.h5``)."""
    if job == "cubefit":
        directory = cube_workdir(tmp_path_factory, "cubefit", (30, 8, 10))
        config = directory / "cfg.yaml"
        config.write_text(config.read_text().replace("output: out.h5", "output: inproc.h5"))
        return directory
    directory = tmp_path_factory.mktemp(job)
    if job == "gridfit":
        write_gridfit_inputs(directory)
        write_gridfit_config(directory, "cfg.yaml", "inproc.h5")
    elif job == "sample":
        (directory / "cfg.yaml").write_text(SAMPLE)
    else:
        make_night(directory / "night", shape=(64, 96), n_bias=5, n_dark=5, n_flat=5, n_science=4)
        (directory / "cfg.yaml").write_text(CALIBRATE)
    return directory


@pytest.fixture(scope="module")
def cases(tmp_path_factory) -> dict[str, Path]:
    return {job: _case(tmp_path_factory, job) for job in JOBS}


@pytest.fixture(scope="module")
def threaded_caller(cases) -> dict:
    """Every job run in-process by one interpreter whose numpy was imported first with a 2-thread BLAS."""
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("one CPU: OpenBLAS caps its threads at the CPU count, no multi-threaded BLAS to pin")
    env = dict(os.environ)
    env.update(OPENBLAS_NUM_THREADS="2", OMP_NUM_THREADS="2", MKL_NUM_THREADS="2",
               PYTHONPATH=os.pathsep.join([str(REPO), str(HERE)]))
    env.pop("HPCFIT_BLAS_THREADS", None)
    configs = [str(cases[job] / "cfg.yaml") for job in JOBS]
    proc = subprocess.run([sys.executable, str(HERE / "threads_inprocess.py"), *configs], env=env,
                          capture_output=True, text=True, timeout=HANG_GUARD_SECONDS)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_the_caller_had_a_multithreaded_blas_and_gets_it_back(threaded_caller):
    before, after = threaded_caller["before"], threaded_caller["after"]
    assert before and max(before.values()) > 1, f"the caller's BLAS is not multi-threaded: {before}"
    assert threaded_caller["codes"] == [0] * len(JOBS)
    # libraries loaded before the runs are given back their limits (ones first loaded by a job keep the pin)
    assert {path: after[path] for path in before} == before


@pytest.mark.mpi
@pytest.mark.parametrize("job", JOBS)
def test_in_process_with_threaded_blas_equals_mpiexec(cases, threaded_caller, job):
    directory = cases[job]
    with h5py.File(directory / "inproc.h5") as h5:
        assert h5.attrs["blas_threads"] == 1
        during = [int(n) for n in re.findall(r": (\d+) thread", h5.attrs["blas_libraries"])]
    assert during and set(during) == {1}, f"BLAS not pinned during the job: {during}"
    result = hpcfit(["run", "cfg.yaml", "--set", "output=mpi2.h5"], n=2, cwd=directory)
    assert result.returncode == 0, result.output
    assert_ran_with(directory / "mpi2.h5", n_ranks=2, mode="mpio")
    assert_same_datasets(directory / "inproc.h5", directory / "mpi2.h5")


def test_pinned_threads_restores_limits_and_environment(monkeypatch):
    import numpy as np  # noqa: F401 - a BLAS to pin

    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    before = {pool["filepath"]: pool["num_threads"] for pool in thread_pools()}
    with pinned_threads(1):
        assert all(pool["num_threads"] == 1 for pool in thread_pools())
        assert os.environ["OMP_NUM_THREADS"] == "1" and os.environ["MKL_NUM_THREADS"] == "1"
    assert {pool["filepath"]: pool["num_threads"] for pool in thread_pools()} == before
    assert os.environ["OMP_NUM_THREADS"] == "3" and "MKL_NUM_THREADS" not in os.environ
    with pytest.raises(ValueError):
        with pinned_threads(0):
            pass


def test_steady_realpath_is_realpath(tmp_path):
    """threadpoolctl's per-library path resolution (``steady_realpath``): the same answers as os.path.realpath
    through links, relative links, ``..`` after a link, missing parts; and it is the one threadpoolctl uses."""
    import threadpoolctl

    from hpcfit.runtime.threads import steady_realpath

    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "f.so").write_text("")
    (tmp_path / "link").symlink_to(tmp_path / "a" / "b")
    (tmp_path / "a" / "b" / "up").symlink_to("..")
    (tmp_path / "a" / "rel.so").symlink_to("b/up/f.so")
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    cases = [tmp_path / "link" / "up" / "f.so", tmp_path / "link" / ".." / "f.so", tmp_path / "a" / "rel.so",
             tmp_path / "a" / "b" / "up" / "b" / "up" / "." / "f.so", tmp_path / "missing" / ".." / "x.so",
             tmp_path / "loop" / "x", Path("/"), Path("relative/x.so")]
    for case in map(str, cases):
        assert steady_realpath(case) == os.path.realpath(case), case
    assert steady_realpath(str(tmp_path / "link" / "f")) == str(tmp_path / "a" / "b" / "f")
    if os.environ.get("HPCFIT_STEADY_IMPORTS") != "0":
        assert threadpoolctl._realpath is steady_realpath
