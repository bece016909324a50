"""Fault injection for testing how jobs end on failures (never set in production runs).

``HPCFIT_INJECT_FAULT="rank=R,item=I,action=A[,at=P]"`` makes rank R fail at point P of work item I (``item=*``:
the first item it gets; ``rank=*``: every rank). Points: ``work`` (the default: when the rank starts the item) or
``checkpoint`` (while the item's checkpoint is saved: its temporary file written in full, not yet renamed into
place; in the background writer when ``run.checkpoint_async`` is on). Actions: ``raise`` (an exception, the
default), ``kill`` (SIGKILL of the process, as a node failure or the OOM killer would) or ``delay:S`` (sleep S
seconds before every matching item, to make a run slow enough to be interrupted in tests).

``stage=NAME`` moves the fault from the work items to an engine stage: ``stage=survey`` fails rank R as it starts
the job's survey (``Job.survey``, before the plan); ``item`` and ``at`` are then ignored.
"""

from __future__ import annotations

import os
import signal
import time

ENV_VAR = "HPCFIT_INJECT_FAULT"


class InjectedFault(RuntimeError):
    """The exception raised by an injected fault."""


def _spec() -> dict[str, str] | None:
    raw = os.environ.get(ENV_VAR)
    if not raw:
        return None
    return dict(part.split("=", 1) for part in raw.split(",") if "=" in part)


def maybe_fail(rank: int, item_index: int, at: str = "work") -> None:
    """Raise or die here (point ``at`` of the item) if the environment asks for a fault at (rank, item, at)."""
    spec = _spec()
    if (spec is None or spec.get("rank", "-1") not in ("*", str(rank)) or spec.get("stage", "work") != "work"
            or spec.get("at", "work") != at):
        return
    item = spec.get("item", "*")
    if item != "*" and int(item) != item_index:
        return
    where = "" if at == "work" else f" ({at})"
    _act(spec, f"injected fault on rank {rank}, item {item_index}{where} ({ENV_VAR})")


def maybe_fail_stage(rank: int, stage: str) -> None:
    """Raise or die here if the environment asks for a fault at (rank, stage)."""
    spec = _spec()
    if spec is None or spec.get("rank", "-1") not in ("*", str(rank)) or spec.get("stage") != stage:
        return
    _act(spec, f"injected fault on rank {rank}, stage {stage} ({ENV_VAR})")


def _act(spec: dict[str, str], message: str) -> None:
    action = spec.get("action", "raise")
    if action.startswith("delay:"):
        time.sleep(float(action.split(":", 1)[1]))
        return
    if action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    raise InjectedFault(message)
