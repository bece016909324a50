"""The jobs hpcfit can run. Each lives in its own module and is imported only when used."""

from __future__ import annotations

import importlib
import importlib.util

from .base import Job

JOB_MODULES = {
    "sample": "hpcfit.jobs.sample",
    "gridfit": "hpcfit.jobs.gridfit",
    "cubefit": "hpcfit.jobs.cubefit",
    "calibrate": "hpcfit.jobs.calibrate",
}


def available_jobs() -> list[str]:
    """Names of the jobs whose modules are present in this installation."""
    names = []
    for name, module in JOB_MODULES.items():
        if importlib.util.find_spec(module) is not None:
            names.append(name)
    return names


def job_class(name: str) -> type[Job]:
    """The Job subclass for a job name (imports its module)."""
    module = importlib.import_module(JOB_MODULES[name])
    return module.JOB
