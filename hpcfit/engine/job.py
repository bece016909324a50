"""What a job plugs into the engine: its config keys, and its plan / work / write steps.

The engine (``hpcfit.engine.run``) drives every job the same way::

    rank 0: validate config (schema + check)  ->  plan()  ->  work items      [errors: exit 2, no output]
    all:    setup()   ->   work(item) for the items this rank receives   ->   write() into the output file

* ``plan`` runs on rank 0 only and may read headers/catalogues; it returns small picklable work items (and
  ``Plan.info`` for anything every rank needs). Problems with the user's input are reported through the
  ``report`` callback (key path + message), which the engine turns into ``FILE:LINE: key: message`` errors.
* ``setup`` runs on every rank (collectively) before any item: open data, build the forward model.
* ``work`` runs once per item on whichever rank receives it and must not communicate.
* ``write`` runs on every rank (collectively) with that rank's results and the open ``OutputFile``.
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


@dataclass
class Plan:
    """What rank 0 decided: the items, the progress unit, and what every rank needs to know."""

    items: list[WorkItem]
    unit: str = "items"
    info: dict[str, Any] = field(default_factory=dict)
    schedule: str | None = None  # force "dynamic", "static" or "blocks" (contiguous runs of items per rank);
    # None: the config's run.schedule


@dataclass
class RunContext:
    """Everything a job step may use on a rank."""

    comm: Comm
    cfg: Settings
    plan: Plan
    config_path: str
    state: dict[str, Any] = field(default_factory=dict)  # per-rank objects built by setup()
    todo: list[int] = field(default_factory=list)  # the items this run computes (the others come from checkpoints)

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

    def warm_up(self) -> None:
        """Import heavy modules ahead of time (the other ranks do this while rank 0 plans)."""

    def check(self, cfg: Settings, report: Report) -> None:
        """Cross-key checks that need no file access (rank 0). Report problems; do not raise."""

    def plan(self, cfg: Settings, report: Report) -> Plan:
        raise NotImplementedError

    def setup(self, ctx: RunContext) -> None:
        """Build per-rank state (collective)."""

    def work(self, item: WorkItem, ctx: RunContext) -> Any:
        raise NotImplementedError

    def write(self, ctx: RunContext, results: dict[int, Any], out: OutputFile) -> dict[str, int]:
        """Write this rank's results (collective); return local counters the engine sums for the summary."""
        raise NotImplementedError

    def summary(self, ctx: RunContext, totals: dict[str, int]) -> list[str]:
        """Lines printed by rank 0 at the end of the run."""
        return [f"{key}: {value}" for key, value in totals.items()]

    def demo(self, directory: Path) -> Path:
        """Write a ready demo config (and any data it needs) into ``directory``; return the config path."""
        raise NotImplementedError(f"no demo for the {self.name} job")


class JobCatalog(Protocol):
    """What the engine is handed to find a job by name (``hpcfit.registry.JOBS``): it never imports a job."""

    def names(self) -> list[str]:
        """The job names this installation has."""

    def load(self, name: str) -> type[Job]:
        """The Job subclass of a job name."""
