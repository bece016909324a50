"""Fit one chunk of spectra (or planes): the batched solver by default, astropy's fitter per item on request.

Input: the chunk's data (B, n) flattened over the fitting axes, optional weights (1/sigma) and a bad-sample
mask, the model inputs (shared (n,) or per spectrum (B, n)) and optional per-fit initial values (astropy
parameter name -> (B,), from maps of initial values). Output: parameter values for every model
parameter, 1-sigma uncertainties from the covariance, a status per fit (0 converged, 1 converged with a warning,
2 failed) with a message for every non-zero status, and the numeric fit_info entries asked for.

A failed fit is data (NaN parameters + status 2 + message), never an exception. User weights are never
modified: masking builds new arrays.
"""

from __future__ import annotations

import traceback
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hpcfit.cubefit.fitters import BATCHABLE_FITTERS, call_kwargs, make_fitter, numeric_fit_info, requested_fit_info
from hpcfit.cubefit.model_spec import BuiltModel

STATUS_CONVERGED, STATUS_WARNING, STATUS_FAILED = 0, 1, 2


@dataclass
class FitSetup:
    """Everything a rank needs to fit chunks (built once per rank in the job's setup)."""

    built: BuiltModel
    fitter_name: str
    fitter_settings: dict[str, Any]
    solver: str                      # "batched" or "astropy" (what the user asked for)
    fit_info_keys: list[str]
    uncertainties: bool
    absolute_weights: bool           # user weights given: covariances are absolute (astropy's rule)
    non_finite: str                  # "mask" or "fail"
    batch_model: Any = None          # the batched adapter when the model is batchable
    fallback_reason: str | None = None

    @property
    def uses_batched(self) -> bool:
        return self.solver == "batched" and self.batch_model is not None


@dataclass
class ChunkResult:
    params: np.ndarray                 # (B, P) all parameters, model order
    uncertainties: np.ndarray          # (B, P), NaN for fixed/tied or unavailable
    status: np.ndarray                 # (B,) int8
    fit_info: dict[str, np.ndarray]    # key -> (B,)
    messages: dict[int, str] = field(default_factory=dict)  # row -> why status != 0 (or traceback)
    covariance: np.ndarray | None = None  # (B, F, F) over the free parameters, as fit_info['param_cov']; NaN if none


def prepare_setup(built: BuiltModel, *, fitter_name: str, fitter_settings: dict[str, Any], solver: str,
                  fit_info_keys: list[str], uncertainties: bool, absolute_weights: bool, non_finite: str,
                  n_inputs_shape: tuple[int, ...] | None = None) -> FitSetup:
    """Decide between the batched solver and the per-item fitter for this model and fitter."""
    keys = requested_fit_info(fitter_name, fitter_settings, list(fit_info_keys))
    setup = FitSetup(built, fitter_name, fitter_settings, solver, keys, uncertainties, absolute_weights, non_finite)
    if solver != "batched":
        return setup
    if fitter_name not in BATCHABLE_FITTERS:
        setup.fallback_reason = (f"{fitter_name} is outside the non-linear least-squares fitters the batched solver "
                                 f"reproduces ({', '.join(BATCHABLE_FITTERS)}), so it runs per spectrum")
        return setup
    from hpcfit.cubefit.astropy_batch import BatchModel, NotBatchable

    try:
        setup.batch_model = BatchModel(built.model)
    except NotBatchable as exc:
        setup.fallback_reason = str(exc)
    return setup


def valid_samples(y: np.ndarray, weights: np.ndarray | None, mask: np.ndarray | None) -> np.ndarray:
    """Boolean (B, n): finite data (and weights), not masked, non-zero weight."""
    valid = np.isfinite(y)
    if weights is not None:
        valid &= np.isfinite(weights) & (weights != 0)
    if mask is not None:
        valid &= ~mask
    return valid


def fit_chunk(setup: FitSetup, y: np.ndarray, weights: np.ndarray | None, mask: np.ndarray | None,
              coords: tuple[np.ndarray, ...], initial: dict[str, np.ndarray] | None = None) -> ChunkResult:
    """Fit every row of ``y`` (B, n); ``initial``: astropy parameter name -> (B,) starting values per fit."""
    batch, n_par = y.shape[0], len(setup.built.parameters)
    valid = valid_samples(y, weights, mask)
    result = ChunkResult(
        params=np.full((batch, n_par), np.nan),
        uncertainties=np.full((batch, n_par), np.nan),
        status=np.full(batch, STATUS_FAILED, dtype=np.int8),
        fit_info={key: np.full(batch, np.nan) for key in setup.fit_info_keys},
    )
    todo = valid.any(axis=1)
    for row in np.flatnonzero(~todo):
        result.messages[int(row)] = "no valid samples (all masked or non-finite)"
    if setup.non_finite == "fail":
        bad = todo & ~np.isfinite(y).all(axis=1)
        for row in np.flatnonzero(bad):
            result.messages[int(row)] = "non-finite data values (cubefit.non_finite: fail)"
        todo &= ~bad
    rows = np.flatnonzero(todo)
    if rows.size:
        if setup.uses_batched:
            _fit_batched(setup, y, weights, valid, coords, rows, result, initial)
        else:
            _fit_each(setup, y, weights, valid, coords, rows, result, initial)
    return result


