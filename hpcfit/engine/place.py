"""The output's place, checked on rank 0 before any work (``validate`` and ``run`` alike).

* The output's folder and the checkpoint folder beside it (``<output>.parts/``) exist or can be created, and a
  file can really be created there: a probe file is made and removed, because ``os.access`` says yes to root on
  a read-only or pseudo file system (``/sys``, a read-only mount) where creating the file then fails.
* The output fits: the job estimates its output's size from the plan (``Job.estimate_output_bytes``), the
  checkpoints of a run take about as much again until the output is written, and the sum is compared with the
  free space of the file system (``shutil.disk_usage``): an error when it cannot fit (with the numbers), a
  warning when it takes more than 90 % of the free space.

Problems are reported as config problems of the ``output`` key (``FILE:LINE: output: ...``, exit code 2).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable

from hpcfit.config.schema import Reporter, Settings
from hpcfit.engine.job import Job, Plan
from hpcfit.runtime.checkpoint import parts_directory
from hpcfit.runtime.log import logger

WARN_FRACTION = 0.9  # warn when the run needs more than this share of the free space


def check_output_place(cfg: Settings, report: Reporter) -> None:
    """The output file can be created where the config says, and so can the checkpoint folder beside it."""
    output = cfg.output
    if not output:
        return
    path = Path(output)
    if path.exists() and not cfg.run.overwrite:
        report("output", f"output file '{path}' already exists (set run.overwrite: true, "
                         "or --set run.overwrite=true, to replace it)")
    if path.is_dir():
        report("output", f"'{path}' is a directory, not a file name")
        return
    folder = existing_ancestor(path.parent)
    if not folder.is_dir():
        report("output", f"cannot create the output '{path}': '{folder}' is a file, not a directory")
        return
    problem = probe(folder)
    if problem:
        where = "" if folder == path.parent else f"its folder '{path.parent}' cannot be created: "
        report("output", f"cannot create the output '{path}': {where}'{folder}' refuses new files ({problem})")
        return
    parts = parts_directory(path)
    if parts.exists():
        problem = "it is not a directory" if not parts.is_dir() else probe(parts)
        if problem:
            report("output", f"the checkpoint folder '{parts}' cannot take new files ({problem}; remove it or "
                             "choose another output)")


def check_output_space(job: Job, cfg: Settings, plan: Plan, report: Reporter,
                       warn: Callable[[str], None] | None = None) -> None:
    """The job's estimated output (and its checkpoints) fits in the free space of the output's file system."""
    if not cfg.output:
        return
    estimate = job.estimate_output_bytes(cfg, plan)
    if not estimate:
        return
    path = Path(cfg.output)
    folder = existing_ancestor(path.parent)
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return  # check_output_place has said why the folder is unusable
    parts = parts_directory(path)
    checkpoints = int(estimate) if cfg.run.checkpoint else 0
    # Checkpoints already there are either continued (--resume) or removed first: their space counts as free.
    available = free + tree_bytes(parts)
    needed = int(estimate) + checkpoints
    # Exact byte counts when the rounded figures would read the same ("needs 8.4 MB but has 8.4 MB free")
    show = format_bytes if format_bytes(needed) != format_bytes(available) else (lambda n: f"{int(n):,} bytes")
    what = (f"about {show(needed)} ({show(estimate)} output + {show(checkpoints)} of "
            "checkpoints until it is written)" if checkpoints else f"about {show(needed)} for the output")
    if needed > available:
        hint = ("set run.checkpoint: false to need only the output's size, or " if checkpoints
                and estimate <= available else "")
        report("output", f"the run needs {what} but '{folder}' has {show(available)} free: "
                         f"{hint}write the output to a file system with more room")
    elif needed > WARN_FRACTION * available:
        (warn or logger.warning)(f"the run needs {what}, {needed / max(available, 1):.0%} of the "
                                 f"{show(available)} free in '{folder}': little room to spare "
                                 "(warning)")


def existing_ancestor(path: Path) -> Path:
    """``path`` or its nearest ancestor that exists."""
    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def probe(folder: Path) -> str | None:
    """None when a file can be created (and removed) in ``folder``, else the reason, e.g. 'Permission denied'."""
    try:
        handle, name = tempfile.mkstemp(prefix=".hpcfit-probe-", dir=folder)
    except OSError as exc:
        return exc.strerror or type(exc).__name__
    os.close(handle)
    try:
        os.unlink(name)
    except OSError:
        pass
    return None


def tree_bytes(folder: Path) -> int:
    """The bytes of the files under ``folder`` (0 when it does not exist)."""
    total = 0
    for root, _, files in os.walk(folder):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return total


def format_bytes(n: float) -> str:
    """A size for people: 22.4 MB, 3.1 GB (decimal units, like df -H)."""
    for unit in ("bytes", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:,.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} PB"
