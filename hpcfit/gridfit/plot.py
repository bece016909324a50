"""Plot one galaxy of a gridfit output: the observed SED with the best model, and the likelihood of each parameter.

Everything comes from the HDF5 file (observed photometry, band fluxes of the grid, best fit). The chi2 of every
model for the galaxy is read from /chi2 when it was kept, and recomputed otherwise (one galaxy against the whole
grid: one small matrix product). The best model's full spectrum is drawn when its model can be rebuilt (always for
the modified blackbody; for DL07 when the templates are still where the run found them).

Panels: (1) flux density against wavelength: detections with error bars, upper limits as arrows, the best model's
band fluxes and spectrum; (2..) for each grid parameter with several values, the marginal likelihood
sum_{models with that value} exp(-chi2 / 2) normalised to a peak of 1 (bars) and the lowest chi2 at that value
(line, right axis); the last panel is the likelihood-weighted histogram of log10 dust mass.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import h5py
import numpy as np


def plot_galaxy(result: str | Path, galaxy: str | int, output: str | Path | None = None, *,
                dpi: int = 120) -> Path:
    """Draw the SED and parameter likelihoods of one galaxy of a gridfit file into a PNG.

    ``galaxy``: its id (a string, or an integer when the catalogue ids are integers), or its row number.

    ``output`` defaults to ``<result stem>_<id>.png`` next to the result file. Returns the PNG path.
    Raises KeyError when the galaxy is not in the file, ValueError when the file is not a gridfit output.
    """
    result = Path(result)
    data = _read(result, galaxy)
    output = Path(output) if output is not None else result.with_name(f"{result.stem}_{_safe(data['id'])}.png")
    _draw(data, output, dpi)
    return output


def galaxy_id(result: str | Path, galaxy: str | None) -> str:
    """The id of the galaxy a command-line ``--galaxy`` names: an id of the file, else a row number; None: the first
    row. (A text on the command line cannot say whether ``3`` is an id or a row: an id wins.)"""
    with h5py.File(result, "r") as h5:
        if "ids" not in h5:
            raise ValueError(f"{result} has no /ids: not a gridfit output")
        ids = h5["ids"][()]
    text = [v.decode() if isinstance(v, bytes) else str(v) for v in ids]
    if not text:
        raise KeyError(f"{result} holds no galaxy")
    if galaxy is None:
        return text[0]
    if galaxy in text or not galaxy.isdigit():
        return galaxy  # an unknown id: plot_galaxy names the ids it has
    if int(galaxy) >= len(text):
        raise KeyError(f"galaxy '{galaxy}' is neither an id nor a row number (0..{len(text) - 1}) of {result}")
    return text[int(galaxy)]


def _safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)


def _row(h5: h5py.File, galaxy: str | int) -> int:
    """Row of a galaxy: a string is an id; an integer is an id when the ids are integers, else a row number."""
    ids = h5["ids"][()]
    text = ids.astype(str)
    if isinstance(galaxy, (int, np.integer)) and ids.dtype.kind not in "iu":
        if not 0 <= int(galaxy) < ids.size:
            raise KeyError(f"galaxy row {galaxy} out of range (0..{ids.size - 1})")
        return int(galaxy)
    where = np.flatnonzero(text == str(galaxy))
    if where.size == 0:
        shown = ", ".join(text[:8]) + (", ..." if text.size > 8 else "")
        raise KeyError(f"galaxy '{galaxy}' not in {h5.filename} (ids: {shown})")
    return int(where[0])


def _read(path: Path, galaxy: str | int) -> dict[str, Any]:
    from hpcfit.gridfit.chi2 import chi2_block, prepare_photometry
    from hpcfit.gridfit.grid import GridSpec

    with h5py.File(path, "r") as h5:
        if "gridfit_grid" not in h5.attrs:
            raise ValueError(f"{path} is not a gridfit output (no gridfit_grid attribute)")
        g = _row(h5, galaxy)
        ids = h5["ids"][()]
        data: dict[str, Any] = {
            "id": ids[g].decode() if ids.dtype.kind == "S" else str(ids[g]),
            "flux": h5["observed/flux"][g], "error": h5["observed/error"][g],
            "upper": h5["observed/upper"][g].astype(bool), "bands": h5["bands/name"][()].astype(str),
            "wavelength_um": h5["bands/wavelength_um"][()], "distance_mpc": float(h5["distance_mpc"][g]),
            "best_index": int(h5["best/model_index"][g]), "scale": float(h5["best/scale"][g]),
            "best_flux": h5["best/fluxes"][g], "chi2_best": float(h5["best/chi2"][g]),
            "reduced_chi2": float(h5["best/reduced_chi2"][g]),
            "spec": GridSpec.from_json(h5.attrs["gridfit_grid"]),
            "params": h5["grid/parameters"][()],
            "bayes": {k: float(h5["bayes"][k][g]) for k in h5["bayes"]} if "bayes" in h5 else {},
        }
        floor = float(h5["observed/error"].attrs.get("error_floor", 0.0))
        if "chi2" in h5:
            data["chi2"] = h5["chi2"][g]
            data["chi2_stored"] = True
        else:
            data["chi2_stored"] = False
        band_fluxes = h5["grid/band_fluxes"][()]
    factor = _flux_factor(data["distance_mpc"])
    valid = np.isfinite(data["flux"]) & np.isfinite(data["error"])
    phot = prepare_photometry(data["flux"][None], data["error"][None], valid[None], data["upper"][None],
                              error_floor=floor, model_factor=np.array([factor]))
    chi2, scale = chi2_block(phot, band_fluxes)
    if not data["chi2_stored"]:
        data["chi2"] = chi2[0]
    data["model_scale"] = scale[0]
    data["factor"] = factor
    return data


def _flux_factor(distance_mpc: float) -> float:
    """mJy per (W/Hz) at the distance: 1 / (4 pi D^2)."""
    from astropy import units as u

    return float((1.0 * u.W / u.Hz / (4 * np.pi * (distance_mpc * u.Mpc) ** 2)).to_value(u.mJy))


def _best_spectrum(data: dict[str, Any]) -> tuple[np.ndarray, np.ndarray] | None:
    """(wavelength um, flux mJy) of the best model, or None when its model cannot be rebuilt here."""
    from hpcfit.gridfit.grid import DL07Model, ModifiedBlackbodyModel, load_templates

    spec, index = data["spec"], data["best_index"]
    if index < 0:
        return None
    params = data["params"][index][None]
    try:
        if spec.model == "dl07":
            model = DL07Model(load_templates(spec.options))
        elif spec.model != "modified_blackbody":
            return None  # a user model gives band luminosities, no spectrum
        else:
            model = ModifiedBlackbodyModel(np.geomspace(1e4, 1e7, 600), spec.options.get("kappa0", 0.192),
                                           spec.options.get("kappa_wavelength_um", 350.0))
    except (OSError, ValueError, ImportError):
        return None
    return model.wavelength / 1e4, model.lnu(params)[0] * data["scale"] * data["factor"]


def _draw(data: dict[str, Any], output: Path, dpi: int) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    spec = data["spec"]
    panels = [j for j in range(spec.n_params) if np.unique(data["params"][:, j]).size > 1]
    n_small = len(panels) + 1
    cols = min(n_small, 3)
    rows = 1 + -(-n_small // cols)
    fig = Figure(figsize=(4.2 * cols, 3.4 * rows), layout="constrained")
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(rows, cols)
    _sed_panel(fig.add_subplot(grid[0, :]), data)
    weights = np.exp(-0.5 * (data["chi2"] - np.min(data["chi2"])))
    for k, j in enumerate(panels):
        ax = fig.add_subplot(grid[1 + k // cols, k % cols])
        _parameter_panel(ax, data, j, weights)
    k = len(panels)
    _mass_panel(fig.add_subplot(grid[1 + k // cols, k % cols]), data, weights)
    output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(output, dpi=dpi)


def _sed_panel(ax: Any, data: dict[str, Any]) -> None:
    wave, flux, err, upper = data["wavelength_um"], data["flux"], data["error"], data["upper"]
    det = np.isfinite(flux) & ~upper
    ax.errorbar(wave[det], flux[det], yerr=err[det], fmt="o", color="k", label="observed", zorder=3)
    if upper.any():
        ax.errorbar(wave[upper], flux[upper], yerr=0.3 * flux[upper], uplims=True, fmt="v", color="k",
                    label="upper limit", zorder=3)
    spectrum = _best_spectrum(data)
    if spectrum is not None:
        w, f = spectrum
        keep = (w > wave.min() / 3) & (w < wave.max() * 3) & (f > 0)
        ax.plot(w[keep], f[keep], color="C0", lw=1.2, label="best model")
    ax.plot(wave, data["best_flux"], "s", mfc="none", color="C0", ms=8, label="best model in the bands")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("wavelength [um]")
    ax.set_ylabel("flux density [mJy]")
    best = ", ".join(f"{n} = {data['params'][data['best_index'], j]:g}" for j, n in enumerate(data["spec"].names)) \
        if data["best_index"] >= 0 else "no fit"
    ax.set_title(f"{data['id']} ({data['distance_mpc']:.3g} Mpc): chi2 = {data['chi2_best']:.3g}, "
                 f"reduced {data['reduced_chi2']:.3g}; M_dust = {data['scale']:.3g} Msun; {best}", fontsize=9)
    ax.legend(fontsize=8)


def _parameter_panel(ax: Any, data: dict[str, Any], j: int, weights: np.ndarray) -> None:
    spec = data["spec"]
    values, inverse = np.unique(data["params"][:, j], return_inverse=True)
    like = np.bincount(inverse, weights, minlength=values.size)
    like = like / like.max() if like.max() > 0 else like
    profile = np.full(values.size, np.inf)
    np.minimum.at(profile, inverse, data["chi2"])
    positions = np.arange(values.size)
    ax.bar(positions, like, color="C1", alpha=0.6, label="likelihood (marginal)")
    ax.set_xticks(positions[:: max(1, values.size // 8)])
    ax.set_xticklabels([f"{v:g}" for v in values[:: max(1, values.size // 8)]], fontsize=8)
    unit = spec.units[j]
    ax.set_xlabel(f"{spec.names[j]}" + (f" [{unit}]" if unit else ""))
    ax.set_ylabel("relative likelihood")
    twin = ax.twinx()
    twin.plot(positions, profile, color="C3", marker=".", label="lowest chi2")
    twin.set_ylabel("lowest chi2", color="C3")
    mean = data["bayes"].get(spec.names[j])
    if mean is not None and np.isfinite(mean):
        ax.axvline(np.interp(mean, values, positions), color="k", ls="--", lw=1, label="bayes mean")
    ax.legend(fontsize=7, loc="upper right")


def _mass_panel(ax: Any, data: dict[str, Any], weights: np.ndarray) -> None:
    scale = data["model_scale"]
    ok = (scale > 0) & (weights > 1e-6)  # models with any weight: the axis then spans the posterior only
    if not ok.any():
        ax.text(0.5, 0.5, "no positive dust mass", transform=ax.transAxes, ha="center")
        return
    logm = np.log10(scale[ok])
    ax.hist(logm, bins=40, weights=weights[ok], color="C2", alpha=0.7)
    if data["scale"] > 0:
        ax.axvline(np.log10(data["scale"]), color="C0", lw=1.5, label="best")
    mean, err = data["bayes"].get("log_dust_mass"), data["bayes"].get("log_dust_mass_err")
    if mean is not None and np.isfinite(mean):
        ax.axvspan(mean - err, mean + err, color="k", alpha=0.15, label="bayes mean +- std")
    ax.set_xlabel("log10 dust mass [Msun]")
    ax.set_ylabel("likelihood-weighted models")
    ax.legend(fontsize=7)
