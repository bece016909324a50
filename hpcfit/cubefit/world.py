"""World coordinates for cubefit: the coordinates of the fitting axes (the model's inputs) and of the
iterating axes (stored as maps under ``/world``).

Sources: the FITS header's WCS, explicit 1-D coordinate arrays (one per fitting axis, with units), or pixel
indices. With a WCS, the fitting axes' coordinates are computed once and shared by every spectrum when the WCS
separates them from the iterating axes (the usual spectral cube); otherwise they are computed per spectrum.
Coordinates can be converted to a unit the user prefers (``world.units``), spectral equivalencies allowed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from astropy import units as u


class WorldError(ValueError):
    def __init__(self, path: str, message: str):
        super().__init__(message)
        self.path, self.message = path, message


def _axis_name(ctype: str, physical: str | None, index: int, taken: set[str]) -> str:
    base = re.split(r"-+", ctype.strip())[0].lower() if ctype and ctype.strip() else ""
    if not base and physical:
        base = physical.split(".")[-1].lower()
    base = base or f"axis{index}"
    name, n = base, 1
    while name in taken:
        n += 1
        name = f"{base}{n}"
    taken.add(name)
    return name


@dataclass
class World:
    """Coordinates for one cube: numpy axis order throughout."""

    shape: tuple[int, ...]
    fitting_axes: tuple[int, ...]
    fitting_names: list[str]
    fitting_units: list[u.UnitBase | None]
    shared: list[np.ndarray] | None = None          # each (n_fit,) flattened over the fitting sub-grid
    wcs: Any = None                                  # for per-spectrum coordinates and iterating maps
    iterating: list[tuple[str, str, int]] = field(default_factory=list)  # (name, unit, world axis index)
    _fit_world_axes: list[int] = field(default_factory=list)
    _fit_scale: list[tuple[u.UnitBase, u.UnitBase] | None] = field(default_factory=list)

    @property
    def iterating_axes(self) -> tuple[int, ...]:
        return tuple(i for i in range(len(self.shape)) if i not in self.fitting_axes)

    @property
    def fitting_shape(self) -> tuple[int, ...]:
        return tuple(self.shape[i] for i in self.fitting_axes)

    def fitting_coords(self, iter_index: np.ndarray) -> tuple[np.ndarray, ...]:
        """Model inputs for the spectra at ``iter_index`` (B, n_iterating_axes): shared (n,) or (B, n)."""
        if self.shared is not None:
            return tuple(self.shared)
        grids = np.meshgrid(*[np.arange(n) for n in self.fitting_shape], indexing="ij")
        n_fit = grids[0].size if grids else 1
        batch = iter_index.shape[0]
        pixel = np.empty((len(self.shape), batch, n_fit))
        for k, axis in enumerate(self.iterating_axes):
            pixel[axis] = iter_index[:, k:k + 1]
        for k, axis in enumerate(self.fitting_axes):
            pixel[axis] = grids[k].ravel()[None, :]
        values = self.wcs.array_index_to_world_values(*pixel)
        values = [np.asarray(values)] if self.wcs.world_n_dim == 1 else values
        return tuple(self._convert(k, np.asarray(values[w])) for k, w in enumerate(self._fit_world_axes))

    def iterating_values(self, iter_index: np.ndarray) -> dict[str, np.ndarray]:
        """World coordinates of the iterating axes at ``iter_index`` (first pixel along the fitting axes)."""
        if self.wcs is None or not self.iterating:
            return {}
        pixel = np.zeros((len(self.shape), iter_index.shape[0]))
        for k, axis in enumerate(self.iterating_axes):
            pixel[axis] = iter_index[:, k]
        values = self.wcs.array_index_to_world_values(*pixel)
        values = [np.asarray(values)] if self.wcs.world_n_dim == 1 else values
        return {name: np.asarray(values[w], dtype=float) for name, _, w in self.iterating}

    def iterating_header(self) -> str:
        """The WCS of the iterating axes alone (the celestial WCS of a spectral cube) as a FITS header string, so
        the parameter maps can be drawn and exported with it; "" without a WCS or when those axes' world
        coordinates also depend on the fitting axes (no WCS of the maps alone exists then)."""
        if self.wcs is None:
            return ""
        ndim = len(self.shape)
        corr = self.wcs.axis_correlation_matrix
        iter_pix = [ndim - 1 - a for a in self.iterating_axes]
        fit_pix = [ndim - 1 - a for a in self.fitting_axes]
        iter_world = [w for w in range(self.wcs.world_n_dim) if any(corr[w, p] for p in iter_pix)]
        if any(corr[w, p] for w in iter_world for p in fit_pix):
            return ""
        # FITS pairs pixel axis i with world axis i, so sub() of the iterating FITS axes keeps exactly those.
        return self.wcs.sub(sorted(p + 1 for p in iter_pix)).to_header_string()

    def _convert(self, k: int, values: np.ndarray) -> np.ndarray:
        scale = self._fit_scale[k] if self._fit_scale else None
        if scale is None:
            return values
        return (values * scale[0]).to_value(scale[1], equivalencies=u.spectral())


def build_world(spec: dict[str, Any], *, shape: tuple[int, ...], fitting_axes: tuple[int, ...],
                header: Any) -> World:
    """Coordinates for the cube from the validated ``cubefit.world`` settings."""
    source = spec.get("source", "auto")
    ndim = len(shape)
    fit_shape = tuple(shape[i] for i in fitting_axes)
    wanted = spec.get("units")
    if wanted is not None and len(wanted) != len(fitting_axes):
        raise WorldError("units", f"give one unit per fitting axis ({len(fitting_axes)})")
    if source == "auto":
        source = "wcs" if header is not None and _has_wcs(header) else "pixel"
    if source == "pixel":
        grids = np.meshgrid(*[np.arange(n, dtype=float) for n in fit_shape], indexing="ij")
        return World(shape, fitting_axes, [f"pixel{a}" for a in fitting_axes], [None] * len(fitting_axes),
                     shared=[g.ravel() for g in grids])
    if source == "arrays":
        arrays = spec.get("arrays")
        if not arrays or len(arrays) != len(fitting_axes):
            raise WorldError("arrays", f"give one coordinate array per fitting axis ({len(fitting_axes)})")
        axes = []
        for k, (item, n) in enumerate(zip(arrays, fit_shape)):
            values = np.load(item) if isinstance(item, str) else np.asarray(item, dtype=float)
            if values.ndim != 1 or values.shape[0] != n:
                raise WorldError(f"arrays.{k}", f"expected {n} coordinates (the length of axis {fitting_axes[k]}), "
                                                f"got shape {values.shape}")
            axes.append(values.astype(float))
        units = [u.Unit(x) if x else None for x in (wanted or [None] * len(axes))]
        grids = np.meshgrid(*axes, indexing="ij")
        return World(shape, fitting_axes, [f"axis{a}" for a in fitting_axes], units,
                     shared=[g.ravel() for g in grids])

    # source == "wcs"
    if header is None or not _has_wcs(header):
        raise WorldError("source", "the data have no FITS header with a WCS: use world: pixel or world: arrays")
    from astropy.wcs import WCS

    wcs = WCS(header)
    if wcs.pixel_n_dim != ndim:
        raise WorldError("source", f"the WCS has {wcs.pixel_n_dim} pixel axes but the data have {ndim}")
    corr = wcs.axis_correlation_matrix  # world x pixel, pixel axes in FITS order (reverse of numpy)
    pix = {axis: ndim - 1 - axis for axis in range(ndim)}
    fit_pix = [pix[a] for a in fitting_axes]
    iter_pix = [pix[a] for a in range(ndim) if a not in fitting_axes]
    fit_world = []
    for p in fit_pix:
        candidates = [w for w in range(wcs.world_n_dim) if corr[w, p] and w not in fit_world]
        if not candidates:
            raise WorldError("source", f"no WCS world axis depends on fitting axis {ndim - 1 - p}")
        fit_world.append(candidates[0])
    separable = not any(corr[w, p] for w in fit_world for p in iter_pix)
    taken: set[str] = set()
    ctypes, phys, units_raw = list(wcs.wcs.ctype), wcs.world_axis_physical_types, wcs.world_axis_units
    names = [_axis_name(ctypes[w], phys[w], w, taken) for w in fit_world]
    native = [u.Unit(units_raw[w]) if units_raw[w] else None for w in fit_world]
    scales: list[tuple[u.UnitBase, u.UnitBase] | None] = []
    units: list[u.UnitBase | None] = []
    for k, unit in enumerate(native):
        target = u.Unit(wanted[k]) if wanted and wanted[k] else None
        if target is not None and unit is None:
            raise WorldError(f"units.{k}", "the WCS gives no unit for this axis: cannot convert it")
        if target is not None and unit is not None and unit != target:
            try:
                (1 * unit).to(target, equivalencies=u.spectral())
            except u.UnitsError:
                raise WorldError(f"units.{k}", f"the WCS unit '{unit}' cannot be converted to '{target}'") from None
            scales.append((unit, target))
            units.append(target)
        else:
            scales.append(None)
            units.append(unit)
    iterating = []
    for w in range(wcs.world_n_dim):
        if w not in fit_world and any(corr[w, p] for p in iter_pix):
            iterating.append((_axis_name(ctypes[w], phys[w], w, taken), units_raw[w] or "", w))
    world = World(shape, fitting_axes, names, units, wcs=wcs, iterating=iterating,
                  _fit_world_axes=fit_world, _fit_scale=scales)
    if separable:
        first = np.zeros((1, ndim - len(fitting_axes)), dtype=int)
        world.shared = [c[0] if c.ndim == 2 else c for c in world.fitting_coords(first)]
    return world


def _has_wcs(header: Any) -> bool:
    return any(key.startswith("CTYPE") for key in header.keys())


@dataclass
class PerFitWorld(World):
    """World coordinates given as N-d arrays broadcastable to the data (astropy's ``world=`` tuple of N-d arrays):
    each fit has its own coordinates, taken from ``per_fit`` (one (n_iterating, n_fit) array per fitting axis)."""

    per_fit: list[np.ndarray] = field(default_factory=list)

    def fitting_coords(self, iter_index: np.ndarray) -> tuple[np.ndarray, ...]:
        iter_shape = tuple(self.shape[i] for i in self.iterating_axes)
        flat = np.ravel_multi_index(tuple(iter_index.T), iter_shape)
        return tuple(values[flat] for values in self.per_fit)


def world_from_nd_arrays(arrays: list[np.ndarray], units: list[u.UnitBase | None], *, shape: tuple[int, ...],
                         fitting_axes: tuple[int, ...]) -> World:
    """Per-fit coordinates from arrays broadcastable to the data ``shape`` (one per fitting axis)."""
    order = [i for i in range(len(shape)) if i not in fitting_axes] + list(fitting_axes)
    n_iter = int(np.prod([shape[i] for i in range(len(shape)) if i not in fitting_axes]))
    per_fit = []
    for k, values in enumerate(arrays):
        try:
            full = np.broadcast_to(np.asarray(values, dtype=float), shape)
        except ValueError:
            raise WorldError(f"arrays.{k}", f"shape {np.shape(values)} does not broadcast to the data's {shape}") \
                from None
        per_fit.append(np.ascontiguousarray(np.moveaxis(full, order, list(range(len(shape))))).reshape(n_iter, -1))
    return PerFitWorld(shape, fitting_axes, [f"axis{a}" for a in fitting_axes], list(units), per_fit=per_fit)
