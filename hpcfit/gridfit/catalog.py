"""Read a galaxy photometry catalogue (ECSV, FITS, CSV, VOTable via astropy.table) into validated arrays in mJy.

The caller maps columns: an id column, a distance (or a redshift turned into a luminosity distance with an astropy
cosmology), and per band a flux and an error column (``BandSpec``, as in a config ``bands:`` list).

Units, per column: the band's explicit ``unit`` if given, else the table's unit for that column, else
``flux_unit`` (default mJy; an error column without a unit takes its flux column's unit). A table unit that
contradicts an explicit band unit is an error. Everything is converted to mJy; distances to Mpc.

Upper limits and missing values, per galaxy and band (``nsigma`` = ``upper_limit_nsigma``, default 3):

* with an ``upper_limit_column`` flag set: an upper limit at the flux if it is positive, else at nsigma x error;
  its sigma is the error if given, else limit / nsigma;
* flux NaN/masked (or negative, unless ``negative_flux="measurement"``) with a positive error: an upper limit at
  nsigma x error with sigma = error -- the source was not detected above nsigma times its noise;
* flux and error both given (flux >= 0): a detection;
* anything else (no flux and no error, a flux without an error): missing, skipped for that galaxy.

Errors must be positive wherever they are given, unless ``accept_cigale_upper_limits`` is set: then the catalogue
follows CIGALE's convention (pcigale's observation manager with ``lim_flag``): a negative error marks an upper limit
at the flux value, with sigma = |error|; a value or error at or below -9990 (CIGALE's invalid marker), or an error
of exactly 0, marks the band as missing for that galaxy. Such limits enter chi2 like every other limit. Problems raise
:class:`CatalogError` carrying the column or option at fault, a message naming the rows, and ``setting``: the
argument of :func:`read_catalog` behind the problem as a key path (``("distance_unit",)``, ``("bands", 2, "unit")``),
which is where a config that mirrors these arguments finds the key to point at.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal

import astropy.units as u
import numpy as np
from astropy.table import Table

DEFAULT_FLUX_UNIT = "mJy"
CIGALE_INVALID = -9990.0  # CIGALE: values or errors at or below this are invalid (missing)
_TRUE_STRINGS = {"1", "t", "true", "y", "yes"}


Setting = tuple  # a key path into read_catalog's arguments: ("id_column",), ("bands", 2, "flux_column"), ...


class CatalogError(ValueError):
    """A catalogue problem: ``key`` is the column (``kind="column"``) or reader option (``kind="option"``) at fault;
    ``setting`` the argument of :func:`read_catalog` that named it (``()``: the table itself)."""

    def __init__(
        self,
        key: str | None,
        message: str,
        *,
        path: str | None = None,
        kind: Literal["column", "option"] = "column",
        location: str | None = None,
        setting: Setting = (),
    ):
        self.key = key
        self.message = message
        self.path = path
        self.kind = kind
        self.location = location
        self.setting = tuple(setting)
        super().__init__(str(self))

    def __str__(self) -> str:
        where = []
        if self.path:
            where.append(str(self.path))
        if self.location:
            where.append(self.location)
        if self.key is not None:
            where.append(f"{self.kind} '{self.key}'")
        return f"{': '.join(where)}: {self.message}" if where else self.message

    def with_location(self, location: str) -> CatalogError:
        """The same error with a config location (e.g. ``"run.yaml line 12"``) added to the message."""
        return CatalogError(self.key, self.message, path=self.path, kind=self.kind, location=location,
                            setting=self.setting)


@dataclass(frozen=True)
class BandSpec:
    """One band of the catalogue: its name, flux and error columns, filter name, optional unit and flag column."""

    name: str
    flux_column: str
    error_column: str
    filter: str | None = None
    unit: str | None = None
    upper_limit_column: str | None = None

    @classmethod
    def from_mapping(cls, spec: Mapping[str, Any], position: int = 0) -> BandSpec:
        """From a config mapping ``{name, flux_column, error_column, filter?, unit?, upper_limit_column?}``."""
        allowed = [f.name for f in fields(cls)]
        unknown = sorted(set(spec) - set(allowed))
        if unknown:
            raise CatalogError(f"bands[{position}].{unknown[0]}", f"unknown key (allowed: {', '.join(allowed)})",
                               kind="option", setting=("bands", position, unknown[0]))
        for required in ("name", "flux_column", "error_column"):
            if not spec.get(required):
                raise CatalogError(f"bands[{position}].{required}", "is required", kind="option",
                                   setting=("bands", position, required))
        return cls(**{k: (None if v is None else str(v)) for k, v in spec.items()})


@dataclass(frozen=True, eq=False)
class Catalog:
    """G galaxies x B bands in mJy. ``flux`` holds the limit of upper limits; missing entries are NaN, not valid."""

    ids: np.ndarray  # (G,)
    distance_mpc: np.ndarray  # (G,)
    redshift: np.ndarray | None  # (G,) when a redshift column was read
    bands: tuple[BandSpec, ...]
    flux: np.ndarray  # (G, B) mJy
    error: np.ndarray  # (G, B) mJy
    valid: np.ndarray  # (G, B) bool, band enters the fit
    upper: np.ndarray  # (G, B) bool, band is an upper limit
    source: str | None = None

    @property
    def n_galaxies(self) -> int:
        return self.flux.shape[0]

    @property
    def n_bands(self) -> int:
        return self.flux.shape[1]

    @property
    def band_names(self) -> list[str]:
        return [b.name for b in self.bands]

    @property
    def filters(self) -> list[str | None]:
        return [b.filter for b in self.bands]

    def flux_factor(self, luminosity_unit: str | u.UnitBase = "W / Hz") -> np.ndarray:
        """1 / (4 pi D^2) per galaxy, in mJy per ``luminosity_unit``: model L_nu times this is the flux in mJy.

        No (1 + z) or band shift is applied: those belong to the model grid when redshifts matter.
        """
        lum = u.Unit(luminosity_unit)
        area = 4.0 * np.pi * (self.distance_mpc * u.Mpc) ** 2
        try:
            return (1.0 * lum / area).to_value(u.mJy)
        except u.UnitConversionError as exc:
            raise CatalogError("luminosity_unit", f"{lum} is not a luminosity density: {exc}", kind="option",
                               setting=("luminosity_unit",)) from None

    ARRAYS = ("ids", "distance_mpc", "redshift", "flux", "error", "valid", "upper")

    def to_arrays(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """(small description, numpy arrays): what a broadcast needs to rebuild the catalogue elsewhere
        (:meth:`from_arrays`); ids of object dtype become text."""
        arrays = {name: getattr(self, name) for name in self.ARRAYS if getattr(self, name) is not None}
        if arrays["ids"].dtype.kind == "O":
            arrays["ids"] = np.array([str(v) for v in arrays["ids"]])
        arrays = {name: np.ascontiguousarray(a) for name, a in arrays.items()}
        return {"bands": self.bands, "source": self.source}, arrays

    @classmethod
    def from_arrays(cls, meta: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> Catalog:
        return cls(arrays["ids"], arrays["distance_mpc"], arrays.get("redshift"), tuple(meta["bands"]),
                   arrays["flux"], arrays["error"], arrays["valid"], arrays["upper"], meta.get("source"))

    def subset(self, index: slice | np.ndarray) -> Catalog:
        """The catalogue restricted to some rows (a galaxy block)."""
        z = None if self.redshift is None else self.redshift[index]
        return Catalog(self.ids[index], self.distance_mpc[index], z, self.bands, self.flux[index],
                       self.error[index], self.valid[index], self.upper[index], self.source)


def read_catalog(
    source: str | Path | Table,
    bands: Sequence[BandSpec | Mapping[str, Any]],
    *,
    id_column: str = "id",
    distance_column: str | None = None,
    redshift_column: str | None = None,
    cosmology: Any = None,
    distance_unit: str = "Mpc",
    flux_unit: str = DEFAULT_FLUX_UNIT,
    format: str | None = None,
    upper_limit_nsigma: float = 3.0,
    negative_flux: Literal["upper_limit", "measurement"] = "upper_limit",
    accept_cigale_upper_limits: bool = False,
    source_name: str | None = None,
    row_offset: int | None = None,
) -> Catalog:
    """Read and validate a catalogue (see the module docstring for the rules).

    Distances: ``distance_column`` (default ``"distance"`` when no redshift column is given), in the column's unit
    or ``distance_unit``; or, with only ``redshift_column``, the luminosity distance of ``cosmology`` (an astropy
    cosmology or the name of a built-in realisation such as ``"Planck18"``; default astropy's default cosmology).

    A ``Table`` source may be some rows of a file: ``source_name`` is the file (errors name it) and ``row_offset``
    the file row of its first row (errors then also give the rows, counted from 0). A zero-row table checks
    everything that does not need values: columns, dtypes, units, options.
    """
    path = source_name if source_name is not None else None if isinstance(source, Table) else str(source)
    try:
        table = source if isinstance(source, Table) else _read_table(source, format)
        return _Reader(table, path, flux_unit, upper_limit_nsigma, negative_flux, accept_cigale_upper_limits,
                       row_offset).read(bands, id_column, distance_column, redshift_column, cosmology, distance_unit)
    except CatalogError as exc:
        if exc.path is None and path is not None:
            raise CatalogError(exc.key, exc.message, path=path, kind=exc.kind, location=exc.location,
                               setting=exc.setting) from None
        raise


def _read_table(path: str | Path, format: str | None) -> Table:
    if not Path(path).exists():
        raise CatalogError(None, "file not found", path=str(path))
    try:
        return Table.read(path, format=format) if format else Table.read(path)
    except Exception as exc:  # astropy raises many types for unreadable/unknown formats
        hint = "" if format else " (pass format=, e.g. 'ascii.csv', 'ascii.ecsv', 'fits', 'votable')"
        raise CatalogError(None, f"cannot read the table: {exc}{hint}", path=str(path),
                           setting=("format",) if format else ()) from None


class _Reader:
    """Column lookups, unit conversion and validation on one astropy table."""

    def __init__(self, table: Table, path: str | None, flux_unit: str, nsigma: float, negative_flux: str,
                 cigale_limits: bool = False, row_offset: int | None = None):
        self.table = table
        self.row_offset = row_offset
        self.cigale_limits = bool(cigale_limits)
        self.path = path
        self.default_unit = self._unit(flux_unit, ("flux_unit",))
        if not nsigma > 0:
            raise CatalogError("upper_limit_nsigma", f"must be > 0, got {nsigma}", kind="option",
                               setting=("upper_limit_nsigma",))
        if negative_flux not in ("upper_limit", "measurement"):
            raise CatalogError("negative_flux", f"must be 'upper_limit' or 'measurement', got {negative_flux!r}",
                               kind="option", setting=("negative_flux",))
        self.nsigma = float(nsigma)
        self.negative_is_limit = negative_flux == "upper_limit"

    # -- helpers ------------------------------------------------------------------------------------------------

    @staticmethod
    def _unit(text: str | u.UnitBase, setting: Setting) -> u.UnitBase:
        """The unit named by the option ``setting`` (e.g. ("flux_unit",) or ("bands", 2, "unit"))."""
        try:
            unit = u.Unit(text)
        except ValueError as exc:
            raise CatalogError(_option_name(setting), f"unknown unit {text!r}: {exc}", kind="option",
                               setting=setting) from None
        return unit

    def column(self, name: str, setting: Setting):
        """The column ``name``, which the argument ``setting`` names (for the error when it is absent)."""
        if name not in self.table.colnames:
            close = difflib.get_close_matches(name, self.table.colnames, n=3)
            hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            raise CatalogError(name, f"column not found{hint} (available columns: {', '.join(self.table.colnames)})",
                               setting=setting)
        return self.table[name]

    def floats(self, name: str, setting: Setting) -> np.ndarray:
        """The column as float64 with masked entries as NaN."""
        col = self.column(name, setting)
        if col.dtype.kind not in "biuf":
            raise CatalogError(name, f"is not numeric (dtype {col.dtype})", setting=setting)
        data = np.ma.asarray(col).astype(np.float64)
        return np.ma.filled(data, np.nan)

    def rows_text(self, mask: np.ndarray, ids: np.ndarray | None) -> str:
        """'3 rows (ids: a, b, c)' for error messages; at most five named."""
        where = np.flatnonzero(mask)
        label = "ids" if ids is not None else "rows"
        names = [str(ids[i]) if ids is not None else str(i) for i in where[:5]]
        more = ", ..." if where.size > 5 else ""
        rows = ""
        if self.row_offset is not None:  # a slice of the file: say where in the file
            rows = f"; file rows: {', '.join(str(self.row_offset + i) for i in where[:5])}{more}"
        return f"{where.size} row{'s' if where.size != 1 else ''} ({label}: {', '.join(names)}{more}{rows})"

    def column_unit(self, name: str, setting: Setting) -> u.UnitBase | None:
        unit = getattr(self.column(name, setting), "unit", None)
        return None if unit is None or unit == u.dimensionless_unscaled else u.Unit(unit)

    def to_mjy(self, name: str, setting: Setting, explicit: tuple[u.UnitBase, Setting] | None,
               fallback: tuple[u.UnitBase, Setting]) -> tuple[np.ndarray, tuple[u.UnitBase, Setting]]:
        """Column values in mJy, and the unit they were read in with the setting that chose it (the column's own
        unit: ``setting``)."""
        table_unit = self.column_unit(name, setting)
        if explicit is not None and table_unit is not None and not _same_unit(explicit[0], table_unit):
            raise CatalogError(name, f"the table gives unit '{table_unit}' but the configuration says "
                                     f"'{explicit[0]}'", setting=explicit[1])
        unit, source = explicit or ((table_unit, setting) if table_unit is not None else fallback)
        try:
            factor = unit.to(u.mJy)
        except u.UnitConversionError:
            raise CatalogError(name, f"unit '{unit}' is not a flux density (convertible to mJy)",
                               setting=source) from None
        return self.floats(name, setting) * factor, (unit, source)

    # -- the catalogue ------------------------------------------------------------------------------------------

    def read(self, bands, id_column, distance_column, redshift_column, cosmology, distance_unit) -> Catalog:
        specs = [b if isinstance(b, BandSpec) else BandSpec.from_mapping(b, i) for i, b in enumerate(bands)]
        if not specs:
            raise CatalogError("bands", "at least one band is required", kind="option", setting=("bands",))
        names = [b.name for b in specs]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            second = next(j for j, n in enumerate(names) if names.index(n) != j)
            raise CatalogError("bands", f"duplicate band names: {', '.join(dup)}", kind="option",
                               setting=("bands", second, "name"))

        ids = self.ids(id_column)
        redshift = None
        if redshift_column is not None:
            redshift = self.floats(redshift_column, ("redshift_column",))
            bad = ~(np.isfinite(redshift) & (redshift > 0))
            if bad.any():
                raise CatalogError(redshift_column, f"redshift must be > 0: {self.rows_text(bad, ids)}",
                                   setting=("redshift_column",))
        if distance_column is None and redshift_column is not None:
            distance = _luminosity_distance_mpc(redshift, cosmology)
            dist_key, dist_setting = redshift_column, ("redshift_column",)
        else:
            dist_key, dist_setting = distance_column or "distance", ("distance_column",)
            distance = self.distance(dist_key, distance_unit)
        bad = ~(np.isfinite(distance) & (distance > 0))
        if bad.any():
            raise CatalogError(dist_key, f"distance must be > 0 and finite: {self.rows_text(bad, ids)}",
                               setting=dist_setting)

        n_gal, n_band = len(self.table), len(specs)
        flux = np.full((n_gal, n_band), np.nan)
        error = np.full((n_gal, n_band), np.nan)
        valid = np.zeros((n_gal, n_band), dtype=bool)
        upper = np.zeros((n_gal, n_band), dtype=bool)
        for j, spec in enumerate(specs):
            flux[:, j], error[:, j], valid[:, j], upper[:, j] = self.band(spec, j, ids)
        return Catalog(ids, distance, redshift, tuple(specs), flux, error, valid, upper, self.path)

    def ids(self, id_column: str) -> np.ndarray:
        col = self.column(id_column, ("id_column",))
        if np.ma.is_masked(np.ma.asarray(col)):
            raise CatalogError(id_column, "has missing ids", setting=("id_column",))
        ids = np.asarray(col)
        if ids.dtype.kind == "S":  # FITS text columns come as bytes: the ids are their text, not "b'...'"
            ids = np.char.decode(ids, "utf-8")
        check_unique_ids(ids, id_column)
        return ids

    def distance(self, name: str, distance_unit: str) -> np.ndarray:
        setting = ("distance_column",)
        values = self.floats(name, setting)
        unit = self.column_unit(name, setting)
        if unit is None:  # the column has none: distance_unit says which
            setting = ("distance_unit",)
            unit = self._unit(distance_unit, setting)
        try:
            return values * unit.to(u.Mpc)
        except u.UnitConversionError:
            raise CatalogError(name, f"unit '{unit}' is not a length", setting=setting) from None

    def flags(self, name: str, setting: Setting) -> np.ndarray:
        col = self.column(name, setting)
        data = np.ma.asarray(col)
        if data.dtype.kind in "US":
            lowered = np.char.lower(np.char.strip(np.ma.filled(data, "").astype(str)))
            return np.isin(lowered, list(_TRUE_STRINGS))
        if data.dtype.kind not in "biuf":
            raise CatalogError(name, f"upper-limit flags must be boolean, integer or text (dtype {data.dtype})",
                               setting=setting)
        return np.ma.filled(data.astype(float), 0.0) != 0

    def band(self, spec: BandSpec, j: int, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Band ``j``: (flux, error, valid, upper) in mJy (see the module docstring)."""
        here = ("bands", j)
        explicit = (self._unit(spec.unit, here + ("unit",)), here + ("unit",)) if spec.unit else None
        f, flux_unit = self.to_mjy(spec.flux_column, here + ("flux_column",), explicit,
                                   (self.default_unit, ("flux_unit",)))
        e, _ = self.to_mjy(spec.error_column, here + ("error_column",), explicit, flux_unit)
        cigale_ul = np.zeros(f.shape, bool)
        if self.cigale_limits:
            # CIGALE's rules act on the values as written in the table (its invalid marker is not a flux)
            raw_f = self.floats(spec.flux_column, here + ("flux_column",))
            raw_e = self.floats(spec.error_column, here + ("error_column",))
            invalid = (raw_f <= CIGALE_INVALID) | (raw_e <= CIGALE_INVALID) | (raw_e == 0)
            f, e = np.where(invalid, np.nan, f), np.where(invalid, np.nan, e)
            cigale_ul = np.isfinite(f) & (e < 0)
            e = np.where(cigale_ul, -e, e)
        has_e = np.isfinite(e)
        bad = has_e & (e <= 0)
        if bad.any():
            hint = "" if self.cigale_limits else (" (CIGALE marks upper limits with a negative error: set "
                                                  "accept_cigale_upper_limits to read them that way)")
            raise CatalogError(spec.error_column, f"errors must be positive: {self.rows_text(bad, ids)}{hint}",
                               setting=here + ("error_column",))
        has_f = np.isfinite(f)
        flagged = (self.flags(spec.upper_limit_column, here + ("upper_limit_column",)) if spec.upper_limit_column
                   else np.zeros(f.shape, bool))

        # Flagged limits: at the flux if positive, else at nsigma x error.
        flag_at_flux = (flagged & has_f & (f > 0)) | cigale_ul  # CIGALE's limits sit at the flux value
        flag_ul = flag_at_flux | (flagged & has_e)
        # Unflagged non-detections: no flux (or a negative one) but a noise level.
        negative = has_f & (f < 0) & self.negative_is_limit & ~cigale_ul
        noise_ul = ~flagged & ~cigale_ul & has_e & (~has_f | negative)
        upper = flag_ul | noise_ul
        detected = ~flagged & ~cigale_ul & has_f & has_e & ~negative

        limit = np.where(flag_at_flux, f, self.nsigma * e)
        sigma = np.where(has_e, e, limit / self.nsigma)
        flux = np.where(upper, limit, np.where(detected, f, np.nan))
        error = np.where(upper, sigma, np.where(detected, e, np.nan))
        return flux, error, upper | detected, upper


def check_unique_ids(ids: np.ndarray, id_column: str, path: str | None = None) -> None:
    """Raise a CatalogError naming the duplicates (at most five) when ``ids`` are not unique (e.g. the ids of the
    whole catalogue after its slices were read apart)."""
    uniq, counts = np.unique(ids, return_counts=True)
    if np.any(counts > 1):
        dups = uniq[counts > 1]
        shown = ", ".join(str(d) for d in dups[:5]) + (", ..." if dups.size > 5 else "")
        raise CatalogError(id_column, f"duplicate ids: {shown}", path=path, setting=("id_column",))


def _option_name(setting: Setting) -> str:
    """How an option's error names it: ``flux_unit``, ``bands[2].unit``."""
    if setting and setting[0] == "bands" and len(setting) == 3:
        return f"bands[{setting[1]}].{setting[2]}"
    return ".".join(str(part) for part in setting)


def _same_unit(a: u.UnitBase, b: u.UnitBase) -> bool:
    try:
        return bool(np.isclose(a.to(b), 1.0, rtol=1e-12, atol=0.0))
    except u.UnitConversionError:
        return False


def _luminosity_distance_mpc(redshift: np.ndarray, cosmology: Any) -> np.ndarray:
    import astropy.cosmology as cosmo_mod

    if cosmology is None:
        cosmo = cosmo_mod.default_cosmology.get()
    elif isinstance(cosmology, str):
        available = list(cosmo_mod.realizations.available)
        if cosmology not in available:
            raise CatalogError("cosmology", f"unknown cosmology {cosmology!r} (available: {', '.join(available)})",
                               kind="option", setting=("cosmology",))
        cosmo = getattr(cosmo_mod, cosmology)
    else:
        cosmo = cosmology
    if redshift.size == 0:  # a zero-row table (a layout check, an empty slice): astropy cannot vectorise over none
        return np.zeros(0)
    return cosmo.luminosity_distance(redshift).to_value(u.Mpc)
