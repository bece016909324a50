"""The engine: one life cycle for every job.

    rank 0:  read YAML -> validate (engine + job keys) -> job.check -> job.plan      (ConfigError -> exit 2)
    bcast :  validated config + plan
    all   :  job.setup -> run work items (dynamic or static schedule) -> job.write into one HDF5 file
    rank 0:  provenance, rename the file to its final name, summary

Any unexpected exception on any rank ends the job through ``errors.fatal`` (message with rank and item, then
MPI_Abort), so no rank is ever left waiting in a collective.
"""

from __future__ import annotations

import difflib
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ..config.schema import Bool, Choice, Field, Float, Reporter, Section, Settings, lookup, validate
from ..config.yamlsource import YamlSource, load_yaml_file
from ..io.h5out import OutputFile, incomplete_path
from ..jobs import JOB_MODULES, available_jobs, job_class
from ..jobs.base import Job, Plan, RunContext
from .comm import Comm
from .errors import EXIT_CONFIG, EXIT_OK, ConfigError, ConfigIssue, fatal
from .progress import Progress, format_duration
from .provenance import run_provenance, utc_now
from .schedule import run_items

ENGINE_SCHEMA = Section(
    {
        "job": Field(Choice(*JOB_MODULES), doc="Which job to run."),
        "run": Section(
            {
                "schedule": Field(Choice("dynamic", "static"), "dynamic",
                                  "How work items are handed to ranks: `dynamic` self-scheduling (rank 0 hands "
                                  "out the next item to whichever rank is free, rank 0 works too) or `static` "
                                  "(a fixed balanced assignment, no messages)."),
                "progress": Field(Choice("auto", "bar", "log", "none"), "auto",
                                  "Progress on rank 0: `bar` redraws a line (terminals), `log` prints a line "
                                  "every `progress_interval` seconds (batch logs); `auto` picks by terminal."),
                "progress_interval": Field(Float(min=0.0), 30.0, "Seconds between progress log lines."),
                "overwrite": Field(Bool(), False, "Replace an existing output file (otherwise refuse)."),
                "hdf5_transfer": Field(Choice("auto", "collective", "independent"), "auto",
                                       "MPI-IO transfer mode of parallel HDF5 writes: `collective` (two-phase "
                                       "I/O, best for large writes on parallel file systems), `independent`, "
                                       "or `auto` (collective for writes of 64 MiB or more)."),
            },
            doc="Engine settings shared by every job.",
        ),
    }
)


@dataclass
class Prepared:
    """What rank 0 hands to every rank after validating and planning."""

    job_name: str
    cfg: Settings
    plan: Plan | None
    config_text: str
    config_path: str


