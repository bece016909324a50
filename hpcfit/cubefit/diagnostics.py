"""Per-fit diagnostics on disk, as astropy's parallel_fit_dask writes them.

``diagnostics``: ``error`` (failed fits), ``error+warn`` (failed fits and fits with warnings) or ``all``.
Each reported fit gets a folder named after its indices along the iterating axes (zero-padded, joined by
``_``) holding ``error.log`` or ``warn.log`` (the message or traceback), ``fit.log`` (parameters, status, the
fit_info kept) and, when matplotlib is installed and the model is 1-D, ``fit.png`` with the data, the initial
model and the fitted model. Each rank writes the folders of its own fits: no communication.
"""

from __future__ import annotations

from math import ceil, log10
from pathlib import Path
from typing import Any

import numpy as np

_LEVELS = {"error": {2}, "error+warn": {1, 2}, "all": {0, 1, 2}}


def selected_rows(policy: str, status: np.ndarray) -> np.ndarray:
    """Rows of a chunk whose fits are reported under ``policy``."""
    if policy not in _LEVELS:
        return np.zeros(0, dtype=int)
    return np.flatnonzero(np.isin(status, list(_LEVELS[policy])))


def folder_name(index: tuple[int, ...], shape: tuple[int, ...]) -> str:
    width = max(1, ceil(log10(max(max(shape, default=1), 2))))
    return "_".join(f"{i:0{width}d}" for i in index)


def write_fit_diagnostics(base: Path, index: tuple[int, ...], iter_shape: tuple[int, ...], *, status: int,
                          message: str, names: list[str], params: np.ndarray, units: list[str],
                          fit_info: dict[str, float], plot: dict[str, Any] | None) -> None:
    folder = base / folder_name(index, iter_shape)
    folder.mkdir(parents=True, exist_ok=True)
    if status == 2:
        (folder / "error.log").write_text(message.rstrip() + "\n")
    elif status == 1:
        (folder / "warn.log").write_text(message.rstrip() + "\n")
    lines = [f"index: {index}", f"status: {status} ({['converged', 'converged with warning', 'failed'][status]})"]
    lines += [f"{n} = {v:.10g} {u}".rstrip() for n, v, u in zip(names, params, units)]
    lines += [f"fit_info.{k} = {v:g}" for k, v in fit_info.items()]
    (folder / "fit.log").write_text("\n".join(lines) + "\n")
    if plot is not None:
        _plot(folder / "fit.png", **plot)


def _plot(path: Path, x: np.ndarray, y: np.ndarray, valid: np.ndarray, initial: np.ndarray | None,
          fitted: np.ndarray | None, xlabel: str, title: str) -> None:
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        return
    # A Figure on its own Agg canvas, not pyplot: a Python caller's backend and open figures stay as they were.
    fig = Figure(figsize=(6, 4))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    ax.plot(x[valid], y[valid], ".", color="k", label="data")
    if (~valid).any():
        ax.plot(x[~valid], np.where(np.isfinite(y[~valid]), y[~valid], np.nan), "x", color="0.6", label="masked")
    if initial is not None:
        ax.plot(x, initial, "--", color="tab:blue", label="initial model")
    if fitted is not None and np.all(np.isfinite(fitted)):
        ax.plot(x, fitted, "-", color="tab:red", label="fitted model")
    ax.set_xlabel(xlabel)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=80)


def write_chunk_diagnostics(base: Path, policy: str, setup: Any, world: Any, result: Any, inputs: dict[str, Any], *,
                            plots: bool = True, callback: Any = None) -> None:
    """The diagnostics folders of one fitted chunk (``rows.fit_range``'s result and inputs), for the fits selected
    by ``policy``; ``callback(folder, row)`` (hpcfit.parallel_fit's ``diagnostics_callable``) runs after each."""
    from hpcfit.cubefit.fit_chunk import valid_samples

    rows = selected_rows(policy, result.status)
    if rows.size == 0:
        return
    y, weights, mask, coords = inputs["y"], inputs["weights"], inputs["mask"], inputs["coords"]
    iter_index = inputs["iter_index"]
    iter_shape = tuple(world.shape[i] for i in world.iterating_axes)
    valid = valid_samples(y, weights, mask)
    model = setup.built.model
    plot_ok = plots and len(coords) == 1
    for row in rows:
        plot = None
        if plot_ok:
            x = coords[0] if coords[0].ndim == 1 else coords[0][row]
            fitted = None
            if np.all(np.isfinite(result.params[row])):
                fitted = model.evaluate(x, *[np.array([v]) for v in result.params[row]])
            plot = dict(x=x, y=y[row], valid=valid[row], initial=model(x), fitted=fitted,
                        xlabel=f"{world.fitting_names[0]} [{world.fitting_units[0] or 'pixel'}]",
                        title=f"fit {tuple(int(i) for i in iter_index[row])}: status {int(result.status[row])}")
        index = tuple(int(i) for i in iter_index[row])
        write_fit_diagnostics(
            base, index, iter_shape, status=int(result.status[row]), message=result.messages.get(int(row), ""),
            names=setup.built.names, params=result.params[row], units=[p.unit for p in setup.built.parameters],
            fit_info={k: float(v[row]) for k, v in result.fit_info.items()}, plot=plot)
        if callback is not None:
            callback(base / folder_name(index, iter_shape), int(row))
