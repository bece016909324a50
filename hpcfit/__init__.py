"""hpcfit: run astronomers' embarrassingly parallel model runs on MPI, from one YAML config into one HDF5 file.

Four jobs share one engine: ``sample`` (photometry training sets), ``gridfit`` (grid SED fitting),
``cubefit`` (fit an astropy model to every spectrum or plane of a cube) and ``calibrate`` (CCD reduction).

From Python (docs/python_api.md): ``hpcfit.parallel_fit(...)`` is astropy's ``parallel_fit_dask`` on hpcfit's
cubefit; ``hpcfit.run(config)`` runs a job in this process (or collectively under
mpiexec) and returns its result; ``hpcfit.open(path)`` reads any hpcfit output file back as astropy objects.
These are re-exported lazily from ``hpcfit.api``: ``import hpcfit`` imports no numpy, astropy or h5py, so every
rank of a batch job starts quickly and the command line stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

from hpcfit._version import __version__

# public name -> "module:attribute", imported on first use (PEP 562)
_LAZY = {
    "run": "hpcfit.api.run:run",
    "open": "hpcfit.api.open:open",
    "RunError": "hpcfit.api.run:RunError",
    "parallel_fit": "hpcfit.api.parallel_fit:parallel_fit",
    "ConfigError": "hpcfit.config.errors:ConfigError",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    target = _LAZY.get(name)
    if target is None:
        raise AttributeError(f"module 'hpcfit' has no attribute '{name}'")
    module, _, attribute = target.partition(":")
    value = getattr(importlib.import_module(module), attribute)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
