"""The SLURM batch scripts: a job array of slices, the merge chained after it, and one plain MPI job.

Each script is rendered from one template in two ways:

* *plain* — the editable files in ``jobscripts/`` (the config and ``--set`` overrides come from the command
  line, the venv from ``HPCFIT_VENV``, a ``module load`` line for the user to edit). ``python -m
  hpcfit.cluster.scripts DIR`` rewrites them; a test checks that they match.
* *filled in* — by ``hpcfit submit``: resources, modules, the config, the overrides and the Python that ran the
  submit are written into the script, so the file in the script directory is exactly what ran.

The array and MPI scripts carry the stop-and-requeue logic (written once, in ``_RUN_AND_REQUEUE``): SLURM sends
USR1 to the batch shell 120 s before the time limit (``--signal=B:USR1@120``); the shell passes it on to the
launcher, the ranks finish their current work item and exit with code 3 (every completed item is
checkpointed), and the shell requeues the job, which then resumes by itself (``SLURM_RESTART_COUNT > 0``).
"""

from __future__ import annotations

import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path

KINDS = ("array", "merge", "mpi")
PLAIN_FILES = {"array": "slurm_array.sbatch", "merge": "slurm_merge.sbatch", "mpi": "slurm_mpi.sbatch"}
STOP_SIGNAL_LEAD_SECONDS = 120


@dataclass
class Resources:
    """The #SBATCH settings of one script (None: not written, SLURM's default applies)."""

    job_name: str = "hpcfit"
    array: int | None = None  # number of array tasks (slices); filled-in array scripts only
    nodes: int | None = None
    ntasks: int | None = None
    ntasks_per_node: int | None = None
    time: str | None = "01:00:00"
    partition: str | None = None
    account: str | None = None
    output: str = "hpcfit-%j.log"
    chdir: str | None = None


@dataclass
class Launch:
    """What the script runs. ``config=None`` renders the plain form (config and overrides from "$@")."""

    config: str | None = None
    overrides: list[str] = field(default_factory=list)
    modules: list[str] | None = None  # None: the plain, editable module line
    python: str | None = None  # None: activate $HPCFIT_VENV and use its python


_PURPOSE = {
    "array": "one slice of the work per array task, each task an MPI job; slurm_merge.sbatch then writes the output.",
    "merge": "after every array task succeeded: check the slices and write the output file (an MPI job too).",
    "mpi": "one MPI job computing the whole config.",
}

_USAGE = {
    "array": ["ARRAY=$(sbatch --parsable --array=0-7 jobscripts/slurm_array.sbatch my.yaml [--set key=value ...])",
              "sbatch --dependency=afterok:$ARRAY jobscripts/slurm_merge.sbatch my.yaml [--set key=value ...]",
              "(or let `hpcfit submit my.yaml --array 8 --ntasks 4` write and submit both)"],
    "merge": ["sbatch --dependency=afterok:$ARRAY jobscripts/slurm_merge.sbatch my.yaml [--set key=value ...]",
              "(run it again by hand, or `hpcfit merge my.yaml`, if a slice was cancelled and rerun)"],
    "mpi": ["sbatch jobscripts/slurm_mpi.sbatch my.yaml [--set key=value ...]",
            "(or `hpcfit submit my.yaml --ntasks 64`)"],
}

_PLAIN_RESOURCES = {
    "array": Resources(job_name="hpcfit-slices", ntasks=4, output="hpcfit-%A_%a.log"),
    "merge": Resources(job_name="hpcfit-merge", ntasks=4, output="hpcfit-merge-%j.log"),
    "mpi": Resources(job_name="hpcfit", nodes=2, ntasks_per_node=32, output="hpcfit-%j.log"),
}

_PLAIN_MODULES = """\
# The MPI and the parallel HDF5 that mpi4py and h5py were built against (docs/cluster.md): edit for your site.
module load openmpi hdf5/parallel 2>/dev/null || module load mpich hdf5-mpi 2>/dev/null || true"""

_PLAIN_PYTHON = """\
source "${HPCFIT_VENV:-$HOME/hpcfit/.venv}/bin/activate"   # the venv made by `make setup`
HPCFIT=(python -m hpcfit)"""

_LAUNCHER = """\
export OMP_NUM_THREADS=1   # one rank per core: hpcfit's parallelism is MPI
# srun starts the ranks through PMI2 (HPCFIT_SRUN_MPI=pmix for an MPI built for PMIx); --kill-on-bad-exit ends
# the whole step as soon as one rank dies (otherwise the others can wait in MPI_Finalize until the time limit).
# To use the MPI's own launcher instead, submit with HPCFIT_LAUNCHER=mpiexec (docs/cluster.md says what changes).
read -r -a LAUNCHER <<< "${HPCFIT_LAUNCHER:-srun --mpi=${HPCFIT_SRUN_MPI:-pmi2} --kill-on-bad-exit=1}\""""

