"""A failure on one rank ends the whole MPI job promptly (no hang), naming the rank, the work item and the
cause, with a non-zero exit code and no output file that looks complete."""

from __future__ import annotations

from pathlib import Path

import pytest

from cube_case import CONFIG, cube_workdir
from h5compare import assert_ran_with
from launch import hpcfit

pytestmark = pytest.mark.mpi



@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    path = cube_workdir(tmp_path_factory, "faults", (30, 10, 12))
    # astropy's fitter one spectrum at a time, 15 per item: slow enough for the faults to land mid-run
    (path / "cfg.yaml").write_text(CONFIG.replace("  chunk_n_max: 20", "  solver: astropy\n  chunk_n_max: 15"))
    return path


# static schedule: every rank is sure to get items (with dynamic scheduling a slow-starting rank might get none)
@pytest.mark.parametrize("rank,schedule", [(2, "static"), (0, "dynamic")], ids=["worker-rank", "rank-0"])
def test_exception_on_one_rank_ends_four_rank_job(workdir, rank, schedule):
    result = hpcfit(["run", "cfg.yaml", "--set", "run.overwrite=true", "--set", f"run.schedule={schedule}"], n=4,
                    cwd=workdir,
                    env={"HPCFIT_INJECT_FAULT": f"rank={rank},item=*"})
    assert result.returncode != 0, result.output
    assert f"FATAL on rank {rank} of 4" in result.stderr, result.output
    assert "while processing work item" in result.stderr and "fits " in result.stderr, result.output
    assert "InjectedFault: injected fault" in result.stderr, result.output
    assert not (workdir / "out.h5").exists()
    assert not (workdir / "out.h5.incomplete").exists()  # the failing rank removed it


def test_killed_rank_ends_job_and_leaves_nothing_complete(workdir):
    result = hpcfit(["run", "cfg.yaml", "--set", "run.overwrite=true", "--set", "run.schedule=static"], n=2,
                    cwd=workdir, env={"HPCFIT_INJECT_FAULT": "rank=1,item=*,action=kill"})
    assert result.returncode != 0, result.output
    assert not (workdir / "out.h5").exists()


def test_same_job_without_fault_succeeds(workdir):
    result = hpcfit(["run", "cfg.yaml", "--set", "run.overwrite=true"], n=4, cwd=workdir)
    assert result.returncode == 0, result.output
    assert (workdir / "out.h5").exists() and not (workdir / "out.h5.incomplete").exists()
    assert_ran_with(workdir / "out.h5", n_ranks=4, mode="mpio")
