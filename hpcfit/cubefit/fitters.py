"""The astropy fitters cubefit accepts, their keyword arguments, and the numeric fit_info each one reports.

The batched solver reproduces the algorithm of each least-squares fitter: scipy's trust-region-reflective
method for ``TRFLSQFitter`` (and ``DogBoxLSQFitter``, run as TRF), MINPACK-style Levenberg-Marquardt with
astropy's clipping of bounds for ``LevMarLSQFitter`` and ``LMLSQFitter``. ``solver: astropy`` runs the named
fitter itself, once per item, for exact parity and for the optimisation-based fitters.
"""

from __future__ import annotations

from typing import Any

from astropy.modeling import fitting

# fitter name -> numeric fit_info keys that can be stored as maps
FIT_INFO_KEYS: dict[str, tuple[str, ...]] = {
    "TRFLSQFitter": ("nfev", "njev", "cost", "optimality", "status"),
    "DogBoxLSQFitter": ("nfev", "njev", "cost", "optimality", "status"),
    "LMLSQFitter": ("nfev", "njev", "cost", "optimality", "status"),
    "LevMarLSQFitter": ("nfev", "ierr"),
    "SLSQPLSQFitter": ("numiter", "exit_mode", "final_func_val"),
    "SimplexLSQFitter": ("numiter", "exit_mode", "final_func_val"),
}
BATCHABLE_FITTERS = ("TRFLSQFitter", "DogBoxLSQFitter", "LMLSQFitter", "LevMarLSQFitter")
DEFAULT_FIT_INFO = ("nfev", "cost", "status")


def make_fitter(name: str, calc_uncertainties: bool) -> Any:
    cls = getattr(fitting, name)
    try:
        return cls(calc_uncertainties=calc_uncertainties)
    except TypeError:  # the optimisation-based fitters take no such argument
        return cls()


def call_kwargs(name: str, settings: dict[str, Any]) -> dict[str, Any]:
    """Keyword arguments for ``fitter(model, x, y, ...)`` from the validated fitter settings."""
    kwargs: dict[str, Any] = {"maxiter": settings["maxiter"], "acc": settings["acc"]}
    if name not in ("SLSQPLSQFitter", "SimplexLSQFitter"):
        kwargs["epsilon"] = settings["epsilon"]
        kwargs["estimate_jacobian"] = settings["estimate_jacobian"]
    return kwargs


def numeric_fit_info(fitter: Any, keys: tuple[str, ...] | list[str]) -> dict[str, float]:
    """The requested fit_info entries of the last fit as floats (NaN when absent)."""
    info = fitter.fit_info
    out = {}
    for key in keys:
        value = info.get(key) if isinstance(info, dict) else getattr(info, key, None)
        try:
            out[key] = float(value)
        except (TypeError, ValueError):
            out[key] = float("nan")
    return out
