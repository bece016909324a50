"""``hpcfit.run(config)``: run a job from Python, in this process, through the same engine as ``hpcfit run``.

The config is a YAML file's path or a dict of the same shape (validated exactly like a file; its problems name the
key path). Without an MPI launcher the job runs serially in this process; under ``mpiexec -n N python script.py``
every rank calls ``hpcfit.run`` and the job runs collectively on all of them, as ``hpcfit run`` would. Problems
raise exceptions instead of ending the process: ``ConfigError`` listing every problem (on every rank), ``RunError``
for a failure during a serial run (a failure under MPI still aborts every rank, so that none waits forever in a
collective). The return value is the output file opened with ``hpcfit.open``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Sequence

from hpcfit.api.open import open as open_result
from hpcfit.config.errors import ConfigError, ConfigIssue
from hpcfit.config.yamlsource import YamlSource, load_mapping, load_yaml_file
from hpcfit.engine.run import RunMode, run_job
from hpcfit.io.result import JobResult
from hpcfit.registry import JOBS
from hpcfit.runtime.comm import Comm, world_comm
from hpcfit.runtime.errors import EXIT_OK, JobFailed, WorkItemError
from hpcfit.runtime.signals import EXIT_INTERRUPTED


class RunError(RuntimeError):
    """A job failed during its work (the message names the rank and the work item; ``__cause__`` is the error)."""


def run(config: str | os.PathLike[str] | Mapping[str, Any], *,
        overrides: Mapping[str, Any] | Sequence[str] | None = None, resume: bool = False,
        comm: Comm | None = None) -> JobResult:
    """Run the job of ``config`` (a YAML file's path, or a dict with ``job``, ``output``, ``run`` and the job's
    section) and return its output file opened (``hpcfit.open``).

    ``overrides``: ``{"gridfit.fit.chi2": "full", "output": "other.h5"}`` (values as Python values) or
    ``["gridfit.fit.chi2=full"]`` (values parsed as YAML), like ``--set``. ``resume``: continue an interrupted
    run from its checkpoints (``--resume``). ``comm``: the communicator (default: MPI's world under an MPI
    launcher, else serial). Raises ``ConfigError`` (every problem, on every rank), ``RunError``.
    """
    comm = comm or world_comm()
    source = _source(config)
    if isinstance(overrides, Mapping):
        for key, value in overrides.items():
            source.set_value(str(key), value)
    else:
        for assignment in overrides or []:
            source.apply_override(assignment)
    argv = ["hpcfit.run", source.source] + [f"--set {a}" for a in _override_text(overrides)]
    try:
        outcome = run_job(source, [], comm, argv=argv, jobs=JOBS, mode=RunMode(resume=resume))
    except JobFailed as exc:  # a failure outside the work items (setup, write), reported by errors.fatal
        raise RunError(exc.message) from exc.cause
    except WorkItemError as exc:  # a serial run's work item: the scheduler lets it through
        raise RunError(f"{type(exc.cause).__name__} in {exc.item_label}: {exc.cause}") from exc.cause
    if outcome.code == EXIT_INTERRUPTED:
        raise RunError("the run was stopped by a signal; its completed work items are checkpointed: call "
                       "hpcfit.run again with resume=True to continue")
    if outcome.code != EXIT_OK or outcome.output is None:  # not reached: a whole run ends written or raises
        raise RunError(f"the run ended with exit code {outcome.code} and no output file")
    return open_result(outcome.output)


def _source(config: Any) -> YamlSource:
    """The parsed config: a file read (every rank reads it, so a missing file is the same error everywhere), or a
    mapping converted."""
    if isinstance(config, Mapping):
        return load_mapping(dict(config))
    if isinstance(config, (str, os.PathLike)):
        return load_yaml_file(Path(config))
    raise ConfigError([ConfigIssue("<config>", None, "", f"expected a config file's path or a dict, got "
                                                         f"{type(config).__name__}")])


def _override_text(overrides: Any) -> list[str]:
    if isinstance(overrides, Mapping):
        return [f"{key}={value}" for key, value in overrides.items()]
    return list(overrides or [])


__all__ = ["run", "RunError", "ConfigError"]
