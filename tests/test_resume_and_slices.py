"""Cluster operations without SLURM: job-array slices + merge, resume after kill -9 or a stop signal, refusal
to resume or merge with a changed config, and naming of missing or incomplete slices."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from h5compare import assert_ran_with, assert_same_datasets
from hpcfit.cli import main
from cube_case import cube_workdir
from launch import REPO, find_mpiexec, hpcfit



@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    path = cube_workdir(tmp_path_factory, "resume", (30, 12, 15))
    assert main(["run", str(path / "cfg.yaml"), "--set", f"output={path / 'reference.h5'}"]) == 0
    return path


@pytest.mark.mpi
def test_slices_then_merge_equal_one_run(workdir):
    for k in range(4):
        assert main(["run", str(workdir / "cfg.yaml"), "--set", f"output={workdir / 'sliced.h5'}", "--slice", f"{k}/4"]) == 0
        assert not (workdir / "sliced.h5").exists()
    assert (workdir / "sliced.h5.parts" / "slice-003-of-004" / "COMPLETE").exists()
    result = hpcfit(["merge", "cfg.yaml", "--set", f"output={workdir / 'sliced.h5'}"], n=2, cwd=workdir)
    assert result.returncode == 0, result.output
    assert_same_datasets(workdir / "reference.h5", workdir / "sliced.h5")
    assert_ran_with(workdir / "sliced.h5", n_ranks=2, mode="mpio")
    assert not (workdir / "sliced.h5.parts").exists()


def test_merge_names_missing_and_incomplete_slices(workdir, capsys):
    cfg = str(workdir / "cfg.yaml")
    for k in (0, 2):
        assert main(["run", cfg, "--set", f"output={workdir / 'partial.h5'}", "--slice", f"{k}/3"]) == 0
    (workdir / "partial.h5.parts" / "slice-002-of-003" / "COMPLETE").unlink()  # as if killed at the very end
    capsys.readouterr()
    assert main(["merge", cfg, "--set", f"output={workdir / 'partial.h5'}"]) == 2
    err = capsys.readouterr().err
    assert "slice 1/3 is missing" in err and "slice 2/3 is incomplete" in err
    assert not (workdir / "partial.h5").exists()


def test_merge_refuses_another_config(workdir, capsys):
    cfg = str(workdir / "cfg.yaml")
    for k in range(2):
        assert main(["run", cfg, "--set", f"output={workdir / 'changed.h5'}", "--slice", f"{k}/2"]) == 0
    capsys.readouterr()
    assert main(["merge", cfg, "--set", f"output={workdir / 'changed.h5'}", "--set", "cubefit.fitter.maxiter=50"]) == 2
    assert "different config" in capsys.readouterr().err


def static_items(workdir: Path, n_ranks: int) -> list[list[int]]:
    """The items each rank runs under ``run.schedule=static``: the job's own plan, assigned as the engine does."""
    from hpcfit.engine.run import load_config
    from hpcfit.registry import JOBS
    from hpcfit.runtime.schedule import static_assignment

    job, cfg, _, report = load_config(str(workdir / "cfg.yaml"), [], n_ranks, jobs=JOBS)
    plan = job.plan(cfg, report)
    return static_assignment({item.index: item.cost for item in plan.items}, n_ranks)


@pytest.mark.mpi
@pytest.mark.parametrize("trial,rank,position", [(0, 0, 2), (1, 1, 0), (2, 1, -1)],
                         ids=["rank0-middle", "rank1-first", "rank1-last"])