_RUN_AND_REQUEUE = """\
# USR1 comes from SLURM {lead} s before the time limit (--signal above) or from `scancel --signal=USR1 --batch
# JOBID` (e.g. ahead of a preemption or maintenance). It is passed on to the ranks, which stop after their
# current work item and exit with code 3, every completed item checkpointed in <output>.parts/; the job is then
# requeued, and the requeued job resumes from the checkpoint by itself (SLURM_RESTART_COUNT > 0). Exit code 138
# (128 + USR1): the ranks got USR1 twice (e.g. `scancel --signal=USR1 --full` also signals them directly) and
# stopped at once; the items they had completed are checkpointed all the same.
stop_and_requeue() {{
    trap '' USR1
    echo "hpcfit: USR1 received: stopping after the current work items"
    kill -USR1 "$RUN" 2>/dev/null || true
    status=0
    wait "$RUN" || status=$?
    if [[ $status -eq 3 || $status -eq 138 ]]; then
        echo "hpcfit: stopped with exit code $status; requeueing job $SLURM_JOB_ID to resume"
        scontrol requeue "$SLURM_JOB_ID"
    else
        echo "hpcfit: exit code $status (not a checkpointed stop): job $SLURM_JOB_ID is not requeued"
    fi
    exit "$status"
}}
trap stop_and_requeue USR1
"${{LAUNCHER[@]}}" "${{HPCFIT[@]}}" {verb} "$CONFIG"{extra} "$@" &
RUN=$!
status=0
wait "$RUN" || status=$?
exit "$status\""""

_MERGE = """\
"${LAUNCHER[@]}" "${HPCFIT[@]}" merge "$CONFIG" "$@\""""


def render(kind: str, resources: Resources, launch: Launch) -> str:
    """The text of one batch script (`kind`: array, merge or mpi)."""
    if kind not in KINDS:
        raise ValueError(f"unknown script kind '{kind}' (allowed: {', '.join(KINDS)})")
    plain = launch.config is None
    lines = ["#!/bin/bash", f"# hpcfit: {_PURPOSE[kind]}"]
    if plain:
        lines += ["# Submit:"] + [f"#   {usage}" for usage in _USAGE[kind]]
        lines += ["# Edit the #SBATCH lines and the module names for your site; docs/cluster.md explains the rest."]
    else:
        lines += ["# Written by `hpcfit submit`; submit it again with sbatch to rerun (see docs/cluster.md)."]
    lines += _sbatch_lines(kind, resources)
    lines += ["set -euo pipefail"]
    if plain:
        script = PLAIN_FILES[kind]
        array_hint = "--array=0-N-1 " if kind == "array" else ""
        lines += [f"CONFIG=${{1:?usage: sbatch {array_hint}{script} CONFIG.yaml [--set key=value ...]}}", "shift"]
    else:
        lines += [f"CONFIG={shlex.quote(launch.config)}",
                  " ".join(["set --"] + [shlex.quote(arg) for o in launch.overrides for arg in ("--set", o)])]
    lines += ["", _modules_block(launch.modules)]
    lines += [_PLAIN_PYTHON if launch.python is None else f"HPCFIT=({shlex.quote(launch.python)} -m hpcfit)"]
    lines += [_LAUNCHER, ""]
    if kind == "merge":
        lines += [_MERGE]
    else:
        extra = " --slice auto" if kind == "array" else ""
        lines += [_RUN_AND_REQUEUE.format(lead=STOP_SIGNAL_LEAD_SECONDS, verb="run", extra=extra)]
    return "\n".join(lines) + "\n"


def _sbatch_lines(kind: str, r: Resources) -> list[str]:
    options: list[tuple[str, object]] = [("job-name", r.job_name)]
    if kind == "array" and r.array is not None:
        options.append(("array", f"0-{r.array - 1}"))
    options += [("nodes", r.nodes), ("ntasks", r.ntasks), ("ntasks-per-node", r.ntasks_per_node),
                ("cpus-per-task", 1), ("time", r.time), ("partition", r.partition), ("account", r.account),
                ("output", r.output), ("open-mode", "append"), ("chdir", r.chdir)]
    if kind != "merge":
        options.append(("signal", f"B:USR1@{STOP_SIGNAL_LEAD_SECONDS}"))
    lines = [f"#SBATCH --{name}={value}" for name, value in options if value is not None]
    lines.append("#SBATCH --requeue")
    return lines


def _modules_block(modules: list[str] | None) -> str:
    if modules is None:
        return _PLAIN_MODULES
    if not modules:
        return "# no `module load` (hpcfit submit --module NAME adds one)"
    return "module load " + " ".join(shlex.quote(m) for m in modules)


def plain_scripts() -> dict[str, str]:
    """The jobscripts/ files: file name -> text."""
    return {PLAIN_FILES[kind]: render(kind, _PLAIN_RESOURCES[kind], Launch()) for kind in KINDS}


def write_plain_scripts(directory: str | Path) -> list[Path]:
    """(Re)write the plain scripts into `directory` (the repository's jobscripts/)."""
    written = []
    for name, text in plain_scripts().items():
        path = Path(directory) / name
        path.write_text(text)
        path.chmod(0o755)
        written.append(path)
    return written


if __name__ == "__main__":
    for written_path in write_plain_scripts(sys.argv[1] if len(sys.argv) > 1 else "jobscripts"):
        print(f"wrote {written_path}")
