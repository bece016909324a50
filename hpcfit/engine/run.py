"""The engine: one life cycle for every job.

    rank 0:  read YAML -> validate (engine + job keys) -> job.check -> job.plan      (ConfigError -> exit 2)
             (a job with a survey: every rank runs job.survey, collectively, before rank 0's job.plan)
    bcast :  validated config + plan
    all   :  job.setup -> run work items (dynamic or static schedule; stage after stage, with job.between in
             between, for a staged plan) -> job.write into one HDF5 file
    rank 0:  provenance, rename the file to its final name, summary

Any unexpected exception on any rank ends the job through ``errors.fatal`` (message with rank and item, then
MPI_Abort), so no rank is ever left waiting in a collective.
"""

from __future__ import annotations

import copy
import difflib
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from hpcfit.config.schema import (Bool, Choice, Field, Float, Int, MapOf, OneOf, PathT, Reporter, Section,
                                  Settings, Str, lookup, validate)
from hpcfit.config.yamlsource import YamlSource, load_yaml_file
from hpcfit.io.h5out import OutputFile, incomplete_path
from hpcfit.io.mpi_hints import check_hints, resolve_hints
from hpcfit.engine.job import Job, JobCatalog, Plan, RunContext, Stage
from hpcfit.engine.place import check_output_place, check_output_space
from hpcfit.runtime.comm import Comm
from hpcfit.config.errors import ConfigError, ConfigIssue
from hpcfit.runtime.errors import EXIT_CONFIG, EXIT_OK, fatal, on_fatal, on_fatal_note, storage_error
from hpcfit.runtime.faults import maybe_fail_stage
from hpcfit.runtime import signals
from hpcfit.runtime.checkpoint import (CheckpointMismatch, SliceStore, find_slices, fingerprint, load_item, parts_directory,
                         slice_items)
from hpcfit.runtime.checkpoint_writer import Checkpoints, open_checkpoints
from hpcfit.runtime.progress import Progress, format_duration
from hpcfit.runtime import iostats
from hpcfit.runtime.provenance import run_provenance, utc_now
from hpcfit.runtime.schedule import run_items, static_assignment
from hpcfit.runtime.threads import describe_thread_pools, pinned_threads
from hpcfit.runtime.log import logger

RUN_SECTION = Section(
    {
        "schedule": Field(Choice("dynamic", "static"), "dynamic",
                          "How work items are handed to ranks: `dynamic` self-scheduling (each rank, rank 0 "
                          "too, claims the next item, largest first, from a shared counter on rank 0: one "
                          "atomic MPI one-sided operation, nobody serves requests) or `static` (a fixed "
                          "balanced assignment)."),
        "progress": Field(Choice("auto", "bar", "log", "none"), "auto",
                          "Progress on rank 0: `bar` redraws a line (terminals), `log` prints a line "
                          "every `progress_interval` seconds (batch logs); `auto` picks by terminal."),
        "progress_interval": Field(Float(min=0.0), 30.0, "Seconds between progress log lines."),
        "overwrite": Field(Bool(), False, "Replace an existing output file (otherwise refuse)."),
        "checkpoint": Field(Bool(), True,
                            "Save each completed work item beside the output (`<output>.parts/`) so that "
                            "a killed or preempted run can continue with --resume; removed when the "
                            "output is written."),
        "checkpoint_async": Field(Bool(), True,
                                  "Save the checkpoints in a background thread per rank (at most 2 results "
                                  "waiting), so the work goes on while a checkpoint is written; every stage "
                                  "ends when its checkpoints are on disk. `false`: each item's checkpoint is "
                                  "written before the rank starts its next item."),
        "hdf5_transfer": Field(Choice("auto", "collective", "independent"), "auto",
                               "MPI-IO transfer mode of parallel HDF5 writes: `collective` (two-phase "
                               "I/O, best for large writes on parallel file systems), `independent`, "
                               "or `auto` (collective for writes of 64 MiB or more)."),
        "mpi_info": Field(OneOf(Choice("auto", "none"), MapOf(OneOf(Int(min=0), Str()))), "auto",
                          "MPI-IO hints for the parallel HDF5 output (`mpio` mode), e.g. {striping_factor: 8, "
                          "striping_unit: 4194304, cb_nodes: 2, romio_cb_write: enable}: strings or integers, "
                          "passed as an MPI.Info when the file is created. `auto`: none, except on Lustre "
                          "(striping_factor = min(ranks, max(16, output size / 512 MiB), 64), striping_unit = 4 MiB); "
                          "`none`: no hints. The hints "
                          "used are recorded in the output (`mpi_info`). See docs/cluster.md."),
        "blas_threads": Field(Int(min=1), 1,
                              "Threads each rank's BLAS/OpenMP libraries may use during the job (setup, work, "
                              "write), pinned by the engine whoever loaded numpy first and restored afterwards. "
                              "A multi-threaded BLAS may sum in another order: results are identical for any "
                              "rank count (and serial in-process vs mpiexec) only at a fixed value. More than 1 "
                              "only with fewer ranks per node than cores (`--cpus-per-task`)."),
    },
    doc="Engine settings shared by every job.",
)


