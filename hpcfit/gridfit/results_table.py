"""The CIGALE-like results table of a grid fit (one row per galaxy), for users who live in TOPCAT.

Columns, in order: ``id``, ``n_bands`` (bands used), ``n_upper_limits``, ``best.model_index``, ``best.chi2``,
``best.reduced_chi2``, ``best.<parameter>`` for every grid parameter, ``best.dust_mass`` (M_sun),
``best.dust_luminosity`` (L_sun), ``best.<band>`` (the best model's flux density, mJy), then ``bayes.<quantity>``
and ``bayes.<quantity>_err`` for every estimated quantity -- the naming of CIGALE's ``results.fits`` (without its
module prefixes). Units are attached to the columns (log and percent quantities say so in the column description, since FITS has
no unit for them); FITS or ECSV.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np


def results_path(output: str | Path, fmt: str) -> Path:
    """``<output stem>_results.<fmt>`` next to the HDF5 file."""
    output = Path(output)
    return output.with_name(f"{output.stem}_results.{fmt}")


def build_table(ids: np.ndarray, columns: Mapping[str, tuple[np.ndarray, str]]):
    """An astropy Table: ``id`` then the named columns (name -> (values, unit string))."""
    from astropy import units as u
    from astropy.table import Table

    table = Table()
    table["id"] = ids
    for name, (values, unit) in columns.items():
        table[name] = values
        if unit.startswith("dex(") or unit in ("percent", "%"):
            # FITS has no logarithmic or percent unit: say it in the column description instead.
            table[name].description = f"log10 of {unit[4:-1]}" if unit.startswith("dex(") else "percent"
        elif unit:
            table[name].unit = u.Unit(unit)
    return table


def result_columns(*, n_bands: np.ndarray, n_upper: np.ndarray, model_index: np.ndarray, chi2: np.ndarray,
                   reduced_chi2: np.ndarray, param_names: Sequence[str], param_units: Sequence[str],
                   params: np.ndarray, dust_mass: np.ndarray, dust_luminosity: np.ndarray,
                   band_names: Sequence[str], model_flux: np.ndarray,
                   bayes: Mapping[str, tuple[np.ndarray, np.ndarray, str]]) -> dict[str, tuple[np.ndarray, str]]:
    """The table's columns (values, unit) in the documented order; ``bayes``: name -> (mean, std, unit)."""
    cols: dict[str, tuple[np.ndarray, str]] = {
        "n_bands": (n_bands, ""),
        "n_upper_limits": (n_upper, ""),
        "best.model_index": (model_index, ""),
        "best.chi2": (chi2, ""),
        "best.reduced_chi2": (reduced_chi2, ""),
    }
    for j, (name, unit) in enumerate(zip(param_names, param_units)):
        cols[f"best.{name}"] = (params[:, j], unit)
    cols["best.dust_mass"] = (dust_mass, "solMass")
    cols["best.dust_luminosity"] = (dust_luminosity, "solLum")
    for b, name in enumerate(band_names):
        cols[f"best.{name}"] = (model_flux[:, b], "mJy")
    for name, (mean, std, unit) in bayes.items():
        cols[f"bayes.{name}"] = (mean, unit)
        cols[f"bayes.{name}_err"] = (std, unit)
    return cols


def write_table(path: str | Path, ids: np.ndarray, columns: Mapping[str, tuple[np.ndarray, str]]) -> Path:
    """Write the table (format from the suffix: .fits or .ecsv), replacing an existing file."""
    path = Path(path)
    table = build_table(ids, columns)
    fmt = "fits" if path.suffix == ".fits" else "ascii.ecsv"
    table.write(path, format=fmt, overwrite=True)
    return path