def load_config(path: str, overrides: list[str]) -> tuple[Job, Settings, YamlSource, Reporter]:
    """Parse and validate a config file (rank 0). Raises ConfigError listing every problem."""
    source = load_yaml_file(path)
    for assignment in overrides:
        source.apply_override(assignment)
    report = Reporter(source)
    name = source.values.get("job")
    known = available_jobs()
    if name not in known:
        close = difflib.get_close_matches(str(name), known, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        message = "missing required key" if name is None else f"unknown job '{name}'{hint}"
        report(("job",), message, known)
        report.raise_if_any()
    job = job_class(name)()
    schema = ENGINE_SCHEMA.merged(job.schema)
    cfg = validate(schema, source, report)
    job.check(cfg, report)
    _check_output(job, cfg, report)
    report.raise_if_any()
    return job, cfg, source, report


def _check_output(job: Job, cfg: Settings, report: Reporter) -> None:
    output = lookup(cfg, job.output_key)
    if not output:
        return
    path = Path(output)
    if path.exists() and not cfg.run.overwrite:
        report(job.output_key, f"output file '{path}' already exists (set run.overwrite: true, "
                               "or --set run.overwrite=true, to replace it)")
    if path.is_dir():
        report(job.output_key, f"'{path}' is a directory, not a file name")
    ancestor = path.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not os.access(ancestor, os.W_OK):
        report(job.output_key, f"cannot create the output: directory '{ancestor}' is not writable")


def _peek_job_name(config_path: str) -> str | None:
    """The job named in a config, read cheaply (None when the file cannot tell yet; validation will say why)."""
    try:
        name = load_yaml_file(config_path).values.get("job")
    except (ConfigError, AttributeError):
        return None
    return name if name in available_jobs() else None


def prepare(config_path: str, overrides: list[str], comm: Comm, *, plan: bool) -> tuple[Prepared | None, int]:
    """Validate (and plan) on rank 0, then share the outcome. Returns (prepared, exit code).

    While rank 0 validates and plans, the other ranks import the job's heavy modules (``Job.warm_up``) and then
    wait without spinning, so that they are ready to work as soon as the plan arrives.
    """
    name = comm.bcast(_peek_job_name(config_path) if comm.is_root else None)
    if name is not None and comm.size > 1 and not comm.is_root:
        _guarded(comm, "importing the job's modules", job_class(name)().warm_up)
    outcome: tuple[str, Any] = ("ok", None)
    if comm.is_root:
        try:
            job, cfg, source, report = load_config(config_path, overrides)
            the_plan = job.plan(cfg, report) if plan else None
            report.raise_if_any()
            outcome = ("ok", Prepared(job.name, cfg, the_plan, source.text, config_path))
        except ConfigError as exc:
            outcome = ("config", str(exc))
        except Exception as exc:  # noqa: BLE001 - unexpected: end the job naming rank 0 and the stage
            fatal(comm, exc, item="validation and planning")
    comm.idle_barrier()
    outcome = comm.bcast(outcome)
    if outcome[0] == "config":
        if comm.is_root:
            print(f"hpcfit: {outcome[1]}", file=sys.stderr, flush=True)
        return None, EXIT_CONFIG
    return outcome[1], EXIT_OK


def execute(config_path: str, overrides: list[str], comm: Comm, *, argv: list[str]) -> int:
    """Run a job end to end; return the exit code (fatal errors never return)."""
    start_time, t0 = utc_now(), time.monotonic()
    prepared, code = prepare(config_path, overrides, comm, plan=True)
    if prepared is None:
        return code
    job = job_class(prepared.job_name)()
    cfg, plan = prepared.cfg, prepared.plan
    ctx = RunContext(comm=comm, cfg=cfg, plan=plan, config_path=config_path)
    output = Path(lookup(cfg, job.output_key))
    ctx.log(f"{job.name}: {len(plan.items)} work item(s), {sum(i.size for i in plan.items):,} {plan.unit}, "
            f"{comm.size} rank(s); output {output}")

    _guarded(comm, "setup", lambda: job.setup(ctx))
    t_work = time.monotonic()
    progress = None
    if comm.is_root:
        progress = Progress(sum(i.size for i in plan.items), plan.unit, mode=cfg.run.progress,
                            interval=cfg.run.progress_interval, label=f"hpcfit {job.name}")
    schedule = plan.schedule or cfg.run.schedule
    results = run_items(comm, plan.items, lambda item: job.work(item, ctx), schedule=schedule,
                        progress=progress, label=lambda item: f"work item {item.index} ({item.label})")
    if progress:
        progress.finish()
    work_seconds = time.monotonic() - t_work

    out = _guarded(comm, "opening the output file", lambda: OutputFile(output, comm, transfer=cfg.run.hdf5_transfer))
    local = _guarded(comm, "writing the output", lambda: job.write(ctx, results, out) or {})
    keys = sorted(set().union(*comm.allgather(list(local))))
    totals = {key: comm.allreduce(int(local.get(key, 0))) for key in keys}
    provenance = _guarded(comm, "provenance", lambda: run_provenance(
        comm, job=job.name, config_text=prepared.config_text, config_path=config_path, argv=argv,
        start_time=start_time))
    provenance.update(end_time=utc_now(), work_seconds=round(work_seconds, 3),
                      wall_seconds=round(time.monotonic() - t0, 3), output_mode=out.mode)
    _guarded(comm, "provenance", lambda: out.set_attrs("/", provenance))
    final = _guarded(comm, "closing the output file", out.commit)
    if comm.is_root:
        for line in job.summary(ctx, totals):
            print(f"hpcfit: {line}", flush=True)
        print(f"hpcfit: wrote {final} in {format_duration(time.monotonic() - t0)} "
              f"({comm.size} rank(s), HDF5 mode '{out.mode}')", flush=True)
    return EXIT_OK


def _guarded(comm: Comm, stage: str, fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except Exception as exc:  # noqa: BLE001
        fatal(comm, exc, item=stage)


__all__ = ["ENGINE_SCHEMA", "execute", "prepare", "load_config", "incomplete_path", "ConfigIssue"]
