"""hpcfit: run astronomers' embarrassingly parallel model runs on MPI, from one YAML config into one HDF5 file.

Four jobs share one engine: ``sample`` (photometry training sets), ``gridfit`` (grid SED fitting),
``cubefit`` (fit an astropy model to every spectrum or plane of a cube) and ``calibrate`` (CCD reduction).
"""

from hpcfit._version import __version__

__all__ = ["__version__"]
