"""The astropy fitters cubefit accepts, their keyword arguments, and the numeric fit_info each one reports.

The batched solver reproduces the algorithm of each least-squares fitter: scipy's trust-region-reflective
method for ``TRFLSQFitter`` (and ``DogBoxLSQFitter``, run as TRF), MINPACK-style Levenberg-Marquardt with
astropy's clipping of bounds for ``LevMarLSQFitter`` and ``LMLSQFitter``. ``solver: astropy`` runs the named
fitter itself, once per item, for exact parity and for the fitters outside that family: the optimisation-based
ones (``SLSQPLSQFitter``, ``SimplexLSQFitter``), ``LinearLSQFitter`` and ``FittingWithOutlierRemoval`` (which
wraps one of the others with an outlier function such as ``sigma_clip``); those are chosen automatically.
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
    "LinearLSQFitter": ("rank",),
}
OUTLIER_REMOVAL = "FittingWithOutlierRemoval"
BATCHABLE_FITTERS = ("TRFLSQFitter", "DogBoxLSQFitter", "LMLSQFitter", "LevMarLSQFitter")
DEFAULT_FIT_INFO = ("nfev", "cost", "status")


def fit_info_keys(name: str, settings: dict[str, Any] | None = None) -> tuple[str, ...]:
    """The numeric fit_info keys a fitter reports (FittingWithOutlierRemoval: ``niter`` and its inner fitter's)."""
    if name == OUTLIER_REMOVAL:
        inner = (settings or {}).get("fitter", "TRFLSQFitter")
        return ("niter",) + FIT_INFO_KEYS.get(inner, ())
    return FIT_INFO_KEYS.get(name, ())


def requested_fit_info(name: str, settings: dict[str, Any] | None, keys: list[str]) -> list[str]:
    """The fit_info keys to store: those asked for; the default list is cut to what this fitter reports."""
    if list(keys) == list(DEFAULT_FIT_INFO):
        allowed = fit_info_keys(name, settings)
        return [k for k in keys if k in allowed]
    return list(keys)


def make_fitter(name: str, calc_uncertainties: bool, settings: dict[str, Any] | None = None) -> Any:
    """The astropy fitter named ``name``; FittingWithOutlierRemoval wraps ``settings['fitter']`` with
    ``settings['outlier']`` (astropy.stats), ``niter`` and ``sigma``."""
    if name == OUTLIER_REMOVAL:
        from astropy import stats

        settings = settings or {}
        inner = make_fitter(settings.get("fitter", "TRFLSQFitter"), calc_uncertainties)
        outlier = getattr(stats, settings.get("outlier", "sigma_clip"))
        return fitting.FittingWithOutlierRemoval(inner, outlier, niter=int(settings.get("niter", 3)),
                                                 sigma=float(settings.get("sigma", 3.0)))
    cls = getattr(fitting, name)
    try:
        return cls(calc_uncertainties=calc_uncertainties)
    except TypeError:  # the optimisation-based fitters take no such argument
        return cls()


def call_kwargs(name: str, settings: dict[str, Any]) -> dict[str, Any]:
    """Keyword arguments for ``fitter(model, x, y, ...)`` from the validated fitter settings."""
    if name == OUTLIER_REMOVAL:  # passed on to the wrapped fitter
        return call_kwargs(settings.get("fitter", "TRFLSQFitter"), settings)
    if name == "LinearLSQFitter":  # a direct solve: no iterations, tolerance or step
        return {}
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
