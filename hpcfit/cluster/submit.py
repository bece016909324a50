"""``hpcfit submit``: validate a config, write its SLURM batch scripts, submit them with sbatch, print the job ids.

With ``--array N``: a job array of N tasks (each one slice of the work, itself an MPI job of ``--ntasks`` ranks)
and a merge job chained with ``--dependency=afterok``; without: one MPI job. The scripts (``hpcfit.cluster.
scripts``) are written to ``--script-dir`` (default ``<output>.slurm/`` beside the output) together with the
jobs' logs, so what ran can be read and resubmitted by hand. Nothing is submitted when the config is invalid,
the array has more tasks than the plan has work items, or stale slices of another split would make the merge
refuse.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

from hpcfit.registry import JOBS
from hpcfit.runtime.checkpoint import find_slices, parts_directory
from hpcfit.runtime.comm import SerialComm
from hpcfit.runtime.errors import EXIT_CONFIG, EXIT_FATAL, EXIT_OK
from hpcfit.cluster.scripts import Launch, Resources, render
from hpcfit.runtime.log import logger


def submit_main(args: argparse.Namespace) -> int:
    """Run ``hpcfit submit`` for parsed arguments (see hpcfit.cli); return the exit code."""
    from hpcfit.engine.run import prepare

    problem = _check_numbers(args)
    if problem:
        return _refuse(problem)
    config = Path(args.config)
    if not config.is_file():
        return _refuse(f"no such config file: {config}")
    # Planning reads the inputs' headers: an input problem is better found now than in every array task.
    prepared, code = prepare(str(config), args.overrides, SerialComm(), plan=True, jobs=JOBS)
    if prepared is None:
        return code
    output = Path(prepared.cfg.output).resolve()
    n_items = len(prepared.plan.sliced_items())  # array tasks share out the last stage of a staged plan
    if args.array is not None:
        if args.array > n_items:
            return _refuse(f"--array {args.array}: the plan has only {n_items} work item(s); use at most "
                           f"--array {n_items} (or smaller work items, e.g. a smaller chunk size)")
        stale = sorted(s.directory.name for s in find_slices(output) if s.n != args.array)
        if stale:
            return _refuse(f"{parts_directory(output)} holds slices of another split ({', '.join(stale)}): the "
                           f"merge of a {args.array}-task array would refuse them. Remove that directory, or "
                           "merge or resume those slices first.")

    script_dir = (Path(args.script_dir) if args.script_dir else output.with_name(output.name + ".slurm")).resolve()
    script_dir.mkdir(parents=True, exist_ok=True)
    launch = Launch(config=str(config.resolve()), overrides=list(args.overrides), modules=list(args.module),
                    python=sys.executable)
    base = Resources(job_name=f"hpcfit-{prepared.job_name}", nodes=args.nodes, ntasks=args.ntasks, time=args.time,
                     partition=args.partition, account=args.account, chdir=str(Path.cwd()))
    if args.array is not None:
        plan = {"array": replace(base, job_name=f"{base.job_name}-slices", array=args.array,
                                 output=str(script_dir / "slice-%A_%a.log")),
                "merge": replace(base, job_name=f"{base.job_name}-merge", output=str(script_dir / "merge-%j.log"))}
    else:
        plan = {"mpi": replace(base, output=str(script_dir / "job-%j.log"))}
    scripts = {}
    for kind, resources in plan.items():
        path = script_dir / f"{kind}.sbatch"
        path.write_text(render(kind, resources, launch))
        path.chmod(0o755)
        scripts[kind] = path
    logger.info(f"{prepared.job_name}: {n_items} work item(s); wrote {', '.join(map(str, scripts.values()))}")
    if any(s.n == (args.array or 1) for s in find_slices(output)):
        logger.info(f"note: {parts_directory(output)} holds checkpoints of an earlier run; the new job(s) start "
                    "their slices afresh (to continue them instead: hpcfit run CONFIG --resume [--slice K/N])")

    if args.dry_run:
        if "array" in scripts:
            logger.info(f"dry run; to submit: ARRAY=$(sbatch --parsable {scripts['array']}) && "
                        f"sbatch --dependency=afterok:$ARRAY {scripts['merge']}")
        else:
            logger.info(f"dry run; to submit: sbatch {scripts['mpi']}")
        return EXIT_OK
    sbatch = shutil.which("sbatch")
    if sbatch is None:
        return _refuse("sbatch not found on PATH: run hpcfit submit on a SLURM login node (or `module load slurm`); "
                       f"the scripts are written in {script_dir} (--dry-run only writes them)")
    if "mpi" in scripts:
        job_id, error = _sbatch(sbatch, [str(scripts["mpi"])])
        if job_id is None:
            return _refuse(f"sbatch refused {scripts['mpi']}: {error}")
        logger.info(f"submitted job {job_id} ({_ranks(args)}); log {script_dir}/job-{job_id}.log; "
                    f"output {output}")
        return EXIT_OK
    array_id, error = _sbatch(sbatch, [str(scripts["array"])])
    if array_id is None:
        return _refuse(f"sbatch refused {scripts['array']}: {error}")
    merge_id, error = _sbatch(sbatch, [f"--dependency=afterok:{array_id}", str(scripts["merge"])])
    if merge_id is None:
        logger.error(f"submitted job array {array_id}, but sbatch refused the merge job: {error}\n"
                     f"hpcfit: submit it yourself: sbatch --dependency=afterok:{array_id} {scripts['merge']}")
        return EXIT_FATAL
    logger.info(f"submitted job array {array_id} ({args.array} slices x {_ranks(args)}) and merge "
                f"job {merge_id} (starts when every slice has succeeded)")
    logger.info(f"follow with `squeue -j {array_id},{merge_id}`; logs in {script_dir}; output {output}")
    return EXIT_OK


def _check_numbers(args: argparse.Namespace) -> str | None:
    for name in ("array", "ntasks", "nodes"):
        value = getattr(args, name)
        if value is not None and value < 1:
            return f"--{name} {value}: must be at least 1"
    if args.array == 1:  # a one-slice "array" writes the output itself, and the merge would find no slices
        return "--array 1: a single slice is a plain job; omit --array"
    return None


def _ranks(args: argparse.Namespace) -> str:
    return f"{args.ntasks} rank(s)" if args.ntasks else "the ranks SLURM allots by default"


def _sbatch(sbatch: str, arguments: list[str]) -> tuple[str | None, str]:
    """Submit; return (job id, "") or (None, sbatch's message)."""
    result = subprocess.run([sbatch, "--parsable", *arguments], capture_output=True, text=True)
    job_id = result.stdout.strip().split(";")[0]  # --parsable prints "id" or "id;cluster"
    if result.returncode != 0 or not job_id.isdigit():
        return None, (result.stderr.strip() or result.stdout.strip() or f"exit code {result.returncode}")
    return job_id, ""


def _refuse(message: str) -> int:
    logger.error(message)
    return EXIT_CONFIG
