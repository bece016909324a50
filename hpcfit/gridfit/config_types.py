"""Value types of the gridfit job's config section (``hpcfit.gridfit.job.SCHEMA``): grid axes and bands.

Grid axes take a number, a list, or a spacing spec with numpy's meaning: ``{linspace: [start, stop, num]}``,
``{logspace: [start, stop, num]}`` (values 10**start .. 10**stop) or ``{geomspace: [start, stop, num]}``
(values start .. stop, evenly spaced in log). Some axes also accept words (``all`` template values, ``umin``).
"""

from __future__ import annotations

from typing import Any

import re

import numpy as np

from hpcfit.config.schema import Bool, Choice, Context, Field, Invalid, Optional, PathT, Record, Str, Type

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

    def json_schema(self) -> dict[str, Any]:
        """What an editor is told (``hpcfit schema --json``): a number, a list, a word or one spacing spec."""
        # YAML 1.1 reads 1e6 (no dot) as a string, which convert() accepts: any string passes here, the loader
        # tells a word from a number written so
        scalar = {"type": ["number", "string"]}
        spacing = {"type": "object", "minProperties": 1, "maxProperties": 1,
                   "properties": {kind: {"type": "array", "minItems": 3, "maxItems": 3,
                                         "prefixItems": [{"type": "number"}, {"type": "number"},
                                                         {"type": "integer", "minimum": 1,
                                                          "maximum": MAX_AXIS_VALUES}]}
                                  for kind in SPACINGS},
                   "additionalProperties": False}
        options = [scalar, {"type": "array", "minItems": 1, "items": scalar}, spacing]
        if self.nullable:
            options.append({"type": "null"})
        return {"anyOf": options}

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
        if num > 1 and not start < stop:
            # a reversed (or empty) range is a slip of the pen: the grid would hold the same values, or one value
            # num times over
            raise Invalid(f"start ({start:g}) must be below stop ({stop:g})", "start < stop", (kind,))
        return [float(v) for v in getattr(np, kind)(float(start), float(stop), num)]


BAND = Record({
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


_TARGET = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


class ModelName(Type):
    """A built-in model name, or a user model as ``package.module:callable``."""

    def __init__(self, builtins: tuple[str, ...]):
        self.builtins = builtins

    def describe(self) -> str:
        return "one of: " + ", ".join(f"`{v}`" for v in self.builtins) + ", or `package.module:callable`"

    def convert(self, value: Any, ctx: Context) -> str:
        if isinstance(value, str) and (value in self.builtins or _TARGET.match(value)):
            return value
        import difflib

        close = difflib.get_close_matches(str(value), list(self.builtins), n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise Invalid(f"{value!r} is neither a built-in model nor package.module:callable{hint}",
                      ", ".join(self.builtins) + ", or package.module:callable")
