"""hpcfit: run astronomers' embarrassingly parallel model runs on MPI, from one YAML config into one HDF5 file.

Four jobs share one engine: ``sample`` (photometry training sets), ``gridfit`` (grid SED fitting),
``cubefit`` (fit an astropy model to every spectrum or plane of a cube) and ``calibrate`` (CCD reduction).

From Python: ``hpcfit.parallel_fit(...)`` (astropy's ``parallel_fit_dask`` on hpcfit's cubefit). The functions of
``hpcfit.api`` are imported on first use (module ``__getattr__``), so ``import hpcfit`` imports neither numpy nor
astropy and costs every MPI rank nothing.
"""

from typing import Any

from hpcfit._version import __version__

# public name -> module of hpcfit.api defining it (imported when the name is first used)
_LAZY = {"parallel_fit": "hpcfit.api.parallel_fit"}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'hpcfit' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
