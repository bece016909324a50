"""What a job plugs into the engine: its config keys, and its plan / work / write steps.

The engine (``hpcfit.engine.run``) drives every job the same way::

    rank 0: validate config (schema + check)  ->  [all: survey()]  ->  plan()  ->  work items   [errors: exit 2]
    all:    setup()   ->   work(item) for the items this rank receives   ->   write() into the output file

* ``survey`` (optional) runs on every rank, collectively, after validation and before the plan: pre-plan work worth
  sharing out, e.g. reading the headers of thousands of input files. Its result on rank 0 is handed to ``plan`` as
  ``plan(cfg, report, survey=result)``. A job without one (the default) costs nothing: no step, no message.
* ``plan`` runs on rank 0 only and may read headers/catalogues; it returns small picklable work items (and
  ``Plan.info`` for anything every rank needs). Problems with the user's input are reported through the
  ``report`` callback (key path + message), which the engine turns into ``FILE:LINE: key: message`` errors.
* ``setup`` runs on every rank (collectively) before any item: open data, build the forward model.
* ``work`` runs once per item on whichever rank receives it and must not communicate.
* ``write`` runs on every rank (collectively) with that rank's results and the open ``OutputFile``.

A job whose heavy collective stage depends on earlier results plans it as scheduled work too: ``Plan.staged``
takes a sequence of ``Stage``s (each a list of items, its progress unit and schedule). The engine runs the stages
in order, each with its own progress line and per-item checkpoints, and calls the collective ``between(ctx,
stage, results)`` on every rank after a stage whose results a later stage needs (e.g. to share the model fluxes
the first stage built). Item indices run on across stages, so checkpoints, ``--resume``, ``--slice`` and the
fingerprint see one list of items. A plain ``Plan(items)`` is a plan of one stage.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Protocol

from hpcfit.config.schema import Section, Settings
from hpcfit.io.h5out import OutputFile
from hpcfit.runtime.comm import Comm
from hpcfit.runtime.log import logger

Report = Callable[..., None]  # report(key_path, message, allowed=None)


def raise_report(path: Any, message: str, allowed: Any = None) -> None:
    """A ``Report`` that raises: for ``setup`` re-running a planning helper, where the plan already checked the
    input, so a problem now (a file changed since planning) ends the job with the key and the message."""
    raise ValueError(f"{path}: {message}")


@dataclass
class WorkItem:
    """One unit of scheduled work."""

    index: int
    label: str            # names the item in progress and error messages, e.g. "chunk 3 (spectra 1500-1999)"
    size: int = 1         # its weight in progress units (fits, samples, frames)
    cost: float = 1.0     # relative cost estimate: the scheduler hands out costly items first
    data: Any = None      # small picklable payload
    stage: int = 0        # the stage the item belongs to (set by Plan.staged)


@dataclass
class Stage:
    """One stage of a plan: items scheduled over the ranks after every item of the previous stage is done."""

    name: str                     # names the stage in progress and log lines, e.g. "chi2"
    items: list[WorkItem]
    unit: str = "items"           # progress unit of its items' ``size``
    schedule: str | None = None   # as ``Plan.schedule``, for this stage's items


@dataclass
class Plan:
    """What rank 0 decided: the items, the progress unit, and what every rank needs to know.

    ``items`` is every item of every stage, item ``i`` at position ``i``. ``stages`` is empty for a plan of one
    stage (today's plans); build a staged plan with :meth:`Plan.staged`.

    Slices (``--slice K/N``) split the *last* stage only: every slice also runs every earlier stage in full (and
    checkpoints it in its own directory), because the last stage needs their results and a slice must not depend
    on another. Earlier stages are therefore meant to be cheap next to the last one (gridfit: building the model
    grid versus the chi2 of every galaxy and model); the merge takes their results from the first slice.
    """

    items: list[WorkItem]
    unit: str = "items"
    info: dict[str, Any] = field(default_factory=dict)
    schedule: str | None = None  # force "dynamic", "static" or "blocks" (contiguous runs of items per rank);
    # None: the config's run.schedule
    stages: list[Stage] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # the job's own plan summary lines (``validate --plan``)

    @classmethod
    def staged(cls, stages: list[Stage], info: dict[str, Any] | None = None) -> "Plan":
        """A plan run stage after stage; items are renumbered so that indices run on across the stages."""
        items: list[WorkItem] = []
        for s, stage in enumerate(stages):
            for item in stage.items:
                item.index, item.stage = len(items), s
                items.append(item)
        last = stages[-1] if stages else Stage("work", [])
        return cls(items, unit=last.unit, info=dict(info or {}), schedule=last.schedule, stages=list(stages))

    def stage_list(self) -> list[Stage]:
        """The stages to run, in order (one stage holding every item for a plain plan)."""
        return self.stages or [Stage("work", self.items, self.unit, self.schedule)]

    def sliced_items(self) -> list[WorkItem]:
        """The items that ``--slice`` shares out (the last stage's): at most this many slices."""
        return self.stage_list()[-1].items

    def describe(self) -> list[str]:
        """One line per stage: items and total size in the stage's unit; then the job's notes."""
        stages = self.stage_list()
        return [(f"stage {s + 1}/{len(stages)} {st.name}: " if len(stages) > 1 else "")
                + f"{len(st.items)} work item(s), {sum(i.size for i in st.items):,} {st.unit}"
                for s, st in enumerate(stages)] + list(self.notes)


@dataclass
class RunContext:
    """Everything a job step may use on a rank."""

    comm: Comm
    cfg: Settings
    plan: Plan
    config_path: str
    state: dict[str, Any] = field(default_factory=dict)  # per-rank objects built by setup()
    todo: list[int] = field(default_factory=list)  # the items this run computes (the others come from checkpoints)
    # The output file, already open during setup and work for a job with ``writes_during_work`` in a whole run
    # (None for a slice of a job array, which writes no output, and for every other job until ``write``).
    out: OutputFile | None = None

    def log(self, message: str) -> None:
        """Print a message once (from rank 0)."""
        if self.comm.is_root:
            logger.info(message)


class Job:
    """Base class of the four jobs."""

    name: ClassVar[str]
    title: ClassVar[str]
    schema: ClassVar[Section]
    # Keys of an older config layout -> their place today (dotted paths); a config that still uses one gets an
    # error that shows the new spelling.
    moved_keys: ClassVar[dict[str, str]] = {}
    n_ranks: int = 1  # set by the engine before check/plan, for checks that depend on the rank count
    # set by the engine: True for ``hpcfit validate``, whose plan is all there is (a job that leaves some checks of
    # its inputs to the set-up when it runs on several ranks makes them in the plan then)
    validating: bool = False
    # True: the engine opens the output before ``setup`` (``ctx.out``), so that setup can create datasets and
    # ``work`` can write its results straight into them (``OutputFile.write_plane``) instead of a scratch detour.
    writes_during_work: ClassVar[bool] = False

    def warm_up(self) -> None:
        """Import heavy modules ahead of time (the other ranks do this while rank 0 plans)."""

    def check(self, cfg: Settings, report: Report) -> None:
        """Cross-key checks that need no file access (rank 0). Report problems; do not raise."""

    def survey(self, cfg: Settings, comm: Comm) -> Any:
        """Pre-plan work on every rank (collective), after validation: return what ``plan`` needs from it (rank 0's
        result is handed to ``plan(cfg, report, survey=...)``; the other ranks' is dropped). Bad input found here
        belongs in the result, for ``plan`` to report with its key; an exception on any rank ends the job naming
        the rank and the stage ``survey``. A job that overrides this method must accept ``survey`` in ``plan``
        (None when the plan is made without one: ``plan`` then does the work itself). Not overridden: skipped."""
        return None

    @classmethod
    def has_survey(cls) -> bool:
        """True when the job has a survey step (overrides :meth:`survey`)."""
        return getattr(cls.survey, "__wrapped__", cls.survey) is not Job.survey

    def plan(self, cfg: Settings, report: Report) -> Plan:
        raise NotImplementedError

    def estimate_output_bytes(self, cfg: Settings, plan: Plan) -> int | None:
        """About how many bytes the output file will take, from the plan (rank 0, after ``plan``): the engine
        refuses a run whose output (plus as much again of checkpoints, when ``run.checkpoint`` is on) cannot fit in
        the free space of the output's file system, and warns when it takes more than 90 % of it. None: unknown
        (no check). The large datasets are what matter: rows x columns x bytes per value."""
        return None

    def setup(self, ctx: RunContext) -> None:
        """Build per-rank state (collective)."""

    def work(self, item: WorkItem, ctx: RunContext) -> Any:
        raise NotImplementedError

    def between(self, ctx: RunContext, stage: int, results: dict[int, Any]) -> None:
        """After stage ``stage`` of a staged plan, before the next (every rank, collective): e.g. share what the
        next stage's items need. ``results`` holds this rank's results of the stages so far, those of earlier runs
        included (loaded from checkpoints, a balanced share per rank). Not called when no later item is computed
        in this run (a merge, or a resume with only this stage's items missing): ``write`` must work from
        ``results`` alone."""

    def write(self, ctx: RunContext, results: dict[int, Any], out: OutputFile) -> dict[str, int]:
        """Write this rank's results (collective); return local counters the engine sums for the summary."""
        raise NotImplementedError

    def summary(self, ctx: RunContext, totals: dict[str, int]) -> list[str]:
        """Lines printed by rank 0 at the end of the run."""
        return [f"{key}: {value}" for key, value in totals.items()]

    def demo(self, directory: Path) -> Path:
        """Write a ready demo config (and any data it needs) into ``directory``; return the config path."""
        raise NotImplementedError(f"no demo for the {self.name} job")

    # Options of ``hpcfit plot`` this job understands (flag name without dashes -> help); the command line rejects
    # the others for this job's files. Values reach ``plot`` as strings.
    plot_options: ClassVar[dict[str, str]] = {}

    def plot(self, path: Path, output: Path | None, options: dict[str, str]) -> list[Path]:
        """Draw the figure(s) of one of this job's output files (``hpcfit plot FILE``); return the PNG paths.

        Runs in one process, without MPI. ``output`` is the PNG asked for with ``-o`` (None: a name beside
        ``path``); a job writing several figures derives their names from it. ``options`` holds the
        ``plot_options`` given on the command line. Raise ValueError or KeyError for a file or option that cannot
        be drawn (the command line prints the message and exits 2). Implementations import matplotlib lazily and
        draw on ``matplotlib.figure.Figure`` with the Agg canvas, leaving the caller's pyplot backend alone.
        """
        raise NotImplementedError(f"no plot for the {self.name} job")


class JobCatalog(Protocol):
    """What the engine is handed to find a job by name (``hpcfit.registry.JOBS``): it never imports a job."""

    def names(self) -> list[str]:
        """The job names this installation has."""

    def load(self, name: str) -> type[Job]:
        """The Job subclass of a job name."""