def _rows_of(coords: tuple[np.ndarray, ...], rows: np.ndarray) -> tuple[np.ndarray, ...]:
    return tuple(c if c.ndim == 1 else c[rows] for c in coords)


def _fit_batched(setup: FitSetup, y: np.ndarray, weights: np.ndarray | None, valid: np.ndarray,
                 coords: tuple[np.ndarray, ...], rows: np.ndarray, result: ChunkResult,
                 initial: dict[str, np.ndarray] | None = None) -> None:
    from hpcfit.cubefit.astropy_batch import solver_options

    settings = setup.fitter_settings
    options = solver_options(setup.fitter_name, maxiter=settings["maxiter"], acc=settings["acc"],
                             epsilon=settings["epsilon"], compute_covariance=setup.uncertainties)
    w = np.where(valid[rows], 1.0 if weights is None else np.where(valid[rows], weights[rows], 0.0), 0.0)
    data = np.where(valid[rows], y[rows], 0.0)
    start = None if not initial else {name: np.asarray(values, dtype=float)[rows] for name, values in initial.items()}
    fitted = setup.batch_model.fit(_rows_of(coords, rows), data, w, fitter=setup.fitter_name, options=options,
                                   initial=start,
                                   absolute_weights=setup.absolute_weights,
                                   estimate_jacobian=settings["estimate_jacobian"])
    result.params[rows] = fitted.params
    result.uncertainties[rows] = fitted.uncertainties
    result.status[rows] = fitted.status
    if fitted.result.covariance is not None:
        n_free = fitted.result.covariance.shape[1]
        result.covariance = np.full((y.shape[0], n_free, n_free), np.nan)
        result.covariance[rows] = fitted.result.covariance
    for key in setup.fit_info_keys:
        result.fit_info[key][rows] = fitted.fit_info(key, setup.fitter_name)
    for k in np.flatnonzero(fitted.status != STATUS_CONVERGED):
        result.messages[int(rows[k])] = fitted.message(int(k))


def _fit_each(setup: FitSetup, y: np.ndarray, weights: np.ndarray | None, valid: np.ndarray,
              coords: tuple[np.ndarray, ...], rows: np.ndarray, result: ChunkResult,
              initial: dict[str, np.ndarray] | None = None) -> None:
    """astropy's fitter on one spectrum at a time: exact parity with astropy, any model and fitter."""
    model = setup.built.model
    if initial:
        model = model.copy()  # its starting values change per fit; the shared template stays as built
    fitter = make_fitter(setup.fitter_name, setup.uncertainties, setup.fitter_settings)
    kwargs = call_kwargs(setup.fitter_name, setup.fitter_settings)
    free = np.array([not (p.fixed or p.tied) for p in setup.built.parameters])
    for row in rows:
        keep = valid[row]
        inputs = tuple((c if c.ndim == 1 else c[row])[keep] for c in coords)
        w = None if weights is None else weights[row][keep]
        for name, values in (initial or {}).items():
            getattr(model, name).value = float(values[row])
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                fitted = fitter(model, *inputs, y[row][keep], weights=w, **kwargs)
            except Exception:  # noqa: BLE001 - a failed fit is a result, not a crash
                result.messages[int(row)] = traceback.format_exc()
                continue
        if isinstance(fitted, tuple):  # FittingWithOutlierRemoval: (model, mask of the samples it clipped)
            fitted = fitted[0]
        params = np.asarray(fitted.parameters, dtype=float)
        if not np.all(np.isfinite(params)):
            result.messages[int(row)] = "the fit returned non-finite parameters"
            continue
        result.params[row] = params
        result.status[row] = STATUS_WARNING if caught else STATUS_CONVERGED
        if caught:
            result.messages[int(row)] = "\n".join(f"{w.category.__name__}: {w.message}" for w in caught)
        info = numeric_fit_info(fitter, setup.fit_info_keys)
        for key, value in info.items():
            result.fit_info[key][row] = value
        cov = fitter.fit_info.get("param_cov") if isinstance(fitter.fit_info, dict) else None
        if setup.uncertainties and cov is not None:
            sigma = np.sqrt(np.clip(np.diag(np.asarray(cov, dtype=float)), 0, None))
            if sigma.size == free.sum():
                result.uncertainties[row, free] = sigma
                if result.covariance is None:
                    result.covariance = np.full((y.shape[0], sigma.size, sigma.size), np.nan)
                result.covariance[row] = np.asarray(cov, dtype=float)