def test_kill_minus_9_then_resume_is_identical(workdir, trial, rank, position):
    """SIGKILL of one rank on an item that rank really runs (static schedule): the run dies without an output
    file, the items finished before are checkpointed, and --resume completes the same file."""
    assignment = static_items(workdir, 2)
    item = assignment[rank][position]  # the position-th item of the rank's own list
    output = f"killed{trial}.h5"
    result = hpcfit(["run", "cfg.yaml", "--set", f"output={output}", "--set", "run.schedule=static"], n=2,
                    cwd=workdir, env={"HPCFIT_INJECT_FAULT": f"rank={rank},item={item},action=kill"})
    assert result.returncode != 0, result.output
    assert "signal 9" in result.output or result.returncode in (9, 137, -9), result.output  # MPICH / Open MPI
    assert not (workdir / output).exists()
    parts = workdir / f"{output}.parts" / "slice-000-of-001"
    done = sorted(int(p.stem.split("-")[1]) for p in parts.glob("item-*.pkl"))
    assert item not in done and len(done) < sum(map(len, assignment))
    resumed = hpcfit(["run", "cfg.yaml", "--set", f"output={output}", "--resume"], n=2, cwd=workdir)
    assert resumed.returncode == 0, resumed.output
    assert f"resuming: {len(done)} of {sum(map(len, assignment))}" in resumed.stdout, resumed.stdout
    assert_same_datasets(workdir / "reference.h5", workdir / output)
    assert not (workdir / f"{output}.parts").exists()
    assert_ran_with(workdir / output, n_ranks=2, mode="mpio")


def test_resume_with_changed_config_is_refused(workdir, capsys):
    cfg = str(workdir / "cfg.yaml")
    parts = workdir / "refuse.h5.parts" / "slice-000-of-001"
    assert main(["run", cfg, "--set", f"output={workdir / 'refuse.h5'}", "--slice", "0/1", "--keep-parts"]) == 0
    (workdir / "refuse.h5").unlink(missing_ok=True)
    assert parts.is_dir()
    capsys.readouterr()
    assert main(["run", cfg, "--set", f"output={workdir / 'refuse.h5'}", "--set", "cubefit.chunk_n_max=21", "--resume"]) == 2
    assert "refusing to resume" in capsys.readouterr().err


@pytest.mark.mpi
def test_stop_signal_checkpoints_and_resume_finishes(workdir):
    """SIGUSR1 (what SLURM's --signal=B:USR1@T sends) stops at an item boundary; --resume completes the file."""
    launcher = find_mpiexec()
    env = dict(os.environ, PYTHONPATH=str(REPO))
    cmd = [launcher, "-n", "2", sys.executable, "-m", "hpcfit", "run", "cfg.yaml", "--set", "output=usr1.h5",
           "--set", "cubefit.solver=astropy", "--set", "cubefit.chunk_n_max=4"]
    proc = subprocess.Popen(cmd, cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    parts = workdir / "usr1.h5.parts" / "slice-000-of-001"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and len(list(parts.glob("item-*.pkl"))) < 3:
        time.sleep(0.1)
    assert proc.poll() is None, "the run finished before it could be signalled"
    # Signal the ranks themselves, as SLURM does (mpiexec's own handling of USR1 makes its exit code unreliable)
    psutil = pytest.importorskip("psutil")
    ranks = [p for p in psutil.Process(proc.pid).children(recursive=True) if "hpcfit" in " ".join(p.cmdline())]
    assert len(ranks) == 2
    for rank in ranks:
        rank.send_signal(signal.SIGUSR1)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 3, out
    assert "stopped by a signal" in out and not (workdir / "usr1.h5").exists()
    done = len(list(parts.glob("item-*.pkl")))
    assert 3 <= done < 45
    resumed = hpcfit(["run", "cfg.yaml", "--set", "output=usr1.h5", "--set", "cubefit.solver=astropy",
                      "--set", "cubefit.chunk_n_max=4", "--resume"], n=2, cwd=workdir)
    assert resumed.returncode == 0, resumed.output
    assert f"resuming: {done} of 45" in resumed.stdout
    exact = hpcfit(["run", "cfg.yaml", "--set", "output=usr1_ref.h5", "--set", "cubefit.solver=astropy",
                    "--set", "cubefit.chunk_n_max=4"], cwd=workdir)
    assert exact.returncode == 0
    assert_same_datasets(workdir / "usr1_ref.h5", workdir / "usr1.h5")
    assert_ran_with(workdir / "usr1.h5", n_ranks=2, mode="mpio")
