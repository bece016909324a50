"""Parameter maps of a cubefit output: one panel per fitted parameter, plus the fit status map."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np


def plot_cubefit_maps(path: str | Path, output: str | Path, *, parameters: list[str] | None = None) -> Path:
    """Draw the maps of ``/parameters/*`` (2-D iterating grids) and ``/status`` into a PNG file."""
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    with h5py.File(path, "r") as h5:
        names = parameters or list(h5["parameters"])
        maps = {name: (h5[f"parameters/{name}"][()], h5[f"parameters/{name}"].attrs.get("unit", "")) for name in names}
        status = h5["status"][()]
        title = f"{Path(path).name}: {h5.attrs.get('cubefit_model', '')}"
    if next(iter(maps.values()))[0].ndim != 2:
        raise ValueError("parameter maps are not 2-D: nothing to draw as images")
    panels = len(maps) + 1
    # A Figure of its own on the Agg canvas: the caller's pyplot state and backend stay as they were.
    fig = Figure(figsize=(3.6 * panels, 3.6), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, panels, squeeze=False)[0]
    for ax, (name, (values, unit)) in zip(axes, maps.items()):
        finite = values[np.isfinite(values)]
        low, high = (np.percentile(finite, [2, 98]) if finite.size else (0, 1))
        image = ax.imshow(values, origin="lower", vmin=low, vmax=high, cmap="viridis")
        ax.set_title(f"{name} [{unit}]" if unit else name, fontsize=10)
        fig.colorbar(image, ax=ax, shrink=0.8)
    image = axes[-1].imshow(status, origin="lower", vmin=0, vmax=2, cmap=colormaps["RdYlGn_r"].resampled(3))
    axes[-1].set_title("status (0 ok, 1 warn, 2 failed)", fontsize=10)
    fig.colorbar(image, ax=axes[-1], shrink=0.8, ticks=[0, 1, 2])
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title, fontsize=9)
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(output, dpi=90)
    return output
