"""Synthetic inputs for grid fits with known answers: top-hat filter curves and catalogues made from grid models.

A synthetic galaxy is a grid model (drawn uniformly over the model indices) times a dust mass (log-uniform), seen
at a distance (uniform), with Gaussian noise of a given signal-to-noise ratio per band. The table carries the
truth (``true_model_index``, ``true_<parameter>``, ``true_dust_mass``) beside the photometry, in mJy and Mpc.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from hpcfit.gridfit.grid import BandProjector, GridSpec, SpectralModel

# Far-IR boxes (centre um, width fraction) roughly where PACS and SPIRE observe.
BOX_BANDS = {"box70": (70.0, 0.35), "box100": (100.0, 0.35), "box160": (160.0, 0.4), "box250": (250.0, 0.3),
             "box350": (350.0, 0.3), "box500": (500.0, 0.35)}


def write_box_filters(directory: str | Path, bands: dict[str, tuple[float, float]] = BOX_BANDS) -> dict[str, Path]:
    """Write top-hat transmission curves (CIGALE layout, Angstrom, photon convention); return name -> path."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, (centre_um, width) in bands.items():
        lo, hi = centre_um * (1 - width / 2) * 1e4, centre_um * (1 + width / 2) * 1e4
        wave = np.concatenate([[lo * 0.99], np.linspace(lo, hi, 50), [hi * 1.01]])
        trans = np.concatenate([[0.0], np.ones(50), [0.0]])
        path = directory / f"{name}.dat"
        with path.open("w") as handle:
            handle.write(f"# {name}\n# photon\n# top-hat {centre_um:g} um, width {width:g}\n")
            np.savetxt(handle, np.column_stack([wave, trans]), fmt="%.6f")
        paths[name] = path
    return paths


def synthetic_catalog(spec: GridSpec, model: SpectralModel, projector: BandProjector, band_names: Sequence[str], *,
                      n_galaxies: int, seed: int = 0, snr: float = 20.0, log_mass: tuple[float, float] = (6.0, 8.0),
                      distance_mpc: tuple[float, float] = (5.0, 40.0), models: np.ndarray | None = None):
    """An astropy Table of galaxies made from grid models plus Gaussian noise (errors = true flux / snr).

    ``models``: the model index of each galaxy (default: uniform draws over the grid).
    """
    from astropy import units as u
    from astropy.table import Table

    rng = np.random.default_rng(seed)
    index = rng.integers(0, spec.n_models, n_galaxies) if models is None else np.asarray(models, dtype=np.int64)
    n_galaxies = index.size
    params = np.vstack([spec.parameters(int(i), int(i) + 1) for i in index])
    per_mass = projector(model.lnu(params))  # W/Hz per M_sun
    mass = 10.0 ** rng.uniform(*log_mass, n_galaxies)
    distance = rng.uniform(*distance_mpc, n_galaxies)
    to_mjy = (1.0 * u.W / u.Hz / (4 * np.pi * (distance * u.Mpc) ** 2)).to_value(u.mJy)
    clean = (mass * to_mjy)[:, None] * per_mass
    error = clean / snr
    flux = clean + error * rng.normal(size=clean.shape)
    table = Table()
    table["id"] = [f"gal{i:05d}" for i in range(n_galaxies)]
    table["distance"] = distance * u.Mpc
    for b, name in enumerate(band_names):
        table[f"{name}_flux"] = flux[:, b] * u.mJy
        table[f"{name}_err"] = error[:, b] * u.mJy
    table["true_model_index"] = index
    for j, name in enumerate(spec.names):
        table[f"true_{name}"] = params[:, j]
    table["true_dust_mass"] = mass * u.solMass
    return table
