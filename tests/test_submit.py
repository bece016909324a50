"""`hpcfit submit` and the SLURM script templates without SLURM: the scripts written (and jobscripts/ kept equal
to the templates), the refusals (invalid config, no sbatch, too many slices, stale slices), the submission
sequence with a stand-in sbatch, and the USR1 trap of the batch script (stop, checkpoint, requeue) with a
stand-in scontrol. The real thing is tested in test_slurm.py."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from h5compare import assert_same_datasets
from hpcfit.cli import main
from hpcfit.cluster.scripts import KINDS, Launch, Resources, plain_scripts, render
from cube_case import cube_workdir
from launch import REPO, hpcfit



@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    path = cube_workdir(tmp_path_factory, "submit", (30, 12, 15))  # 180 fits: 9 work items of 20
    return path


def fake_command(directory: Path, name: str, body: str) -> None:
    path = directory / name
    path.write_text("#!/bin/bash\n" + body)
    path.chmod(0o755)


def test_jobscripts_are_the_plain_templates():
    for name, text in plain_scripts().items():
        assert (REPO / "jobscripts" / name).read_text() == text, (
            f"jobscripts/{name} differs from its template: run `python -m hpcfit.cluster.scripts jobscripts`")


@pytest.mark.parametrize("kind", KINDS)
def test_scripts_are_valid_bash(kind, tmp_path):
    filled = Launch(config="/data/my config.yaml", overrides=["output=a b.h5"], modules=["openmpi"],
                    python=sys.executable)
    for launch in (Launch(), filled):
        script = tmp_path / f"{kind}.sbatch"
        script.write_text(render(kind, Resources(array=3, ntasks=2), launch))
        result = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
        assert result.returncode == 0, result.stderr


def test_dry_run_writes_array_and_merge_scripts(workdir, capsys, monkeypatch):
    monkeypatch.chdir(workdir)
    code = main(["submit", "cfg.yaml", "--array", "3", "--ntasks", "2", "--nodes", "1", "--time", "00:30:00",
                 "--partition", "short", "--account", "astro", "--module", "openmpi", "--module", "hdf5/mpi",
                 "--set", "output=dry.h5", "--dry-run"])
    assert code == 0, capsys.readouterr().err
    scripts = workdir / "dry.h5.slurm"
    array, merge = (scripts / "array.sbatch").read_text(), (scripts / "merge.sbatch").read_text()
    for line in ("#SBATCH --array=0-2", "#SBATCH --ntasks=2", "#SBATCH --nodes=1", "#SBATCH --time=00:30:00",
                 "#SBATCH --partition=short", "#SBATCH --account=astro", "#SBATCH --signal=B:USR1@120",
                 "#SBATCH --requeue", f"#SBATCH --chdir={workdir}", f"#SBATCH --output={scripts}/slice-%A_%a.log",
                 f"CONFIG={workdir / 'cfg.yaml'}", "set -- --set output=dry.h5", "module load openmpi hdf5/mpi",
                 f"HPCFIT=({sys.executable} -m hpcfit)", "scontrol requeue", "--slice auto"):
        assert line in array, line
    assert "--array" not in merge and "--signal" not in merge and "#SBATCH --requeue" in merge
    assert '"${HPCFIT[@]}" merge "$CONFIG"' in merge
    assert "sbatch --dependency=afterok:$ARRAY" in capsys.readouterr().out


def test_submit_sequence_with_a_stand_in_sbatch(workdir, tmp_path, capsys, monkeypatch):
    calls = tmp_path / "calls"
    fake_command(tmp_path, "sbatch", f'echo "$@" >> {calls}\necho $((1000 + $(wc -l < {calls})))\n')
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.chdir(workdir)
    assert main(["submit", "cfg.yaml", "--array", "4", "--set", "output=seq.h5"]) == 0
    out = capsys.readouterr().out
    assert "job array 1001" in out and "merge job 1002" in out
    array_call, merge_call = calls.read_text().splitlines()
    assert array_call == f"--parsable {workdir}/seq.h5.slurm/array.sbatch"
    assert merge_call == f"--parsable --dependency=afterok:1001 {workdir}/seq.h5.slurm/merge.sbatch"
    assert main(["submit", "cfg.yaml", "--ntasks", "8", "--set", "output=single.h5"]) == 0
    assert "submitted job 1003 (8 rank(s))" in capsys.readouterr().out
    assert calls.read_text().splitlines()[-1].endswith("single.h5.slurm/mpi.sbatch")


def test_refusals_exit_2_with_a_message(workdir, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(workdir)
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch here
    assert main(["submit", "cfg.yaml", "--set", "output=nosbatch.h5"]) == 2
    assert "sbatch not found on PATH" in capsys.readouterr().err
    assert (workdir / "nosbatch.h5.slurm" / "mpi.sbatch").exists()  # written all the same, for sbatch by hand

    assert main(["submit", "cfg.yaml", "--set", "output=bad.h5", "--set", "cubefit.chunk_n_mx=3", "--dry-run"]) == 2
    assert "chunk_n_mx" in capsys.readouterr().err
    assert not (workdir / "bad.h5.slurm").exists()

    assert main(["submit", "cfg.yaml", "--array", "10", "--set", "output=many.h5", "--dry-run"]) == 2
    assert "only 9 work item(s)" in capsys.readouterr().err

    assert main(["submit", "missing.yaml", "--dry-run"]) == 2
    assert "no such config file" in capsys.readouterr().err

    assert main(["submit", "cfg.yaml", "--ntasks", "0", "--dry-run"]) == 2
    assert "--ntasks 0" in capsys.readouterr().err

    assert main(["submit", "cfg.yaml", "--array", "1", "--dry-run"]) == 2
    assert "omit --array" in capsys.readouterr().err


def test_stale_slices_of_another_split_are_refused(workdir, capsys, monkeypatch):
    monkeypatch.chdir(workdir)
    assert main(["run", "cfg.yaml", "--set", "output=stale.h5", "--slice", "1/3"]) == 0
    capsys.readouterr()
    assert main(["submit", "cfg.yaml", "--array", "4", "--set", "output=stale.h5", "--dry-run"]) == 2
    assert "slice-001-of-003" in capsys.readouterr().err
    assert main(["submit", "cfg.yaml", "--array", "3", "--set", "output=stale.h5", "--dry-run"]) == 0
    assert "checkpoints of an earlier run" in capsys.readouterr().out


def test_batch_script_usr1_trap_stops_and_requeues(workdir, tmp_path):
    """The batch shell's trap passes USR1 on to the launcher, the run stops with exit code 3 after checkpointing,
    and the shell asks for a requeue (a stand-in scontrol records it); the requeued run resumes. The launcher is
    `env` (one process): MPICH's mpiexec sometimes exits 0 after passing a signal on, even when every rank exits
    with 3 (see docs/cluster.md); srun is exercised in test_slurm.py."""
    slow = ["--set", "cubefit.solver=astropy", "--set", "cubefit.chunk_n_max=2"]  # 90 items
    done = hpcfit(["submit", "cfg.yaml", "--set", "output=trap.h5", *slow, "--dry-run"], cwd=workdir)
    assert done.returncode == 0, done.output
    calls = tmp_path / "scontrol.calls"
    fake_command(tmp_path, "scontrol", f'echo "$@" >> {calls}\n')
    env = dict(os.environ, PATH=f"{tmp_path}{os.pathsep}{os.environ['PATH']}", PYTHONPATH=str(REPO),
               SLURM_JOB_ID="4242", HPCFIT_LAUNCHER="env",
               HPCFIT_INJECT_FAULT="rank=*,item=*,action=delay:0.05")  # slow enough to be caught mid-way
    shutil.rmtree(workdir / "trap.h5.parts", ignore_errors=True)  # only this run's items may count below
    proc = subprocess.Popen(["bash", str(workdir / "trap.h5.slurm" / "mpi.sbatch")], cwd=workdir, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    parts = workdir / "trap.h5.parts" / "slice-000-of-001"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and len(list(parts.glob("item-*.pkl"))) < 3 and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be signalled"
    proc.send_signal(signal.SIGUSR1)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 3, out
    assert "requeueing job 4242" in out and calls.read_text() == "requeue 4242\n"
    assert not (workdir / "trap.h5").exists()
    # What the requeued job does: SLURM_RESTART_COUNT > 0 makes `hpcfit run` resume.
    resumed = hpcfit(["run", "cfg.yaml", "--set", "output=trap.h5", *slow], cwd=workdir,
                     env={"SLURM_RESTART_COUNT": "1"})
    assert resumed.returncode == 0 and "resuming:" in resumed.stdout, resumed.output
    exact = hpcfit(["run", "cfg.yaml", "--set", "output=trap_ref.h5", *slow], cwd=workdir)
    assert exact.returncode == 0, exact.output
    assert_same_datasets(workdir / "trap_ref.h5", workdir / "trap.h5")
