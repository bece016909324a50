"""gridfit's chi2 stage as engine work: the staged plan (grid, then one chi2 item per galaxy block x model chunk),
its progress line, and the same file bit for bit from 2 ranks, from a run killed in the chi2 stage and resumed
(recomputing only the missing items), and from job-array slices + merge."""

from __future__ import annotations

import json
import re
from pathlib import Path

import h5py
import pytest

from gridfit_helpers import write_config, write_inputs
from h5compare import assert_ran_with, assert_same_datasets
from hpcfit.cli import main
from launch import hpcfit

N_GALAXIES, N_MODELS, CHUNK, BLOCK = 30, 87, 17, 8  # gridfit_helpers' problem: 6 chunks x 4 blocks
N_CHUNKS, N_BLOCKS = -(-N_MODELS // CHUNK), -(-N_GALAXIES // BLOCK)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("gridfit_stages")
    write_inputs(path)
    return path


@pytest.fixture(scope="module")
def serial_run(workdir) -> Path:
    config = write_config(workdir, "serial.yaml", "serial.h5")
    assert main(["run", str(config)]) == 0
    return workdir / "serial.h5"


def _plan(config: Path):
    from hpcfit.engine.run import load_config
    from hpcfit.registry import JOBS

    job, cfg, _, report = load_config(str(config), [], jobs=JOBS)
    plan = job.plan(cfg, report)
    report.raise_if_any()
    return plan


def test_plan_has_a_grid_stage_then_one_chi2_item_per_block_and_chunk(workdir):
    plan = _plan(write_config(workdir, "plan.yaml", "plan.h5"))
    assert [s.name for s in plan.stages] == ["grid", "chi2"]
    grid, chi2 = plan.stages
    assert len(grid.items) == N_CHUNKS and len(chi2.items) == N_BLOCKS * N_CHUNKS
    assert [item.index for item in plan.items] == list(range(N_CHUNKS + N_BLOCKS * N_CHUNKS))
    assert {item.stage for item in grid.items} == {0} and {item.stage for item in chi2.items} == {1}
    assert grid.unit == "models" and chi2.unit == "galaxy-model pairs"
    # every (galaxy, model) pair exactly once: the blocks x chunks tile the whole problem
    covered = set()
    for item in chi2.items:
        task = item.data
        start, stop = grid.items[task.chunk].data
        assert item.size == (task.g1 - task.g0) * (stop - start)
        covered |= {(task.block, task.chunk)}
    assert covered == {(b, k) for b in range(N_BLOCKS) for k in range(N_CHUNKS)}
    assert sum(item.size for item in chi2.items) == N_GALAXIES * N_MODELS
    assert plan.sliced_items() == chi2.items


def test_progress_and_log_show_the_chi2_stage(workdir, capsys):
    config = write_config(workdir, "progress.yaml", "progress.h5")
    assert main(["run", str(config), "--set", "run.progress=log"]) == 0
    captured = capsys.readouterr()
    assert f"stage 2/2 chi2: {N_BLOCKS * N_CHUNKS} of {N_BLOCKS * N_CHUNKS} item(s) to compute " \
           f"({N_GALAXIES * N_MODELS:,} galaxy-model pairs)" in captured.out
    assert re.search(rf"hpcfit gridfit chi2: {N_GALAXIES * N_MODELS:,}/{N_GALAXIES * N_MODELS:,} galaxy-model "
                     r"pairs \(100\.0%\)", captured.err), captured.err
    assert re.search(rf"hpcfit gridfit grid: {N_MODELS}/{N_MODELS} models", captured.err), captured.err
    capsys.readouterr()
    assert main(["validate", str(config), "--plan", "--set", "output=other.h5"]) == 0
    out = capsys.readouterr().out
    assert f"plan: stage 2/2 chi2: {N_BLOCKS * N_CHUNKS} work item(s), {N_GALAXIES * N_MODELS:,} galaxy-model " \
           "pairs" in out


@pytest.mark.mpi
@pytest.mark.parametrize("schedule", ["dynamic", "static"])
def test_two_ranks_give_the_serial_file(workdir, serial_run, schedule):
    config = write_config(workdir, f"two_{schedule}.yaml", f"two_{schedule}.h5")
    result = hpcfit(["run", config.name, "--set", f"run.schedule={schedule}"], n=2, cwd=workdir)
    assert result.returncode == 0, result.output
    assert_same_datasets(serial_run, workdir / f"two_{schedule}.h5")
    assert_ran_with(workdir / f"two_{schedule}.h5", n_ranks=2, mode="mpio")
    with h5py.File(workdir / f"two_{schedule}.h5") as h5:
        assert h5.attrs["gridfit_pairs_computed"] == N_GALAXIES * N_MODELS


@pytest.mark.mpi
def test_killed_in_the_chi2_stage_resumes_only_the_missing_items(workdir, serial_run):
    config = write_config(workdir, "killed.yaml", "killed.h5")
    kill_at = N_CHUNKS + 14  # a chi2 item (block 2, chunk 2): the grid stage is done by then
    killed = hpcfit(["run", config.name, "--set", "run.schedule=static"], n=2, cwd=workdir,
                    env={"HPCFIT_INJECT_FAULT": f"rank=*,item={kill_at},action=kill"})
    assert killed.returncode != 0 and not (workdir / "killed.h5").exists(), killed.output
    parts = workdir / "killed.h5.parts" / "slice-000-of-001"
    done = {int(p.stem.split("-")[1]) for p in parts.glob("item-*.pkl")}
    assert set(range(N_CHUNKS)) <= done and kill_at not in done  # the whole grid, part of the chi2 items
    assert N_CHUNKS < len(done) < N_CHUNKS + N_BLOCKS * N_CHUNKS
    plan = _plan(config)
    missing = [i for i in range(len(plan.items)) if i not in done]

    resumed = hpcfit(["run", config.name, "--resume"], n=2, cwd=workdir)
    assert resumed.returncode == 0, resumed.output
    assert f"resuming: {len(done)} of {len(plan.items)} item(s) already done" in resumed.stdout
    assert f"stage 1/2 grid: 0 of {N_CHUNKS} item(s) to compute" in resumed.stdout
    assert f"stage 2/2 chi2: {len(missing)} of {N_BLOCKS * N_CHUNKS} item(s) to compute" in resumed.stdout
    with h5py.File(workdir / "killed.h5") as h5:
        # only the missing chi2 items were computed again
        assert h5.attrs["gridfit_pairs_computed"] == sum(plan.items[i].size for i in missing)
        assert h5.attrs["items_from_checkpoints"] == len(done)
    assert_same_datasets(serial_run, workdir / "killed.h5")
    assert_ran_with(workdir / "killed.h5", n_ranks=2, mode="mpio")
    assert not (workdir / "killed.h5.parts").exists()


def test_slices_then_merge_give_the_serial_file(workdir, serial_run, capsys):
    config = write_config(workdir, "sliced.yaml", "sliced.h5")
    n_chi2 = N_BLOCKS * N_CHUNKS
    for k in range(3):
        assert main(["run", str(config), "--slice", f"{k}/3"]) == 0
        parts = workdir / "sliced.h5.parts" / f"slice-{k:03d}-of-003"
        done = sorted(int(p.stem.split("-")[1]) for p in parts.glob("item-*.pkl"))
        # every slice builds the whole grid and computes a contiguous third of the chi2 items
        share = range(N_CHUNKS + k * n_chi2 // 3, N_CHUNKS + (k + 1) * n_chi2 // 3)
        assert done == list(range(N_CHUNKS)) + list(share)
        assert json.loads((parts / "manifest.json").read_text())["items"] == done
    assert not (workdir / "sliced.h5").exists()
    assert main(["merge", str(config)]) == 0
    assert_same_datasets(serial_run, workdir / "sliced.h5")
    with h5py.File(workdir / "sliced.h5") as h5:
        assert h5.attrs["gridfit_pairs_computed"] == 0 and h5.attrs["merged_slices"]
    capsys.readouterr()
    assert main(["run", str(config), "--set", "output=toomany.h5", "--slice", f"0/{n_chi2 + 1}"]) == 2
    assert f"{n_chi2 + 1} slices for only {n_chi2} work item(s)" in capsys.readouterr().err


@pytest.mark.mpi
def test_merge_on_two_ranks(workdir, serial_run):
    config = write_config(workdir, "merge2.yaml", "merge2.h5", chi2="full")
    for k in range(2):
        assert main(["run", str(config), "--slice", f"{k}/2"]) == 0
    result = hpcfit(["merge", config.name], n=2, cwd=workdir)
    assert result.returncode == 0, result.output
    assert_same_datasets(serial_run, workdir / "merge2.h5")
    assert_ran_with(workdir / "merge2.h5", n_ranks=2, mode="mpio")
