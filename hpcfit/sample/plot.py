"""Figures of a sample output (``hpcfit plot FILE`` on a sample file): a corner plot of θ and colour–colour plots.

* ``<stem>_corner.png``: one panel per parameter pair of ``/samples/theta`` — the 1-D histogram of each parameter on
  the diagonal, the 2-D histogram of each pair below it — on the axes' sampled ranges (the ``low``/``high``
  attributes; ``log_*`` axes as drawn, in log10).
* ``<stem>_colours.png``: the colours of ``/samples/simulated_y`` as magnitudes, c_k = -2.5 log10(y_k / y_k+1) of
  adjacent bands (in the file's band order), each colour against the next: (b0 - b1) vs (b1 - b2), ... Rows with a
  non-positive or non-finite flux in either band of a colour are left out of that panel.

A file may hold 10^8 rows: at most ``max_points`` rows are read, as evenly spaced contiguous blocks (a few hyperslab
reads, never the whole dataset), so the figure takes the same time whatever the file's size.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

DEFAULT_MAX_POINTS = 50_000
_BLOCKS = 64  # contiguous blocks the subsample is read in
_BINS = 40


@dataclass
class SampleView:
    """The rows of a sample file that a figure shows, and what the file says about them."""

    name: str
    n_rows: int             # rows in the file
    theta: np.ndarray       # (n, D) the subsample of /samples/theta
    names: list[str]
    low: np.ndarray
    high: np.ndarray
    flux: np.ndarray        # (n, F) the same rows of /samples/simulated_y, maggies
    bands: list[str]


def row_blocks(n_rows: int, max_rows: int, blocks: int = _BLOCKS) -> list[tuple[int, int]]:
    """Row ranges [a, b) holding at most ``max_rows`` of ``n_rows`` rows, spread evenly over the file.

    Evenly spaced blocks rather than the first rows: a file written with ``shuffle: false`` is in draw order, where
    the partition axis (redshift) grows with the row, so only a spread subsample shows the whole hypercube; a
    shuffled file is in random order, so any blocks are a fair subsample of it."""
    if max_rows < 1:
        raise ValueError(f"max_points must be at least 1 (got {max_rows})")
    if n_rows <= max_rows:
        return [(0, n_rows)] if n_rows else []
    blocks = min(blocks, max_rows)
    per = max_rows // blocks
    starts = [k * n_rows // blocks for k in range(blocks)]  # per <= n_rows / blocks: blocks never overlap
    return [(a, a + per) for a in starts]


def _text(values: Any) -> list[str]:
    return [v.decode() if isinstance(v, bytes) else str(v) for v in np.atleast_1d(values)]


def read_sample(path: str | Path, max_points: int = DEFAULT_MAX_POINTS) -> SampleView:
    """Read at most ``max_points`` rows of θ and of the simulated photometry (the same rows) from a sample file."""
    path = Path(path)
    with h5py.File(path, "r") as h5:
        if "samples/theta" not in h5 or "samples/simulated_y" not in h5:
            raise ValueError(f"{path} has no /samples/theta and /samples/simulated_y: not a sample output")
        theta_ds, flux_ds = h5["samples/theta"], h5["samples/simulated_y"]
        blocks = row_blocks(theta_ds.shape[0], max_points)
        if not blocks:
            raise ValueError(f"{path} holds no samples")
        theta = np.concatenate([theta_ds[a:b] for a, b in blocks]).astype(float)
        flux = np.concatenate([flux_ds[a:b] for a, b in blocks]).astype(float)
        attrs = theta_ds.attrs
        names = _text(attrs.get("names", [f"theta_{j}" for j in range(theta.shape[1])]))
        finite = np.where(np.isfinite(theta), theta, np.nan)
        low = np.asarray(attrs["low"], float) if "low" in attrs else np.nanmin(finite, axis=0)
        high = np.asarray(attrs["high"], float) if "high" in attrs else np.nanmax(finite, axis=0)
        bands = _text(flux_ds.attrs.get("filter_names", [f"band {k}" for k in range(flux.shape[1])]))
        return SampleView(path.name, theta_ds.shape[0], theta, names, low, high, flux, bands)


def corner_figure(view: SampleView) -> Any:
    """The corner plot of θ: a ``matplotlib.figure.Figure`` with D (D + 1) / 2 axes, row i column j <= i."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    d = len(view.names)
    size = max(5.0, 1.5 * d + 1.2)
    fig = Figure(figsize=(size, size))
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(d, d, left=0.9 / size + 0.04, right=0.98, bottom=0.9 / size + 0.04,
                            top=1 - 0.5 / size - 0.02, wspace=0.08, hspace=0.08)
    theta = view.theta
    for i in range(d):
        for j in range(i + 1):
            ax = fig.add_subplot(grid[i, j])
            xlim = (view.low[j], view.high[j])
            if i == j:
                ax.hist(theta[:, j], bins=_BINS, range=xlim, color="C0", alpha=0.8, histtype="stepfilled")
            else:
                ylim = (view.low[i], view.high[i])
                counts, xe, ye = np.histogram2d(theta[:, j], theta[:, i], bins=_BINS, range=[xlim, ylim])
                ax.pcolormesh(xe, ye, counts.T, cmap="Blues", rasterized=True)
                ax.set_ylim(ylim)
            ax.set_xlim(xlim)
            ax.xaxis.set_major_locator(MaxNLocator(3, prune="both"))
            ax.yaxis.set_major_locator(MaxNLocator(3, prune="both"))
            ax.tick_params(labelsize=8)
            if i == d - 1:
                ax.set_xlabel(view.names[j], fontsize=9)
                for label in ax.get_xticklabels():
                    label.set_rotation(45)
            else:
                ax.set_xticklabels([])
            if i == j:
                ax.tick_params(left=False, labelleft=False)  # counts: only the shape matters
            elif j == 0:
                ax.set_ylabel(view.names[i], fontsize=9)
            else:
                ax.set_yticklabels([])
    fig.suptitle(f"{view.name}: θ of {theta.shape[0]:,} of {view.n_rows:,} rows\n"
                 "diagonal: histograms; log_* axes in log10", fontsize=10)
    return fig


