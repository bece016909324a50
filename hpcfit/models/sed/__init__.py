"""Forward SED models for the ``sample`` job: the built-in stars + dust + AGN + IGM model and the plug-in protocol.

* ``builtin``: :class:`BuiltinSEDModel` (batched photometry in maggies), its declaration ``BUILTIN_SPEC``.
* ``plugin``: the protocol a plug-in ``package.module:callable`` follows.
* ``loader``: :func:`load_model_spec` finds ``builtin`` or a plug-in by name.
* Physics, one module each: ``ssp`` (SSP libraries), ``sfh`` (star-formation histories), ``attenuation``,
  ``dust_emission``, ``agn``, ``igm``, ``cosmology``; ``grid`` and ``tables`` hold the numerics.

Documentation of the physics and units: docs/sed_model.md. Nothing here imports MPI.
"""

from hpcfit.models.sed.loader import load_model_spec
from hpcfit.models.sed.plugin import ForwardModel, ModelSpec, OptionSpec, ParamSpec

__all__ = ["ForwardModel", "ModelSpec", "OptionSpec", "ParamSpec", "load_model_spec", "BuiltinSEDModel", "BUILTIN_SPEC"]


def __getattr__(name: str):
    # The built-in model pulls in astropy and the filters module: import it only when asked for.
    if name in ("BuiltinSEDModel", "BUILTIN_SPEC"):
        from hpcfit.models.sed import builtin

        return getattr(builtin, name)
    raise AttributeError(name)
