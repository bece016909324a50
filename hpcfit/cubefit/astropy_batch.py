"""Adapter from a unitless astropy model to the batched solver: many spectra (or planes) fitted at once.

astropy models evaluate through a plain function of (inputs, parameters); given parameters shaped
(B, 1) against coordinates (n,) or (B, n) most of them broadcast to (B, n) model values, which is what
lets the batched solver evaluate a whole batch in one call. This module works out which parameters are
free, their initial values and bounds, evaluates the model (and its analytic derivatives where astropy
provides them, compound models included) for a batch, and maps results back to every parameter.

Whether a model really broadcasts is checked on a probe batch when the adapter is built; a model that
does not, or uses a feature the solver cannot reproduce (tied parameters, parameters with units, model
sets), raises :class:`NotBatchable` with the reason, and the caller fits it with astropy per item.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
from astropy.modeling import CompoundModel, Model

from hpcfit.cubefit.batched_lm import EPS, STATUS_CONVERGED, STATUS_FAILED, BatchResult, SolverOptions, Termination, solve_batch

#: scipy's least_squares status for each termination (what astropy's fit_info['status'] holds)
_SCIPY_STATUS = {t: int(t) for t in Termination if 0 <= t <= Termination.FTOL_XTOL}
#: MINPACK's info code (LevMarLSQFitter's fit_info['ierr']): 1 ftol, 2 xtol, 3 both, 4 gtol, 5 maxfev, 6-8
_MINPACK_IERR = {Termination.FTOL: 1, Termination.XTOL: 2, Termination.FTOL_XTOL: 3, Termination.GTOL: 4,
                 Termination.MAX_NFEV: 5, Termination.FTOL_TOO_SMALL: 6, Termination.XTOL_TOO_SMALL: 7,
                 Termination.GTOL_TOO_SMALL: 8}  # fmt: skip
_DERIVATIVE_OPS = ("+", "-", "*", "/")


@dataclass(frozen=True)
class FitterSemantics:
    """How one astropy fitter turns a model into a least-squares problem, as far as the solver is concerned."""

    method: str  # the solver's algorithm
    ftol: float
    gtol: float
    bounds_in_solver: bool  # bounds handed to the algorithm (least_squares' trf)...
    clip_objective: bool  # ...or enforced by clipping parameters inside the objective (use_min_max_bounds)
    clip_result: bool  # the returned parameters are clipped to the bounds too
    covariance_if_converged: bool  # leastsq gives no covariance for an unsuccessful fit


#: What each astropy fitter does (astropy.modeling.fitting, scipy.optimize); DogBox runs as TRF here.
FITTERS = {
    "TRFLSQFitter": FitterSemantics("trf", 1e-8, 1e-8, True, False, False, False),
    "DogBoxLSQFitter": FitterSemantics("trf", 1e-8, 1e-8, True, False, False, False),
    "LMLSQFitter": FitterSemantics("lm", 1e-8, 1e-8, False, True, False, False),
    "LevMarLSQFitter": FitterSemantics("lm", 1.49012e-8, 0.0, False, True, True, True),
}


def solver_options(fitter: str = "TRFLSQFitter", *, maxiter: int = 100, acc: float = 1e-7,
                   epsilon: float = float(np.sqrt(EPS)), **extra) -> SolverOptions:
    """SolverOptions reproducing ``fitter(model, ..., maxiter=, acc=, epsilon=)`` (astropy's keywords)."""
    sem = FITTERS[fitter]
    return SolverOptions(method=sem.method, max_nfev=maxiter, xtol=acc, ftol=sem.ftol, gtol=sem.gtol,
                         diff_step=epsilon, **extra)


class NotBatchable(Exception):
    """The batched solver cannot fit this model; ``reason`` says why (fit it per item with astropy)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


Coords = Sequence[np.ndarray]


def _as_shape(values, shape: tuple[int, int]) -> np.ndarray:
    """Float array of the given shape (a broadcast view when the model returned something smaller)."""
    values = np.asarray(values, dtype=float)
    return values if values.shape == shape else np.broadcast_to(values, shape)


def _select(coords: Coords, rows: np.ndarray | None) -> tuple[np.ndarray, ...]:
    """Coordinates for the given batch rows: shared (n,) arrays pass through, (B, n) ones are sliced."""
    if rows is None:
        return tuple(coords)
    return tuple(c if c.ndim == 1 else c[rows] for c in coords)


def _derivatives(model: Model, inputs, params, shape, need_value: bool):
    """d(model)/d(parameter) for every parameter, each broadcast to ``shape``, and the model value if asked.

    Leaves use their ``fit_deriv``; compound models combine their children with the sum, product and
    quotient rules (values are computed only where a product or quotient needs them). Returns None when
    some part has no analytic derivative.
    """
    if isinstance(model, CompoundModel):
        op = model.op
        if op not in _DERIVATIVE_OPS:
            return None
        n_left = len(model.left.param_names)
        child_value = need_value or op in ("*", "/")
        left = _derivatives(model.left, inputs, params[:n_left], shape, child_value)
        right = _derivatives(model.right, inputs, params[n_left:], shape, child_value)
        if left is None or right is None:
            return None
        (lv, ld), (rv, rd) = left, right
        if op == "+":
            return (lv + rv if need_value else None), ld + rd
        if op == "-":
            return (lv - rv if need_value else None), ld + [-d for d in rd]
        if op == "*":
            return lv * rv, [d * rv for d in ld] + [lv * d for d in rd]
        return lv / rv, [d / rv for d in ld] + [-lv * d / rv**2 for d in rd]
    if model.fit_deriv is None:
        return None
    derivs = model.fit_deriv(*inputs, *params)
    if not model.col_fit_deriv:  # one row per sample: put the parameter axis first
        derivs = np.moveaxis(np.asarray(derivs, dtype=float), -1, 0)
    derivs = [_as_shape(d, shape) for d in derivs]
    if len(derivs) != len(params):
        raise ValueError(f"fit_deriv gave {len(derivs)} derivatives for {len(params)} parameters")
    value = _as_shape(model.evaluate(*inputs, *params), shape) if need_value else None
    return value, derivs


class BatchModel:
    """A unitless astropy model prepared for batched fitting.

    ``coords`` (optional) are representative model inputs for the probe; without them the probe
    uses a small grid scaled to the parameter values.
    """

    def __init__(self, model: Model, coords: Coords | None = None):
        self.model = model
        self._check_supported(model)
        self.param_names: tuple[str, ...] = tuple(model.param_names)
        self.values = np.array([float(getattr(model, n).value) for n in self.param_names])
        self.free_mask = np.array([not model.fixed[n] for n in self.param_names])
        self.free_names = tuple(n for n, f in zip(self.param_names, self.free_mask) if f)
        bounds = [model.bounds[n] for n in self.free_names]
        self.lower = np.array([-np.inf if lo is None else float(lo) for lo, _ in bounds])
        self.upper = np.array([np.inf if hi is None else float(hi) for _, hi in bounds])
        if np.any(self.lower >= self.upper):
            bad = [n for n, lo, hi in zip(self.free_names, self.lower, self.upper) if lo >= hi]
            raise NotBatchable(f"lower bound not below upper bound for {', '.join(bad)}")
        self.n_inputs = model.n_inputs
        #: "fit_deriv" or "finite differences (<why>)"
        self.derivative_source = "fit_deriv"
        self._analytic = True
        self._probe(coords)

    # --- checks ------------------------------------------------------------------------------------------
    @staticmethod
    def _check_supported(model: Model) -> None:
        if model.n_inputs not in (1, 2):
            raise NotBatchable(f"the model has {model.n_inputs} inputs (1 or 2 are supported)")
        if model.n_outputs != 1:
            raise NotBatchable(f"the model has {model.n_outputs} outputs (1 is supported)")
        if len(model) != 1:
            raise NotBatchable("model sets (n_models > 1) are not supported")
        if not model.param_names:
            raise NotBatchable("the model has no parameters to fit")
        for name in model.param_names:
            par = getattr(model, name)
            if model.tied[name] is not False:
                raise NotBatchable(f"parameter '{name}' is tied")
            if par.unit is not None:
                raise NotBatchable(f"parameter '{name}' has a unit ({par.unit}); give the adapter a unitless model")
            if np.size(par.value) != 1:
                raise NotBatchable(f"parameter '{name}' is not a scalar")
        if all(model.fixed[n] for n in model.param_names):
            raise NotBatchable("every parameter is fixed")

    def _probe_coords(self) -> tuple[np.ndarray, ...]:
        scale = max(1.0, float(np.max(np.abs(self.values))))
        if self.n_inputs == 1:
            return (np.linspace(-scale, scale, 17) + 0.01 * scale,)
        grid = np.linspace(-scale, scale, 7) + 0.01 * scale
        gx, gy = np.meshgrid(grid, 0.9 * grid)
        return gx.ravel(), gy.ravel()

    def _probe(self, coords: Coords | None) -> None:
        """Check on three distinct parameter sets that batched evaluation equals one-at-a-time evaluation,
        and that the analytic derivatives broadcast and agree with finite differences."""
        if coords is None:
            coords = self._probe_coords()
        coords = tuple(np.asarray(c, dtype=float) for c in coords)
        coords = tuple(c if c.ndim == 1 else c[:3] for c in coords)
        n = coords[0].shape[-1]
        batch = min([3] + [c.shape[0] for c in coords if c.ndim == 2])
        free0 = self.values[self.free_mask]
        factors = 1.0 + 1e-2 * np.arange(batch)[:, None] * (1 + np.arange(free0.size))[None, :]
        params = np.where(free0 == 0, 1e-2 * np.arange(batch)[:, None], free0 * factors)
        rows = np.arange(batch)
        try:
            with np.errstate(all="ignore"):
                batched = self.evaluate(coords, params, rows)
                single = np.stack([self._evaluate_one(coords, params, i) for i in range(batch)])
        except Exception as exc:  # noqa: BLE001 - any failure means "fit it per item"
            raise NotBatchable(
                f"the model's evaluate does not broadcast over a batch ({type(exc).__name__}: {exc})"
            ) from exc
        if batched.shape != (batch, n) or not np.allclose(batched, single, rtol=1e-12, atol=0, equal_nan=True):
            raise NotBatchable("the model's evaluate does not broadcast over a batch of parameter sets")
        self._analytic, self.derivative_source = self._check_derivatives(coords, params, rows)

    def _check_derivatives(self, coords, params, rows) -> tuple[bool, str]:
        try:
            with np.errstate(all="ignore"):
                analytic = self.jacobian(coords, params, rows)
        except Exception as exc:  # noqa: BLE001 - fall back to finite differences
            return False, f"finite differences (fit_deriv does not broadcast: {type(exc).__name__}: {exc})"
        if analytic is None:
            return False, "finite differences (no analytic derivative for every part of the model)"
        numeric = np.empty_like(analytic)
        with np.errstate(all="ignore"):
            for j in range(params.shape[1]):  # central differences: accurate enough to judge fit_deriv
                h = 1e-6 * np.maximum(np.abs(params[:, j]), 1e-3)
                up, down = params.copy(), params.copy()
                up[:, j] += h
                down[:, j] -= h
                numeric[:, j] = (self.evaluate(coords, up, rows) - self.evaluate(coords, down, rows)) / (2 * h[:, None])
        # Compare where both are finite (the probe grid may leave the model's domain), and tolerate a few
        # mismatches at kinks (broken power laws); a wrong or non-broadcasting fit_deriv misses everywhere.
        both = np.isfinite(analytic) & np.isfinite(numeric)
        scale = np.nanmax(np.abs(np.where(both, numeric, np.nan)), axis=2, keepdims=True)
        scale = np.where(np.isfinite(scale) & (scale > 0), scale, 1.0)
        miss = np.abs(analytic - numeric) > 1e-4 * scale
        if not both.any() or np.count_nonzero(miss & both) > 0.05 * np.count_nonzero(both):
            return False, "finite differences (fit_deriv disagrees with finite differences on a probe batch)"
        return True, "fit_deriv"

    # --- evaluation --------------------------------------------------------------------------------------
    def _all_params(self, free: np.ndarray, fixed: Mapping[str, np.ndarray] | None, rows) -> list[np.ndarray]:
        """Every model parameter for a batch: free ones as (B', 1) columns, fixed ones as scalars or (B', 1)."""
        out, j = [], 0
        for name, is_free, value in zip(self.param_names, self.free_mask, self.values):
            if is_free:
                out.append(free[:, j : j + 1])
                j += 1
            elif fixed is not None and name in fixed and np.ndim(fixed[name]) == 1:
                col = np.asarray(fixed[name], dtype=float)
                out.append((col if rows is None else col[rows])[:, None])
            else:
                out.append(np.asarray(value if fixed is None else fixed.get(name, value), dtype=float))
        return out

    def _evaluate_one(self, coords, free, i):
        """One parameter set evaluated the way astropy's fitters do it (scalar parameters)."""
        params = [np.float64(np.ravel(v)[0]) for v in self._all_params(free[i : i + 1], None, None)]
        inputs = tuple(c if c.ndim == 1 else c[i] for c in coords)
        return np.broadcast_to(np.asarray(self.model.evaluate(*inputs, *params), dtype=float), inputs[0].shape)

    def evaluate(self, coords: Coords, free_params: np.ndarray, rows: np.ndarray | None = None,
                 fixed: Mapping[str, np.ndarray] | None = None) -> np.ndarray:
        """Model values (B', n) for free parameters (B', p) of the given batch rows."""
        inputs = _select(coords, rows)
        params = self._all_params(free_params, fixed, rows)
        shape = (free_params.shape[0], inputs[0].shape[-1])
        return _as_shape(self.model.evaluate(*inputs, *params), shape)

    def jacobian(self, coords: Coords, free_params: np.ndarray, rows: np.ndarray | None = None,
                 fixed: Mapping[str, np.ndarray] | None = None) -> np.ndarray | None:
        """d(model)/d(free parameter), (B', p, n), from astropy's fit_deriv; None if the model has none."""
        columns = self.jacobian_columns(coords, free_params, rows, fixed)
        return None if columns is None else np.stack(columns, axis=1)

    def jacobian_columns(self, coords: Coords, free_params: np.ndarray, rows: np.ndarray | None = None,
                         fixed: Mapping[str, np.ndarray] | None = None) -> list[np.ndarray] | None:
        """As :meth:`jacobian`, one (B', n) array per free parameter (the form the solver works with)."""
        inputs = _select(coords, rows)
        params = self._all_params(free_params, fixed, rows)
        shape = (free_params.shape[0], inputs[0].shape[-1])
        found = _derivatives(self.model, inputs, params, shape, need_value=False)
        if found is None:
            return None
        return [d for d, free in zip(found[1], self.free_mask) if free]

    # --- batch set-up and results ------------------------------------------------------------------------
    def initial_values(self, batch: int, overrides: Mapping[str, np.ndarray] | None = None) -> np.ndarray:
        """Initial free parameters (B, p): the model's values, or per-item values from ``overrides``."""
        p0 = np.tile(self.values[self.free_mask], (batch, 1))
        for j, name in enumerate(self.free_names):
            if overrides is not None and name in overrides:
                p0[:, j] = np.broadcast_to(np.asarray(overrides[name], dtype=float), (batch,))
        return p0

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Lower and upper bounds (p,) of the free parameters, +-inf where unbounded."""
        return self.lower.copy(), self.upper.copy()

    def parameters(self, free_params: np.ndarray,
                   fixed: Mapping[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
        """name -> (B,) values for every model parameter, fixed ones included."""
        batch = free_params.shape[0]
        cols = self._all_params(free_params, fixed, None)
        return {name: np.broadcast_to(np.asarray(c, dtype=float).reshape(-1), (batch,)).copy()
                for name, c in zip(self.param_names, cols)}

    def fit(self, coords: Coords, y: np.ndarray, weights: np.ndarray | None = None, *,
            fitter: str = "TRFLSQFitter", initial: Mapping[str, np.ndarray] | None = None,
            options: SolverOptions | None = None, absolute_weights: bool = True,
            estimate_jacobian: bool = False) -> BatchFit:
        """Fit every row of ``y`` (B, n) as astropy's ``fitter`` would, one row at a time.

        ``coords``: one array per model input, (n,) shared or (B, n); ``weights`` as in astropy (1/sigma;
        0 masks a sample); ``initial``: per-item values (B,) for any parameter, free or fixed;
        ``options`` give max_nfev (maxiter), xtol (acc), diff_step (epsilon), covariance and non-finite
        handling, while the algorithm, ftol and gtol follow ``fitter``; ``absolute_weights=False`` when
        the weights only mask (astropy then scales the covariance by the reduced chi-square);
        ``estimate_jacobian`` forces finite differences.
        """
        if fitter not in FITTERS:
            raise ValueError(f"no batched equivalent of {fitter!r} (known: {', '.join(FITTERS)})")
        sem = FITTERS[fitter]
        # the algorithm and its ftol / gtol belong to the fitter (astropy exposes neither)
        options = replace(options or SolverOptions(), method=sem.method, ftol=sem.ftol, gtol=sem.gtol)
        y = np.asarray(y, dtype=float)
        if y.ndim != 2:
            raise ValueError(f"y must be (B, n), got shape {y.shape}")
        batch, n = y.shape
        coords = tuple(np.asarray(c, dtype=float) for c in coords)
        if len(coords) != self.n_inputs:
            raise ValueError(f"the model takes {self.n_inputs} input(s), got {len(coords)} coordinate arrays")
        for c in coords:
            if c.shape not in ((n,), (batch, n)):
                raise ValueError(f"coordinates must be ({n},) or ({batch}, {n}), got {c.shape}")
        fixed = {name: np.asarray(initial[name], dtype=float) for name, free in zip(self.param_names, self.free_mask)
                 if not free and initial is not None and name in initial} or None
        p0 = self.initial_values(batch, initial)
        clip = sem.clip_objective and bool(np.isfinite(self.lower).any() or np.isfinite(self.upper).any())
        # astropy's derivative wrapper sees clipped parameters only when the model has fixed ones
        clip_jac = clip and not self.free_mask.all()

        def model_fn(params, rows):
            return self.evaluate(coords, self.clip(params) if clip else params, rows, fixed)

        def jac_fn(params, rows):
            return self.jacobian_columns(coords, self.clip(params) if clip_jac else params, rows, fixed)

        analytic = self._analytic and not estimate_jacobian
        lower, upper = (self.lower, self.upper) if sem.bounds_in_solver else (None, None)
        result = solve_batch(model_fn, jac_fn if analytic else None, y, weights, p0, lower, upper, options,
                             absolute_weights=absolute_weights)
        if sem.covariance_if_converged and result.covariance is not None:
            result.covariance[result.status != STATUS_CONVERGED] = np.nan
        return BatchFit(self, result, fixed, clip_result=sem.clip_result)

    def clip(self, free_params: np.ndarray) -> np.ndarray:
        """Free parameters clipped to their bounds (astropy's ``use_min_max_bounds``)."""
        return np.fmin(np.fmax(free_params, self.lower), self.upper)


@dataclass
class BatchFit:
    """Result of :meth:`BatchModel.fit`, laid out over every model parameter."""

    model: BatchModel
    result: BatchResult  # the solver's own output (free parameters as the algorithm left them)
    fixed: Mapping[str, np.ndarray] | None = None
    clip_result: bool = False  # LevMarLSQFitter reports parameters clipped to their bounds

    @property
    def params(self) -> np.ndarray:
        """(B, P) all parameters in model order (fixed ones at their values); NaN rows for failed fits."""
        free = self.model.clip(self.result.params) if self.clip_result else self.result.params
        values = self.model.parameters(free, self.fixed)
        out = np.stack([values[n] for n in self.model.param_names], axis=1)
        out[self.result.status == STATUS_FAILED] = np.nan
        return out

    @property
    def uncertainties(self) -> np.ndarray:
        """(B, P) 1-sigma from the covariance diagonal; NaN for fixed parameters or without covariance."""
        out = np.full((self.result.params.shape[0], len(self.model.param_names)), np.nan)
        if self.result.covariance is not None:
            var = np.diagonal(self.result.covariance, axis1=1, axis2=2)
            out[:, self.model.free_mask] = np.sqrt(np.clip(var, 0.0, None))
        return out

    @property
    def status(self) -> np.ndarray:
        return self.result.status

    def message(self, index: int) -> str:
        return self.result.message(index)

    def parameters(self) -> dict[str, np.ndarray]:
        """name -> (B,) fitted values for every model parameter."""
        return dict(zip(self.model.param_names, self.params.T))

    def fit_info(self, key: str, fitter_name: str = "TRFLSQFitter") -> np.ndarray:
        """(B,) numeric fit_info entry as astropy's fitter would report it (NaN where it has none)."""
        res = self.result
        failed = res.status == STATUS_FAILED
        if key in ("nfev", "njev", "cost", "optimality"):
            values = getattr(res, key).astype(float)
        elif key == "status":
            values = np.array([_SCIPY_STATUS.get(int(c), np.nan) for c in res.code], dtype=float)
        elif key == "ierr":
            values = np.array([_MINPACK_IERR.get(int(c), np.nan) for c in res.code], dtype=float)
        else:
            return np.full(res.params.shape[0], np.nan)
        return np.where(failed, np.nan, values)
