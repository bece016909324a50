"""A catalogue table's layout (columns, dtypes, units, row count) read cheaply, and one rank's share of its rows.

So that no rank parses the whole catalogue, two formats are read in slices:

* **FITS** (a binary or ASCII table HDU, not gzipped): the layout is the headers; rows [a, b) come from a memory
  map of the table's data, converted by astropy's own FITS table reader, so they are exactly the rows
  ``Table.read(path)[a:b]`` gives (units, NaN and TNULL masks, trailing blanks stripped).
* **ECSV**: the layout is the header lines (types and units are declared there); the data lines are shared out by
  *byte ranges* of the file -- a line belongs to the share that holds its first byte -- so that a share is read
  without reading what comes before it; each share is parsed by astropy's ECSV reader behind the header. A
  quoted value spanning lines is not supported in shares (one line per row, as astropy writes ECSV).

Every other format (CSV, VOTable, ...) has column types that only the whole file tells (CSV infers them from all
the values), so it is not sliced: :func:`sliceable` says which, and the caller reads such a table whole, once.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from astropy.table import Table

FITS_SUFFIXES = (".fits", ".fit", ".fts")
Kind = Literal["fits", "ecsv"]


def sliceable(path: str | Path, format: str | None) -> Kind | None:
    """The way ``path`` is read in slices ("fits", "ecsv"), or None when it is read whole."""
    suffix = Path(path).suffix.lower()
    if format in ("fits",) or (format is None and suffix in FITS_SUFFIXES):
        return "fits"
    if format in ("ascii.ecsv", "ecsv") or (format is None and suffix == ".ecsv"):
        return "ecsv"
    return None


@dataclass(frozen=True)
class Layout:
    """What reading the header tells: the columns as a zero-row table, the number of rows, where the data is."""

    path: str
    kind: Kind
    empty: Table | None  # the columns as Table.read gives them, no rows (None in a plan's info)
    n_rows: int
    hdu: int = 0  # fits: the table HDU
    header_lines: tuple[str, ...] = ()  # ecsv: the lines up to and including the column names
    data_start: int = 0  # ecsv: byte offset of the first data line
    size: int = 0  # ecsv: file size in bytes


def read_layout(path: str | Path, kind: Kind) -> Layout:
    """The layout of ``path`` (raises OSError/ValueError for an unreadable file, as astropy does)."""
    return _fits_layout(str(path)) if kind == "fits" else _ecsv_layout(str(path))


def share_bounds(n: int, parts: int) -> list[int]:
    """``parts + 1`` bounds splitting range(n) into contiguous shares whose sizes differ by at most one."""
    return [n * k // parts for k in range(parts + 1)]


def read_share(layout: Layout, k: int, parts: int) -> Table:
    """Share ``k`` of ``parts`` of the rows (FITS: rows ``share_bounds`` k..k+1; ECSV: the data lines starting in
    byte range k of ``parts``), as an astropy Table with the columns of ``layout.empty``. Shares are in row order
    and cover every row once, for any ``parts`` (shares may be empty)."""
    if layout.kind == "fits":
        bounds = share_bounds(layout.n_rows, parts)
        return _fits_rows(layout, bounds[k], bounds[k + 1])
    span = layout.size - layout.data_start
    a, b = (layout.data_start + span * j // parts for j in (k, k + 1))
    return _ecsv_table(layout.header_lines, _lines_starting_in(layout.path, layout.data_start, a, b))


# -- FITS -------------------------------------------------------------------------------------------------------


def _fits_table_hdu(hdus) -> int:
    """The HDU Table.read takes: the first table (it warns when there are several; the layout read warns too)."""
    from astropy.io.fits import BinTableHDU, GroupsHDU, TableHDU

    tables = [i for i, hdu in enumerate(hdus) if isinstance(hdu, (TableHDU, BinTableHDU, GroupsHDU))]
    if not tables:
        raise ValueError("No table found")
    if len(tables) > 1:
        warnings.warn(f"hdu= was not specified but multiple tables are present, reading in first available table "
                      f"(hdu={tables[0]})")
    return tables[0]


def _fits_convert(hdu, data) -> Table:
    """``data`` (rows of ``hdu``) through astropy's FITS table reader: the same columns as Table.read."""
    from astropy.io.fits.connect import read_table_fits

    return read_table_fits(type(hdu)(data=data, header=hdu.header))


def _fits_layout(path: str) -> Layout:
    from astropy.io import fits

    with fits.open(path, memmap=True) as hdus:
        index = _fits_table_hdu(hdus)
        hdu = hdus[index]
        n_rows = int(hdu.header.get("NAXIS2", 0))
        empty = _fits_convert(hdu, hdu.data[:0].copy())
    return Layout(path, "fits", empty, n_rows, hdu=index)


def _fits_rows(layout: Layout, a: int, b: int) -> Table:
    from astropy.io import fits

    with fits.open(layout.path, memmap=True) as hdus, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the layout read (rank 0, plan) showed them once
        hdu = hdus[layout.hdu]
        rows = hdu.data[a:b].copy()  # only these rows' pages are read; the copy outlives the map
        return _fits_convert(hdu, rows)


# -- ECSV -------------------------------------------------------------------------------------------------------


def _ecsv_layout(path: str) -> Layout:
    header: list[str] = []
    with open(path, "rb") as f:
        while True:
            line = f.readline()
            if not line:
                break
            text = line.decode("utf-8")
            header.append(text.rstrip("\r\n"))
            if text.strip() and not text.lstrip().startswith("#"):
                break  # the column names: the first line that is no comment
        data_start = f.tell()
        rest = f.read()
    n_rows = _count_data_lines(rest)
    return Layout(path, "ecsv", _ecsv_table(tuple(header), []), n_rows, header_lines=tuple(header),
                  data_start=data_start, size=data_start + len(rest))


def _count_data_lines(data: bytes) -> int:
    """Lines that are neither blank nor comments (what the ECSV reader takes as rows)."""
    return sum(1 for line in data.splitlines() if line.strip() and not line.lstrip().startswith(b"#"))


def _lines_starting_in(path: str, data_start: int, a: int, b: int) -> list[str]:
    """The lines of ``path`` whose first byte lies in [a, b) (a >= data_start)."""
    lines = []
    with open(path, "rb") as f:
        if a > data_start:
            f.seek(a - 1)
            f.readline()  # the rest of a line that started before a (just its newline if one started at a)
        else:
            f.seek(data_start)
        while f.tell() < b:
            line = f.readline()
            if not line:
                break
            lines.append(line.decode("utf-8").rstrip("\r\n"))
    return lines


def _ecsv_table(header: tuple[str, ...], lines: list[str]) -> Table:
    with warnings.catch_warnings():
        if lines:
            warnings.simplefilter("ignore")  # shown once by the layout read
        return Table.read(list(header) + lines, format="ascii.ecsv")