def engine_schema(job_names: list[str]) -> Section:
    """The keys every config has besides the job's own section: which job, the output file, the engine's `run`
    settings."""
    return Section({
        "job": Field(Choice(*job_names), doc="Which job to run."),
        "output": Field(PathT(), doc="The HDF5 file to write (a relative path is relative to the config file)."),
        "run": RUN_SECTION,
    })


def read_source(config: str | os.PathLike[str] | YamlSource) -> YamlSource:
    """The parsed config (a copy of an already parsed one: overrides change the values in place)."""
    if isinstance(config, YamlSource):
        return copy.deepcopy(config)
    return load_yaml_file(config)


def config_label(config: str | os.PathLike[str] | YamlSource) -> str:
    """The config file's path (for provenance and messages), or "" for a config given in memory."""
    if isinstance(config, YamlSource):
        return "" if config.source.startswith("<") else config.source
    return str(config)


@dataclass
class Prepared:
    """What rank 0 hands to every rank after validating and planning."""

    job_name: str
    cfg: Settings
    plan: Plan | None
    config_text: str
    config_path: str


def load_config(path: str | os.PathLike[str] | YamlSource, overrides: list[str], n_ranks: int = 1, *,
                jobs: JobCatalog, validating: bool = False) -> tuple[Job, Settings, YamlSource, Reporter]:
    """Parse and validate a config file (or parsed source; rank 0). Raises ConfigError listing every problem.
    ``validating``: for ``hpcfit validate`` (``Job.validating``: no check may be left to the set-up)."""
    source = read_source(path)
    for assignment in overrides:
        source.apply_override(assignment)
    report = Reporter(source)
    name = source.values.get("job")
    known = jobs.names()
    if name not in known:
        close = difflib.get_close_matches(str(name), known, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        message = "missing required key" if name is None else f"unknown job '{name}'{hint}"
        report(("job",), message, known)
        report.raise_if_any()
    job = jobs.load(name)()
    job.n_ranks = n_ranks
    job.validating = validating
    _report_moved_keys(job, source, report)
    schema = engine_schema(known).merged(job.schema)
    cfg = validate(schema, source, report)
    if isinstance(cfg.run.mpi_info, dict):
        check_hints(cfg.run.mpi_info, report)
    job.check(cfg, report)
    check_output_place(cfg, report)
    report.raise_if_any()
    return job, cfg, source, report


def _report_moved_keys(job: Job, source: YamlSource, report: Reporter) -> None:
    """A config in an older layout: one error per moved key with its new spelling (then stop: the rest of the
    file cannot be checked against today's layout)."""
    found = False
    for old, new in job.moved_keys.items():
        if lookup(source.values, old, _ABSENT) is not _ABSENT:
            found = True
            report(old, f"this key has moved: write it as `{new}` (every config has `job`, `output`, `run` and "
                        f"one `{job.name}:` section with the job's keys)")
    if found:
        report.raise_if_any()


_ABSENT = object()


def _peek_job_name(config: str | os.PathLike[str] | YamlSource, jobs: JobCatalog) -> str | None:
    """The job named in a config, read cheaply (None when the file cannot tell yet; validation will say why)."""
    try:
        name = (config if isinstance(config, YamlSource) else load_yaml_file(config)).values.get("job")
    except (ConfigError, AttributeError):
        return None
    return name if name in jobs.names() else None


def prepare(config_path: str | os.PathLike[str] | YamlSource, overrides: list[str], comm: Comm, *, plan: bool,
            jobs: JobCatalog, validating: bool = False) -> tuple[Prepared | None, int]:
    """Validate (and plan) on rank 0, then share the outcome. Returns (prepared, exit code); a config problem is
    logged once (rank 0) and gives (None, EXIT_CONFIG) on every rank."""
    try:
        return prepare_job(config_path, overrides, comm, plan=plan, jobs=jobs, validating=validating), EXIT_OK
    except ConfigError as exc:
        if comm.is_root:
            logger.error(str(exc))
        return None, EXIT_CONFIG


def prepare_job(config_path: str | os.PathLike[str] | YamlSource, overrides: list[str], comm: Comm, *, plan: bool,
                jobs: JobCatalog, validating: bool = False) -> Prepared:
    """Validate (and plan) on rank 0, then share the outcome: the Prepared job, or the same ConfigError raised on
    every rank (listing every problem).

    While rank 0 validates and plans, the other ranks import the job's heavy modules (``Job.warm_up``) and then
    wait without spinning, so that they are ready to work as soon as the plan arrives. A job with a survey
    (``Job.survey``) has every rank run it between the validation (whose config is then shared) and the plan.
    """
    name = comm.bcast(_peek_job_name(config_path, jobs) if comm.is_root else None)
    if name is not None and comm.size > 1 and not comm.is_root:
        _guarded(comm, "importing the job's modules", jobs.load(name)().warm_up)
    # Every rank knows from the job's name alone whether a survey step runs (a job without one: no extra message).
    surveyed = plan and name is not None and jobs.load(name).has_survey()
    outcome: tuple[str, Any] = ("ok", None)
    validated = None
    if comm.is_root:
        try:
            validated = load_config(config_path, overrides, comm.size, jobs=jobs, validating=validating)
        except ConfigError as exc:
            outcome = ("config", exc.issues)
        except Exception as exc:  # noqa: BLE001 - unexpected: end the job naming rank 0 and the stage
            fatal(comm, exc, item="validation and planning")
    survey = _survey(comm, jobs, outcome, validated) if surveyed else None
    if comm.is_root and validated is not None:
        try:
            job, cfg, source, report = validated
            if not plan:
                the_plan = None
            elif surveyed:  # the same job class every rank chose the survey step from
                the_plan = job.plan(cfg, report, survey=survey)
            else:
                the_plan = job.plan(cfg, report)
            if the_plan is not None:
                logger.debug(f"plan: {len(the_plan.items)} work item(s) of {the_plan.unit}; first: "
                             + "; ".join(item.label for item in the_plan.items[:3]))
                report.raise_if_any()  # the size of a plan with problems means nothing
                check_output_space(job, cfg, the_plan, report, warn=lambda text: logger.warning(
                    str(ConfigIssue(*source.where(("output",)), "output", text))))
            report.raise_if_any()
            outcome = ("ok", Prepared(job.name, cfg, the_plan, source.text, config_label(config_path)))
        except ConfigError as exc:
            outcome = ("config", exc.issues)
        except Exception as exc:  # noqa: BLE001 - unexpected: end the job naming rank 0 and the stage
            fatal(comm, exc, item="validation and planning")
    comm.idle_barrier()
    outcome = comm.bcast(outcome)
    if outcome[0] == "config":
        raise ConfigError(list(outcome[1]))  # rebuilt from the issues: an exception's own pickling drops them
    return outcome[1]


def _survey(comm: Comm, jobs: JobCatalog, outcome: tuple[str, Any], validated: Any) -> Any:
    """The job's survey on every rank, with the config rank 0 validated (shared first); a config problem found by
    the validation is raised on every rank instead. Returns rank 0's result there, the others' elsewhere."""
    comm.idle_barrier()  # the other ranks wait without spinning while rank 0 validates
    shared = comm.bcast(("config", outcome[1]) if outcome[0] == "config" else
                        ("ok", (validated[0].name, validated[1])) if comm.is_root else None)
    if shared[0] == "config":
        raise ConfigError(list(shared[1]))
    name, cfg = shared[1]
    if comm.is_root:
        job = validated[0]
    else:
        job = jobs.load(name)()
        job.n_ranks = comm.size

    def run() -> Any:
        maybe_fail_stage(comm.rank, "survey")
        return job.survey(cfg, comm)

    return _guarded(comm, "survey", run)


@dataclass
class RunMode:
    """How this invocation relates to other runs of the same config."""

    slice_k: int = 0
    slice_n: int = 1
    resume: bool = False
    merge: bool = False
    keep_parts: bool = False


@dataclass
class RunOutcome:
    """How a run ended: its exit code, and the output file when it wrote one."""

    code: int
    output: Path | None = None


def execute(config_path: str | os.PathLike[str] | YamlSource, overrides: list[str], comm: Comm, *,
            argv: list[str], jobs: JobCatalog, mode: RunMode | None = None) -> int:
    """Run a job end to end (or one slice of it, or the merge of its slices); return the exit code (a config
    problem: logged once, EXIT_CONFIG on every rank).

    Fatal errors never return: they abort every rank.
    """
    try:
        return run_job(config_path, overrides, comm, argv=argv, jobs=jobs, mode=mode).code
    except (ConfigError, CheckpointMismatch) as exc:
        if comm.is_root:
            logger.error(str(exc))
        return EXIT_CONFIG


def run_job(config: str | os.PathLike[str] | YamlSource, overrides: list[str], comm: Comm, *, argv: list[str],
            jobs: JobCatalog, mode: RunMode | None = None) -> RunOutcome:
    """``execute`` for callers that take exceptions (``hpcfit.run``): a config problem raises the same
    ConfigError on every rank (a checkpoint of another config, on --resume: CheckpointMismatch); returns the exit
    code and the output file written."""
    mode = mode or RunMode()
    start_time, t0, io0 = utc_now(), time.monotonic(), iostats.snapshot()
    prepared = prepare_job(config, overrides, comm, plan=True, jobs=jobs)
    config_path = prepared.config_path
    job = jobs.load(prepared.job_name)()
    cfg, plan = prepared.cfg, prepared.plan
    ctx = RunContext(comm=comm, cfg=cfg, plan=plan, config_path=config_path)
    output = Path(cfg.output)
    checkpointing = cfg.run.checkpoint or mode.resume or mode.slice_n > 1 or mode.merge

    # Which items this run computes, and which come from checkpoints (rank 0 decides, everyone follows).
    decision: tuple[str, Any] = ("ok", None)
    if comm.is_root:
        try:
            decision = ("ok", _decide_items(job, cfg, plan, output, mode, checkpointing, ctx.log))
        except ConfigError as exc:
            decision = ("config", exc.issues)
        except CheckpointMismatch as exc:
            decision = ("mismatch", str(exc))
        except Exception as exc:  # noqa: BLE001
            fatal(comm, exc, item="reading the checkpoints")
    decision = comm.bcast(decision)
    if decision[0] == "config":
        raise ConfigError(list(decision[1]))
    if decision[0] == "mismatch":
        raise CheckpointMismatch(decision[1])
    todo, stored = decision[1]  # stored: item index -> slice directory holding its result
    ctx.todo = list(todo)
    what = "merge of slices" if mode.merge else (f"slice {mode.slice_k}/{mode.slice_n}" if mode.slice_n > 1 else "run")
    ctx.log(f"{job.name} {what}: {len(todo)} of {len(plan.items)} work item(s) to compute"
            + (f" ({sum(plan.items[i].size for i in todo):,} {plan.unit})" if not plan.stages else "")
            + f", {len(stored)} from checkpoints, {comm.size} rank(s); output {output}")
    if plan.stages:
        todo_set = set(todo)
        for s, stage in enumerate(plan.stages):
            mine = _stage_todo(stage, todo_set)
            ctx.log(f"  stage {s + 1}/{len(plan.stages)} {stage.name}: {len(mine)} of {len(stage.items)} item(s) "
                    f"to compute ({sum(plan.items[i].size for i in mine):,} {stage.unit})")
    store = SliceStore.for_slice(output, mode.slice_k, mode.slice_n) if checkpointing and not mode.merge else None
    if checkpointing and not mode.merge:
        signals.install()
    saver = None if store is None else open_checkpoints(
        store, comm.rank, asynchronous=cfg.run.checkpoint_async,
        label=lambda i: f"work item {i} ({plan.items[i].label})")
    unregister = _on_fatal_checkpoints(store, saver, config_path, mode)
    try:
        # The results must not depend on the BLAS threads the caller's process happens to have (see
        # hpcfit.runtime.threads): pinned for the job's whole life cycle, restored on return.
        with pinned_threads(cfg.run.blas_threads):
            return _run(job, ctx, prepared, mode, checkpointing, output, todo, stored, argv, start_time, t0, io0,
                        store, saver)
    finally:
        if saver is not None:
            saver.close()  # a serial run's failed item: the items finished before it are saved first
        signals.restore()
        for remove in unregister:
            remove()


def _on_fatal_checkpoints(store: SliceStore | None, saver: Checkpoints | None,
                          config_path: str, mode: RunMode) -> list[Callable[[], None]]:
    """A fatal end of this run lets the checkpoint writer finish, removes the checkpoints' temporary pieces and its
    message says which completed items stay for --resume; returns the functions that unregister all three."""
    if store is None or saver is None:
        return []
    resume = f"hpcfit run {config_path} --resume" + (f" --slice {mode.slice_k}/{mode.slice_n}"
                                                      if mode.slice_n > 1 else "")

    def kept() -> str | None:
        note = store.describe_kept()
        return f"{note} (`{resume}` once the cause is fixed)" if note else None

    return [on_fatal(saver.settle), on_fatal(store.remove_temporary), on_fatal_note(kept)]


def _run(job: Job, ctx: RunContext, prepared: Prepared, mode: RunMode, checkpointing: bool, output: Path,
         todo: list[int], stored: dict[int, Path], argv: list[str], start_time: str, t0: float,
         io0: iostats.IoSnapshot, store: SliceStore | None,
         saver: Checkpoints | None) -> RunOutcome:
    """The run proper, from the job's setup to the output's final name (see ``execute``)."""
    comm, cfg, plan, config_path = ctx.comm, ctx.cfg, ctx.plan, ctx.config_path
    temp = incomplete_path(output)
    hints, hints_source = ({}, "")
    if comm.is_root:
        hints, hints_source = resolve_hints(cfg.run.mpi_info, output, comm.size, job.estimate_output_bytes(cfg, plan))
    hints, hints_source = comm.bcast((hints, hints_source))

    def open_output() -> OutputFile:
        return OutputFile(output, comm, transfer=cfg.run.hdf5_transfer, hints=hints)

    if job.writes_during_work and mode.slice_n == 1:
        ctx.out = _guarded(comm, "opening the output file", open_output, file=temp)
    _guarded(comm, "setup", lambda: job.setup(ctx))
    t_work = time.monotonic()
    stages = plan.stage_list()
    todo_set = set(todo)
    loaded: set[int] = set()  # stored items already loaded into ``results``
    results: dict[int, Any] = {}
    stopped = False
    for s, stage in enumerate(stages):
        stage_todo = _stage_todo(stage, todo_set)
        if s > 0 and any(item.index in todo_set for later in stages[s:] for item in later.items):
            # The earlier stages' results are complete (computed now, or loaded from checkpoints) before the hook.
            _load_stored(comm, plan, {i: d for i, d in stored.items() if plan.items[i].stage < s}, loaded, results)
            _guarded(comm, f"between stages {stages[s - 1].name} and {stage.name}",
                     lambda: job.between(ctx, s - 1, results))
        if not stage_todo:
            continue
        try:
            results.update(_run_stage(job, ctx, stage, s, len(stages), stage_todo, saver))
        except BaseException:  # a serial run's failed item propagates (with ranks, errors.fatal has cleaned up)
            if ctx.out is not None:
                ctx.out.abandon()
            raise
        stopped = comm.allreduce(signals.stop_requested.is_set(), op="lor")
        if stopped:
            break
    if checkpointing and not mode.merge and not stopped:
        signals.work_finished()
    work_seconds = time.monotonic() - t_work

    if stopped:
        if ctx.out is not None:  # a resumed run writes a new file (the job redoes what this one wrote)
            _guarded(comm, "closing the output file", ctx.out.discard)
        if comm.is_root:
            done = len(store.completed()) if store else 0
            logger.info(f"stopped by a signal; {done} completed item(s) are checkpointed in {store.directory}; "
                        f"continue with: hpcfit run {config_path} --resume"
                        + (f" --slice {mode.slice_k}/{mode.slice_n}" if mode.slice_n > 1 else ""))
        return RunOutcome(signals.EXIT_INTERRUPTED)
    if mode.slice_n > 1:
        comm.barrier()
        if comm.is_root:
            store.mark_complete()
            logger.info(f"slice {mode.slice_k}/{mode.slice_n} complete in "
                        f"{format_duration(time.monotonic() - t0)}; when every slice is done: "
                        f"hpcfit merge {config_path}")
        return RunOutcome(EXIT_OK)

    # Results computed in earlier runs or slices: each rank loads a balanced share, then writes as usual.
    _load_stored(comm, plan, stored, loaded, results)
    out = ctx.out if ctx.out is not None else _guarded(comm, "opening the output file", open_output, file=temp)
    local = _guarded(comm, "writing the output", lambda: job.write(ctx, results, out) or {}, file=temp)
    keys = sorted(set().union(*comm.allgather(list(local))))
    totals = {key: comm.allreduce(int(local.get(key, 0))) for key in keys}
    provenance = _guarded(comm, "provenance", lambda: run_provenance(
        comm, job=job.name, config_text=prepared.config_text, config_path=config_path, argv=argv,
        start_time=start_time))
    provenance.update(end_time=utc_now(), work_seconds=round(work_seconds, 3),
                      wall_seconds=round(time.monotonic() - t0, 3), output_mode=out.mode,
                      items_from_checkpoints=len(stored), merged_slices=mode.merge,
                      blas_threads=cfg.run.blas_threads, blas_libraries=describe_thread_pools(),
                      mpi_info=hints if out.mode == "mpio" else {}, mpi_info_source=hints_source
                      if out.mode == "mpio" else f"not used (HDF5 mode '{out.mode}')")
    # File-system traffic of every rank from the start of the run to here (see hpcfit.runtime.iostats).
    deltas = comm.allgather(iostats.snapshot() - io0)
    provenance.update(iostats.traffic_attrs(deltas), io_note=iostats.note(deltas))
    _guarded(comm, "provenance", lambda: out.set_attrs("/", provenance), file=temp)
    final = _guarded(comm, "closing the output file", out.commit, file=temp)
    if comm.is_root:
        if checkpointing and not mode.keep_parts:
            shutil.rmtree(parts_directory(output), ignore_errors=True)
        for line in job.summary(ctx, totals):
            logger.info(line)
        logger.info(f"wrote {final} in {format_duration(time.monotonic() - t0)} "
                    f"({comm.size} rank(s), HDF5 mode '{out.mode}')")
    return RunOutcome(EXIT_OK, final)


def _run_stage(job: Job, ctx: RunContext, stage: Stage, s: int, n_stages: int, todo: list[int],
               saver: Checkpoints | None) -> dict[int, Any]:
    """Schedule one stage's items over the ranks, with its own progress line; return this rank's results once
    their checkpoints are on disk."""
    comm, cfg, plan = ctx.comm, ctx.cfg, ctx.plan
    progress = None
    if comm.is_root:
        name = f"hpcfit {job.name}" + (f" {stage.name}" if n_stages > 1 else "")
        progress = Progress(sum(plan.items[i].size for i in todo), stage.unit, mode=cfg.run.progress,
                            interval=cfg.run.progress_interval, label=name)
    results = run_items(comm, plan.items, lambda item: job.work(item, ctx), schedule=stage.schedule or cfg.run.schedule,
                        progress=progress, label=lambda item: f"work item {item.index} ({item.label})",
                        todo=todo, on_done=saver.save if saver is not None else None)
    if saver is not None:
        _guarded(comm, "saving the checkpoints" + (f" of stage {stage.name}" if n_stages > 1 else ""), saver.drain)
    if progress:
        progress.finish(stopped=signals.stop_requested.is_set())
    return results


def _stage_todo(stage: Stage, todo: set[int]) -> list[int]:
    """The indices of the stage's items that this run computes."""
    return [item.index for item in stage.items if item.index in todo]


def _load_stored(comm: Comm, plan: Plan, stored: dict[int, Path], loaded: set[int], results: dict[int, Any]) -> None:
    """Load the checkpointed results of ``stored`` not loaded yet: a balanced share per rank, into ``results``."""
    wanted = {i: d for i, d in stored.items() if i not in loaded}
    if not wanted:
        return
    mine = static_assignment({i: float(plan.items[i].cost) for i in wanted}, comm.size)[comm.rank]
    results.update(_guarded(comm, "loading checkpointed results",
                            lambda: {i: load_item(wanted[i], i) for i in mine}))
    loaded.update(wanted)


def slice_of(plan: Plan, k: int, n: int) -> list[int]:
    """Item indices of slice k of n: every item of the earlier stages, and a contiguous share of the last's."""
    last = plan.sliced_items()
    first = last[0].index if last else len(plan.items)
    return list(range(first)) + [first + i for i in slice_items(len(last), k, n)]


def _decide_items(job: Job, cfg: Settings, plan: Plan, output: Path, mode: RunMode, checkpointing: bool,
                  log: Callable[[str], None]) -> tuple[list[int], dict[int, Path]]:
    """(items to compute now, {item: checkpoint directory}) for this run mode (rank 0)."""
    n_sliced = len(plan.sliced_items())
    print_id = fingerprint(job.name, cfg, plan.items, stages=[len(st.items) for st in plan.stages])
    if mode.merge:
        return [], _merge_sources(output, plan, print_id)
    if mode.slice_n > 1 and mode.slice_n > n_sliced:
        raise ConfigError([ConfigIssue("--slice", None, "", f"{mode.slice_n} slices for only {n_sliced} work "
                                                            "item(s): use at most as many slices as items")])
    mine = slice_of(plan, mode.slice_k, mode.slice_n)
    if not checkpointing:
        return mine, {}
    store = SliceStore.for_slice(output, mode.slice_k, mode.slice_n)
    done = store.start(log, job=job.name, fingerprint_value=print_id, items=mine, resume=mode.resume)
    if mode.resume:
        log(f"resuming: {len(done)} of {len(mine)} item(s) already done in {store.directory}")
    return [i for i in mine if i not in done], {i: store.directory for i in done}


def _merge_sources(output: Path, plan: Plan, print_id: str) -> dict[int, Path]:
    """Check that every slice is present, complete and made with this config; map items to their slice (items
    of earlier stages, which every slice computes, to the first slice)."""
    stores = find_slices(output)
    problems: list[str] = []
    counts = sorted({s.n for s in stores})
    if not stores:
        raise ConfigError([ConfigIssue("merge", None, "", f"no slices found in {parts_directory(output)}: run the "
                                                          "slices first (hpcfit run CONFIG --slice K/N)")])
    if len(counts) > 1:
        raise ConfigError([ConfigIssue("merge", None, "", f"slices of different splits ({', '.join(map(str, counts))}"
                                                          f") in {parts_directory(output)}: remove the stale ones")])
    n = counts[0]
    by_k = {s.k: s for s in stores}
    sources: dict[int, Path] = {}
    for k in range(n):
        store = by_k.get(k)
        expected = set(slice_of(plan, k, n))
        if store is None:
            problems.append(f"slice {k}/{n} is missing ({parts_directory(output)}/slice-{k:03d}-of-{n:03d})")
            continue
        manifest = store.read_manifest()
        if manifest.get("fingerprint") != print_id:
            problems.append(f"slice {k}/{n} was computed with a different config or plan")
            continue
        done = store.completed() & expected
        if not store.is_complete() or done != expected:
            problems.append(f"slice {k}/{n} is incomplete: {len(done)} of {len(expected)} items done "
                            f"(rerun it: hpcfit run CONFIG --slice {k}/{n} --resume)")
            continue
        for i in sorted(expected):
            sources.setdefault(i, store.directory)
    if problems:
        raise ConfigError([ConfigIssue("merge", None, "", p) for p in problems])
    return sources


def _guarded(comm: Comm, stage: str, fn: Callable[[], Any], file: Path | None = None) -> Any:
    """``fn()``, or the end of the job through ``errors.fatal`` naming the stage (and ``file``, the file being
    written, when the storage fails and the error does not name it: h5py's do not)."""
    try:
        return fn()
    except Exception as exc:  # noqa: BLE001
        storage = storage_error(exc)
        if file is not None and storage is not None and not storage.filename:
            named = OSError(storage.errno, os.strerror(storage.errno), str(file))
            named.__cause__ = exc
            exc = named
        fatal(comm, exc, item=stage)


__all__ = ["RUN_SECTION", "engine_schema", "RunMode", "RunOutcome", "execute", "run_job", "prepare", "prepare_job",
           "load_config", "incomplete_path"]