def colours(view: SampleView) -> tuple[list[str], list[np.ndarray]]:
    """The colours of adjacent bands, -2.5 log10(y_k / y_k+1) in mag, NaN where either flux is not positive."""
    flux = view.flux
    good = np.isfinite(flux) & (flux > 0)
    labels, values = [], []
    for k in range(flux.shape[1] - 1):
        ok = good[:, k] & good[:, k + 1]
        colour = np.full(flux.shape[0], np.nan)
        colour[ok] = -2.5 * np.log10(flux[ok, k] / flux[ok, k + 1])
        labels.append(f"{view.bands[k]} - {view.bands[k + 1]} [mag]")
        values.append(colour)
    return labels, values


def colour_figure(view: SampleView) -> Any | None:
    """Colour–colour panels (each colour against the next), or one histogram with two bands; None with one band."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import LogNorm
    from matplotlib.figure import Figure

    labels, values = colours(view)
    if not values:
        return None
    pairs = [(k, k + 1) for k in range(len(values) - 1)] or [(0, None)]
    cols = min(3, len(pairs))
    rows = -(-len(pairs) // cols)
    fig = Figure(figsize=(max(4.4 * cols, 5.5), 3.8 * rows + 0.6), layout="constrained")
    FigureCanvasAgg(fig)
    for n, (a, b) in enumerate(pairs):
        ax = fig.add_subplot(rows, cols, n + 1)
        x = values[a]
        if b is None:
            ok = np.isfinite(x)
            ax.hist(x[ok], bins=60, range=_limits(x[ok]), color="C0")
            ax.set_xlabel(labels[a])
            ax.set_ylabel("rows")
        else:
            y = values[b]
            ok = np.isfinite(x) & np.isfinite(y)
            if ok.any():
                counts, xe, ye = np.histogram2d(x[ok], y[ok], bins=60, range=[_limits(x[ok]), _limits(y[ok])])
                mesh = ax.pcolormesh(xe, ye, np.where(counts > 0, counts, np.nan).T, cmap="viridis",
                                     norm=LogNorm(vmin=1, vmax=max(counts.max(), 2)), rasterized=True)
                fig.colorbar(mesh, ax=ax, label="rows per bin")
            ax.set_xlabel(labels[a])
            ax.set_ylabel(labels[b])
        dropped = int((~ok).sum())
        ax.set_title(f"{int(ok.sum()):,} rows" + (f" ({dropped:,} with a flux <= 0 left out)" if dropped else ""),
                     fontsize=8)
    fig.suptitle(f"{view.name}: colours of adjacent bands\n({view.flux.shape[0]:,} of {view.n_rows:,} rows)",
                 fontsize=10)
    return fig


def _limits(values: np.ndarray) -> tuple[float, float]:
    """The 0.5-99.5 percentile range: a few extreme colours (faint bands) would squash the rest into one bin."""
    if values.size == 0:
        return 0.0, 1.0
    low, high = np.percentile(values, [0.5, 99.5])
    if not high > low:
        low, high = low - 0.5, high + 0.5
    return float(low), float(high)


def output_paths(path: str | Path, output: str | Path | None) -> tuple[Path, Path]:
    """``<stem>_corner.png`` and ``<stem>_colours.png`` beside ``output`` (default: beside the file)."""
    base = Path(output) if output is not None else Path(path).with_suffix(".png")
    suffix = base.suffix or ".png"
    return base.with_name(f"{base.stem}_corner{suffix}"), base.with_name(f"{base.stem}_colours{suffix}")


def plot_sample(path: str | Path, output: str | Path | None = None, *, max_points: int = DEFAULT_MAX_POINTS,
                dpi: int = 100) -> list[Path]:
    """Write the corner plot and (with two bands or more) the colour plot of a sample file; return their paths."""
    view = read_sample(path, max_points)
    corner_path, colour_path = output_paths(path, output)
    corner_path.parent.mkdir(parents=True, exist_ok=True)
    corner_figure(view).savefig(corner_path, dpi=dpi)
    written = [corner_path]
    figure = colour_figure(view)
    if figure is not None:
        figure.savefig(colour_path, dpi=dpi)
        written.append(colour_path)
    return written
