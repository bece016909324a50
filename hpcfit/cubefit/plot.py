"""Parameter maps of a cubefit output: one panel per fitted parameter, plus the fit status map.

When the output stores the maps' WCS (``cubefit_wcs``: the cube's celestial WCS), the panels are WCSAxes with
RA/Dec (or whatever the WCS names) ticks; otherwise pixel images. The figure is a matplotlib ``Figure`` on its own
Agg canvas, never pyplot, so drawing from a notebook or a script leaves the caller's backend and figures alone.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def maps_figure(result: Any, *, parameters: list[str] | None = None) -> Any:
    """The figure of a :class:`hpcfit.cubefit.result.CubefitResult`'s parameter maps (2-D iterating grids) and
    status, on the sky when the file has a WCS. Returns a matplotlib ``Figure`` (displayed inline by Jupyter;
    ``fig.savefig(...)`` to write it)."""
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    path = result.path
    every = result.maps
    names = parameters or list(every)
    unknown = [n for n in names if n not in every]
    if unknown:
        raise ValueError(f"no parameter {', '.join(unknown)} in {path} (parameters: {', '.join(every)})")
    maps = {name: every[name] for name in names}
    status = result.status
    if status.ndim != 2:
        raise ValueError("parameter maps are not 2-D: nothing to draw as images")
    wcs = result.wcs
    if wcs is not None and wcs.pixel_n_dim != 2:
        wcs = None
    title = f"{Path(path).name}: {result.attrs.get('cubefit_model', '')}"
    panels = len(maps) + 1
    fig = Figure(figsize=(3.6 * panels, 3.6), layout="constrained")
    FigureCanvasAgg(fig)
    axes = [fig.add_subplot(1, panels, k + 1, projection=wcs) for k in range(panels)]
    for ax, (name, q) in zip(axes, maps.items()):
        values = q.value
        finite = values[np.isfinite(values)]
        low, high = (np.percentile(finite, [2, 98]) if finite.size else (0, 1))
        image = ax.imshow(values, origin="lower", vmin=low, vmax=high, cmap="viridis")
        unit = q.unit.to_string()
        ax.set_title(f"{name} [{unit}]" if unit else name, fontsize=10)
        fig.colorbar(image, ax=ax, shrink=0.8)
    image = axes[-1].imshow(status, origin="lower", vmin=0, vmax=2, cmap=colormaps["RdYlGn_r"].resampled(3))
    axes[-1].set_title("status (0 ok, 1 warn, 2 failed)", fontsize=10)
    fig.colorbar(image, ax=axes[-1], shrink=0.8, ticks=[0, 1, 2])
    for k, ax in enumerate(axes):
        if wcs is None:
            ax.set_xticks([])
            ax.set_yticks([])
            continue
        lon, lat = ax.coords[0], ax.coords[1]
        lon.set_axislabel(_axis_label(wcs, 0))
        lat.set_axislabel(_axis_label(wcs, 1) if k == 0 else " ")
        if k:
            lat.set_ticklabel_visible(False)
        lon.set_ticklabel(size=7)
        lat.set_ticklabel(size=7)
    fig.suptitle(title, fontsize=9)
    return fig


def _axis_label(wcs: Any, axis: int) -> str:
    ctype = wcs.wcs.ctype[axis].split("-")[0].strip()
    return {"RA": "RA", "DEC": "Dec", "GLON": "Galactic longitude", "GLAT": "Galactic latitude"}.get(ctype, ctype)


def plot_cubefit_maps(result: Any, output: str | Path, *, parameters: list[str] | None = None) -> Path:
    """Draw :func:`maps_figure` of a ``CubefitResult`` into a PNG file."""
    fig = maps_figure(result, parameters=parameters)
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(output, dpi=90)
    return output
