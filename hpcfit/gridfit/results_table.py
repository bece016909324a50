"""The CIGALE-like results table of a grid fit (one row per galaxy), for users who live in TOPCAT.

Columns, in order: ``id``, ``n_bands`` (bands used), ``n_upper_limits``, ``best.model_index``, ``best.chi2``,
``best.reduced_chi2``, ``best.<parameter>`` for every grid parameter, ``best.dust_mass`` (M_sun),
``best.dust_luminosity`` (L_sun), ``best.<band>`` (the best model's flux density, mJy), then ``bayes.<quantity>``
and ``bayes.<quantity>_err`` for every estimated quantity -- the naming of CIGALE's ``results.fits`` (without its
module prefixes). Units are attached to the columns (log and percent quantities say so in the column description, since FITS has
no unit for them); FITS or ECSV.

A FITS table is fixed-width rows after a header, so it can be written by every rank at once: :func:`fits_parts`
encodes some rows exactly as astropy writes them (a rank's galaxies) and the header that astropy writes for the
whole table (its row count set), and ``hpcfit.io.rank_bytes`` puts them in place. The bytes are those of
:func:`write_table` on the whole table (tested). An ECSV table is text of varying width: it is written by one rank.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

FITS_BLOCK = 2880  # FITS pads every header and data unit to a multiple of this many bytes (data with zeros)


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
    """Write the table (format from the suffix: .fits or .ecsv), replacing an existing file; written under a
    temporary name and renamed when complete."""
    from hpcfit.io.rank_bytes import temporary_name

    path = Path(path)
    table = build_table(ids, columns)
    fmt = "fits" if path.suffix == ".fits" else "ascii.ecsv"
    tmp = temporary_name(path)
    try:
        table.write(tmp, format=fmt, overwrite=True)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def fits_parts(ids: np.ndarray, columns: Mapping[str, tuple[np.ndarray, str]], n_rows: int) -> tuple[bytes, bytes]:
    """(head, rows): the bytes before the data of a FITS results table of ``n_rows`` rows (primary HDU and table
    header, as astropy writes them), and these rows' bytes as they stand in its data. Every part of one table must
    give its text ids the same width (the column's format is the dtype's width)."""
    from astropy.io import fits

    buffer = io.BytesIO()
    build_table(ids, columns).write(buffer, format="fits")
    raw = buffer.getvalue()
    with fits.open(io.BytesIO(raw)) as hdus:
        hdu = hdus[1]
        start, header_start = hdu._data_offset, hdu._header_offset
        size = hdu.header["NAXIS1"] * hdu.header["NAXIS2"]
        count = hdu.header.cards["NAXIS2"]
        card = fits.Card("NAXIS2", n_rows, count.comment).image
    head = raw[:start]
    at = head.index(count.image.encode("ascii"), header_start)
    head = head[:at] + card.encode("ascii") + head[at + len(card):]
    return head, raw[start:start + size]
