"""The figure of a calibrate output (``hpcfit plot FILE`` on a calibrate file): masters and one science frame.

Top row: the master bias, dark and flat (whichever the file holds) that served the chosen science frame (its row of
``/masters/sets``; plane 0 of each when the file has no science frame), each on a robust 1-99 percentile scale with
a colour bar in its unit. Bottom: the calibrated science frame (default the first), on the same kind of scale, with
its bad pixels (``/masters/bad_pixels`` of its master set, and any other NaN pixel) overlaid in semi-transparent red,
its name, filter and exposure in the title.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

KINDS = ("bias", "dark", "flat")
_UNITS = {"adu": "ADU", "adu / s": "ADU / s", "": "relative response (median 1)"}
BAD_PIXEL_RGBA = (1.0, 0.0, 0.0, 0.6)


@dataclass
class Master:
    kind: str
    image: np.ndarray
    unit: str
    label: str  # night, filter, how it was made


@dataclass
class ScienceFrame:
    index: int  # row in /science
    name: str
    image: np.ndarray
    bad: np.ndarray  # bool: bad pixel of its master set, or NaN in the image
    label: str


@dataclass
class CalibrateView:
    name: str
    masters: list[Master] = field(default_factory=list)
    science: ScienceFrame | None = None
    n_science: int = 0


def _text(values: Any) -> list[str]:
    return [v.decode() if isinstance(v, bytes) else str(v) for v in np.atleast_1d(values)]


def frame_index(names: list[str], frame: str | int | None) -> int:
    """Row of a science frame: its file name (with or without the extension), else its index (0-based)."""
    if not names:
        raise KeyError("the file holds no calibrated science frame")
    if frame is None:
        return 0
    text = str(frame)
    for k, name in enumerate(names):
        if text in (name, Path(name).stem):
            return k
    if text.lstrip("-").isdigit():
        k = int(text)
        if 0 <= k < len(names):
            return k
        raise KeyError(f"science frame {k} out of range (0..{len(names) - 1})")
    shown = ", ".join(names[:6]) + (", ..." if len(names) > 6 else "")
    raise KeyError(f"no science frame '{text}' (frames: {shown})")


def read_calibrate(path: str | Path, frame: str | int | None = None) -> CalibrateView:
    """Read one science frame and the masters that served it (or plane 0 of each master) from a calibrate file."""
    path = Path(path)
    with h5py.File(path, "r") as h5:
        if "masters" not in h5 or "science/images" not in h5:
            raise ValueError(f"{path} has no /masters and /science/images: not a calibrate output")
        names = _text(h5["science/names"][()]) if "science/names" in h5 else []
        view = CalibrateView(path.name, n_science=len(names))
        planes = {kind: 0 for kind in KINDS}
        bad = None
        if names or frame is not None:
            k = frame_index(names, frame)
            master_set = int(h5["science/master_set"][k])
            planes = dict(zip(KINDS, (int(p) for p in h5["masters/sets"][master_set])))
            image = h5["science/images"][k].astype(np.float32)
            bad = ~np.isfinite(image)
            if "masters/bad_pixels" in h5 and h5["masters/bad_pixels"].shape[0] > master_set:
                bad |= h5["masters/bad_pixels"][master_set].astype(bool)
            filt = _text(h5["science/filter"][k])[0] if "science/filter" in h5 else ""
            exptime = float(h5["science/exptime"][k]) if "science/exptime" in h5 else float("nan")
            night = _text(h5["science/night"][k])[0] if "science/night" in h5 else ""
            label = ", ".join(part for part in (f"filter {filt}" if filt else "", f"{exptime:g} s",
                                                f"night {night}" if night else "") if part)
            view.science = ScienceFrame(k, names[k], image, bad, label)
        for kind in KINDS:
            plane = planes[kind]
            if f"masters/{kind}" not in h5 or plane < 0 or plane >= h5[f"masters/{kind}"].shape[0]:
                continue  # not in the file, or not applied to this frame
            ds = h5[f"masters/{kind}"]
            view.masters.append(Master(kind, ds[plane].astype(np.float32), _text(ds.attrs.get("unit", ""))[0],
                                       _group_label(h5, kind, plane)))
    return view


def _group_label(h5: h5py.File, kind: str, plane: int) -> str:
    """'night 2024-03-10, filter V, 7 frames' (or the ready file's name) from /masters/<kind>_groups."""
    table = f"masters/{kind}_groups"
    if table not in h5 or plane >= len(h5[table]):
        return ""
    row = h5[table][plane]
    night, filt, source = (_text(row[key])[0] for key in ("night", "filter", "source"))
    made = f"{int(row['n_frames'])} frames" if source == "combined" else Path(source).name
    return ", ".join(part for part in (f"night {night}" if night else "", f"filter {filt}" if filt else "", made)
                     if part)


def robust_limits(image: np.ndarray, low: float = 1.0, high: float = 99.0) -> tuple[float, float]:
    """The ``low``-``high`` percentile range of the finite pixels (a few hot pixels or stars would flatten a
    min-max scale)."""
    finite = image[np.isfinite(image)]
    if finite.size == 0:
        return 0.0, 1.0
    a, b = np.percentile(finite, [low, high])
    if not b > a:
        a, b = a - 0.5, b + 0.5
    return float(a), float(b)


def calibrate_figure(view: CalibrateView) -> Any:
    """The masters in a row above the science frame, as a ``matplotlib.figure.Figure``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    cols = max(1, len(view.masters))
    shape = view.science.image.shape if view.science else view.masters[0].image.shape
    aspect = shape[0] / shape[1]
    width = max(4.2 * cols, 7.0)
    top = 4.2 * aspect + 1.0 if view.masters else 0.0
    bottom = min(width * 0.75, 9.0) * aspect + 1.2 if view.science else 0.0
    fig = Figure(figsize=(width, top + bottom + 0.4), layout="constrained")
    FigureCanvasAgg(fig)
    heights = [h for h in (top, bottom) if h > 0]
    grid = fig.add_gridspec(len(heights), cols, height_ratios=heights)
    for j, master in enumerate(view.masters):
        ax = fig.add_subplot(grid[0, j])
        low, high = robust_limits(master.image)
        image = ax.imshow(master.image, origin="lower", vmin=low, vmax=high, cmap="magma", interpolation="nearest")
        fig.colorbar(image, ax=ax, shrink=0.75, label=_UNITS.get(master.unit, master.unit))
        ax.set_title(f"master {master.kind}" + (f"\n{master.label}" if master.label else ""), fontsize=9)
        ax.set_xlabel("x [pixel]", fontsize=8)
        ax.set_ylabel("y [pixel]", fontsize=8)
        ax.tick_params(labelsize=7)
    if view.science:
        s = view.science
        ax = fig.add_subplot(grid[len(heights) - 1, :])
        low, high = robust_limits(s.image)
        image = ax.imshow(s.image, origin="lower", vmin=low, vmax=high, cmap="gray", interpolation="nearest")
        fig.colorbar(image, ax=ax, shrink=0.9, label="calibrated signal [ADU]")
        overlay = np.zeros(s.bad.shape + (4,), np.float32)
        overlay[s.bad] = BAD_PIXEL_RGBA
        ax.imshow(overlay, origin="lower", interpolation="nearest")
        n_bad = int(s.bad.sum())
        ax.legend(handles=[Patch(color=BAD_PIXEL_RGBA, label=f"bad pixels ({n_bad:,})")], loc="upper right",
                  fontsize=8, framealpha=0.8)
        ax.set_title(f"{s.name} ({s.label})", fontsize=10)
        ax.set_xlabel("x [pixel]")
        ax.set_ylabel("y [pixel]")
    kinds = ", ".join(m.kind for m in view.masters) or "no masters"
    shown = f"science frame {view.science.index} of 0..{view.n_science - 1}" if view.science else "no science frame"
    fig.suptitle(f"{view.name}: masters ({kinds}); {shown}", fontsize=10)
    return fig


def plot_calibrate(path: str | Path, output: str | Path | None = None, *, frame: str | int | None = None,
                   dpi: int = 100) -> Path:
    """Draw the masters and one science frame of a calibrate file into a PNG (default: the file with .png)."""
    view = read_calibrate(path, frame)
    if not view.masters and view.science is None:
        raise ValueError(f"{path} holds neither masters nor science frames: nothing to draw")
    output = Path(output) if output is not None else Path(path).with_suffix(".png")
    output.parent.mkdir(parents=True, exist_ok=True)
    calibrate_figure(view).savefig(output, dpi=dpi)
    return output
