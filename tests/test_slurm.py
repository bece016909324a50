"""End to end on a real single-node SLURM (tests/slurm_cluster.py): `hpcfit submit` job arrays + merge give the
same file as one `mpiexec -n 2` run; an array task cancelled mid-way and requeued resumes from its checkpoint;
a job sent USR1 checkpoints, requeues itself and finishes with the right file; a rank killed with SIGKILL ends
its job at once (srun --kill-on-bad-exit) and --resume completes it; a sample job array + merge keeps
the rows and their order. Skipped with the reason when SLURM cannot be installed or started here."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest

from h5compare import assert_ran_with, assert_same_datasets
from cube_case import cube_workdir
from launch import REPO, hpcfit
from slurm_cluster import SlurmCluster, slurm_cluster  # noqa: F401  (the session fixture)

pytestmark = [pytest.mark.slurm, pytest.mark.mpi]

# Slow enough to be caught mid-way: one astropy fit at a time, 4 fits per work item (225 items).
SLOW = ["--set", "cubefit.solver=astropy", "--set", "cubefit.chunk_n_max=4"]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    path = cube_workdir(tmp_path_factory, "slurm", (30, 30, 30))
    return path


@pytest.fixture(scope="module")
def reference(workdir) -> Path:
    result = hpcfit(["run", "cfg.yaml", "--set", "output=reference.h5"], n=2, cwd=workdir)
    assert result.returncode == 0, result.output
    assert_ran_with(workdir / "reference.h5", n_ranks=2, mode="mpio")
    return workdir / "reference.h5"


@pytest.fixture(scope="module")
def slow_reference(workdir) -> Path:
    result = hpcfit(["run", "cfg.yaml", "--set", "output=slow_reference.h5", *SLOW], n=2, cwd=workdir)
    assert result.returncode == 0, result.output
    assert_ran_with(workdir / "slow_reference.h5", n_ranks=2, mode="mpio")
    return workdir / "slow_reference.h5"


def submit(cluster: SlurmCluster, workdir: Path, output: str, *options: str,
           env: dict[str, str] | None = None) -> dict[str, str]:
    """`hpcfit submit` with 2 ranks per job; the submitted job ids ({'array', 'merge'} or {'job'}).
    `output` is the output file name, or KEY=NAME for a job whose output key is not `output`."""
    setting = output if "=" in output else f"output={output}"
    result = hpcfit(["submit", "cfg.yaml", "--set", setting, "--ntasks", "2", "--time", "00:20:00", *options],
                    cwd=workdir, env={**cluster.env, **(env or {})})
    assert result.returncode == 0, result.output
    ids = {name: m.group(1) for name, pattern in [("array", r"job array (\d+)"), ("merge", r"merge job (\d+)"),
                                                  ("job", r"submitted job (\d+)")]
           if (m := re.search(pattern, result.stdout))}
    assert ids, result.output
    return ids


def logs(directory: Path) -> str:
    return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')}" for p in sorted(directory.glob("*.log")))


def items_done(parts: Path) -> int:
    return len(list(parts.glob("item-*.pkl")))


def wait_for_items(cluster: SlurmCluster, job: str, parts: Path, count: int, timeout: float = 300) -> None:
    """Wait until `job` runs and has checkpointed `count` items (fails if it ends first)."""
    deadline = time.monotonic() + timeout
    while items_done(parts) < count:
        state = cluster.jobs(job).get(job, {}).get("JobState")
        assert state in ("PENDING", "CONFIGURING", "RUNNING"), f"job {job} is {state} before it could be stopped"
        assert time.monotonic() < deadline, f"job {job} checkpointed no {count} items in {timeout} s"
        time.sleep(0.05)


def assert_all_completed(jobs: dict[str, dict[str, str]], directory: Path) -> None:
    states = {key: (fields["JobState"], fields.get("ExitCode")) for key, fields in jobs.items()}
    assert all(state == ("COMPLETED", "0:0") for state in states.values()), f"{states}\n{logs(directory)}"


def test_array_of_slices_and_merge_equal_one_mpiexec_run(slurm_cluster, workdir, reference):
    ids = submit(slurm_cluster, workdir, "array.h5", "--array", "4")
    jobs = slurm_cluster.wait([ids["array"], ids["merge"]])
    scripts = workdir / "array.h5.slurm"
    assert_all_completed(jobs, scripts)
    assert len(jobs) == 5  # 4 array tasks and the merge
    assert_same_datasets(reference, workdir / "array.h5")
    assert not (workdir / "array.h5.parts").exists()  # the merge removes the checkpoints
    text = logs(scripts)
    assert all(f"slice {k}/4 complete" in text for k in range(4)), text
    assert "merge of slices: 0 of 45 work item(s) to compute" in text and "2 rank(s)" in text


def test_cancelled_array_task_requeued_resumes_and_merge_matches(slurm_cluster, workdir, slow_reference):
    ids = submit(slurm_cluster, workdir, "cancelled.h5", "--array", "2", *SLOW)
    task = f"{ids['array']}_0"
    parts = workdir / "cancelled.h5.parts" / "slice-000-of-002"
    wait_for_items(slurm_cluster, task, parts, 3)
    slurm_cluster.command("scancel", task)
    jobs = slurm_cluster.wait([task])
    assert jobs[task]["JobState"] == "CANCELLED"
    done = items_done(parts)
    assert 3 <= done < 112 and not (parts / "COMPLETE").exists()

    slurm_cluster.command("scontrol", "requeue", task)
    scripts = workdir / "cancelled.h5.slurm"
    jobs = slurm_cluster.wait([ids["array"]])
    assert_all_completed(jobs, scripts)
    assert jobs[task]["Restarts"] == "1"
    assert re.search(rf"resuming: {done} of 112 item\(s\)", logs(scripts)), logs(scripts)
    # A cancelled task leaves its afterok dependant waiting forever (SLURM's rule, even after the requeue), so
    # the merge is submitted again, as docs/cluster.md tells users to.
    merge = ids["merge"]
    if slurm_cluster.jobs(merge)[merge]["JobState"] == "PENDING":
        slurm_cluster.command("scancel", merge)
        merge = slurm_cluster.command("sbatch", "--parsable", str(scripts / "merge.sbatch")).stdout.strip()
    assert_all_completed(slurm_cluster.wait([merge]), scripts)
    assert_same_datasets(slow_reference, workdir / "cancelled.h5")


@pytest.mark.parametrize("whom", ["--batch", "--full"])
def test_usr1_checkpoints_requeues_and_finishes(slurm_cluster, workdir, slow_reference, whom):
    """--batch: what SLURM does 120 s before the time limit (#SBATCH --signal=B:USR1@120), USR1 to the batch
    shell only, which passes it on. --full: the ranks get it both directly and from the shell."""
    output = f"usr1{whom.strip('-')}.h5"
    ids = submit(slurm_cluster, workdir, output, *SLOW)
    job = ids["job"]
    parts = workdir / f"{output}.parts" / "slice-000-of-001"
    wait_for_items(slurm_cluster, job, parts, 3)
    slurm_cluster.command("scancel", "--signal=USR1", whom, job)
    jobs = slurm_cluster.wait([job])
    scripts = workdir / f"{output}.slurm"
    assert_all_completed(jobs, scripts)
    assert jobs[job]["Restarts"] == "1"
    text = logs(scripts)
    assert "USR1 received" in text and "requeueing job" in text, text
    resumed = re.search(r"resuming: (\d+) of 225 item\(s\)", text)
    assert resumed and int(resumed.group(1)) >= 3, text
    assert_same_datasets(slow_reference, workdir / output)
    assert not (workdir / f"{output}.parts").exists()


def test_killed_rank_ends_the_job_and_resume_completes_it(slurm_cluster, workdir, slow_reference):
    """kill -9 of rank 1 at work item 9 (hpcfit.runtime.faults): the step ends at once (FAILED, not hung in
    MPI_Finalize until the time limit), no output file exists, and --resume completes the file."""
    ids = submit(slurm_cluster, workdir, "killed.h5", *SLOW, "--set", "run.schedule=static",
                 env={"HPCFIT_INJECT_FAULT": "rank=1,item=9,action=kill"})
    job = ids["job"]
    jobs = slurm_cluster.wait([job])
    scripts = workdir / "killed.h5.slurm"
    assert jobs[job]["JobState"] == "FAILED", f"{jobs[job]['JobState']}\n{logs(scripts)}"
    assert not (workdir / "killed.h5").exists()
    done = items_done(workdir / "killed.h5.parts" / "slice-000-of-001")
    resumed = hpcfit(["run", "cfg.yaml", "--set", "output=killed.h5", *SLOW, "--resume"], n=2, cwd=workdir)
    assert resumed.returncode == 0, resumed.output
    assert f"resuming: {done} of 225" in resumed.stdout
    assert_same_datasets(slow_reference, workdir / "killed.h5")
    assert_ran_with(workdir / "killed.h5", n_ranks=2, mode="mpio")


SAMPLE = """\
job: sample
output: out.h5
sample:
  free_params: {redshift: [0.0, 6.0], log_mass: [8.0, 12.0], dust2: [0.0, 2.0], tage: [0.5, 13.0],
                log_tau: [-1.0, 1.5]}
  sampling: {n_samples: 12000, seed: 7, batch_size: 1500, filters: dustpedia_ir}
  model: plugins.toy_sed:factory
"""


def test_sample_array_and_merge_give_the_same_rows_in_the_same_order(slurm_cluster, tmp_path):
    """The global shuffle happens in the merge: 4 slices x 2 ranks give the rows of one mpiexec -n 2 run, in the
    same order (the toy SED plug-in of test_sample_job keeps the model cheap)."""
    (tmp_path / "cfg.yaml").write_text(SAMPLE)
    pythonpath = {"PYTHONPATH": f"{REPO}{os.pathsep}{REPO / 'tests'}"}
    one = hpcfit(["run", "cfg.yaml", "--set", "output=one.h5"], n=2, cwd=tmp_path, env=pythonpath)
    assert one.returncode == 0, one.output
    assert_ran_with(tmp_path / "one.h5", n_ranks=2, mode="mpio")
    ids = submit(slurm_cluster, tmp_path, "output=array.h5", "--array", "4", env=pythonpath)
    jobs = slurm_cluster.wait([ids["array"], ids["merge"]])
    assert_all_completed(jobs, tmp_path / "array.h5.slurm")
    assert_same_datasets(tmp_path / "one.h5", tmp_path / "array.h5")
