"""A cubefit output file read back as astropy objects: what ``hpcfit.open(path)`` returns for a cubefit run.

``CubefitResult(path)`` gives the parameter maps as Quantities (``maps``, ``uncertainties``), the fitted model with
array parameters (``model``: what astropy's ``parallel_fit_dask`` returns), the fit status and fit_info maps, the
world coordinates of the iterating axes and their WCS (``wcs``: the cube's celestial WCS for a spectral cube), and
``to_fits`` (one image HDU per map, with ``BUNIT`` and the WCS; ``hpcfit export`` calls it). Datasets are read when
asked for.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from hpcfit.io.result import JobResult, ResultFileError

STATUS_MEANING = "0 converged, 1 converged with warning, 2 failed"


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _unit(text: str) -> Any:
    from astropy import units as u

    return u.Unit(text) if text else u.dimensionless_unscaled


def _fits_unit(unit: Any) -> str:
    """BUNIT text: the FITS spelling when the unit has one ("m s-1"), else astropy's; "" when dimensionless."""
    from astropy import units as u

    if unit == u.dimensionless_unscaled:
        return ""
    try:
        return unit.to_string("fits")
    except (ValueError, u.UnitsError):
        return unit.to_string()


def _expand_shorthands(model: dict[str, Any]) -> dict[str, Any]:
    """The stored (already validated) ``cubefit.model`` text with the parameters' shorthand spelled out
    (``amplitude: 1.0`` is ``{value: 1.0}``): all ``build_model`` needs, as it reads every other key with defaults."""
    def parameters(section: dict[str, Any]) -> dict[str, Any]:
        found = section.get("parameters") or {}
        return {**section, "parameters": {name: value if isinstance(value, dict) else {"value": value}
                                          for name, value in found.items()}}

    out = parameters(model)
    if model.get("components"):
        out["components"] = [parameters(component) for component in model["components"]]
    return out


class CubefitResult(JobResult):
    """A cubefit output file (see ``hpcfit/cubefit/job.py`` for its layout)."""

    job = "cubefit"

    # -- what the file holds ------------------------------------------------------------------------------------
    @property
    def names(self) -> list[str]:
        """Parameter names in model order (``line1.mean`` for a component of a compound model)."""
        order = self.attrs.get("cubefit_parameters")
        if order is not None and len(order):
            return [_text(n) for n in order]
        with self.h5() as h5:  # files written before the order was stored: alphabetical
            return list(h5["parameters"])

    def _group(self, group: str) -> dict[str, Any]:
        from astropy import units as u

        out: dict[str, Any] = {}
        with self.h5() as h5:
            if group not in h5:
                return out
            names = [n for n in self.names if n in h5[group]] if group != "world" else list(h5[group])
            for name in names:
                d = h5[f"{group}/{name}"]
                out[name] = u.Quantity(d[()], _unit(_text(d.attrs.get("unit", ""))), copy=False)
        return out

    @property
    def maps(self) -> dict[str, Any]:
        """Parameter name -> Quantity map over the iterating axes, in the unit it was fitted in; NaN where the fit
        failed."""
        return self._group("parameters")

    @property
    def uncertainties(self) -> dict[str, Any]:
        """Parameter name -> 1-sigma Quantity map (free parameters; empty when the run stored none)."""
        return self._group("uncertainties")

    @property
    def world(self) -> dict[str, Any]:
        """World coordinates of the iterating axes (e.g. ``ra``, ``dec``) as Quantity maps."""
        return self._group("world")

    @property
    def status(self) -> np.ndarray:
        """int8 map: 0 converged, 1 converged with warning, 2 failed."""
        with self.h5() as h5:
            return h5["status"][()]

    @property
    def fit_info(self) -> dict[str, np.ndarray]:
        """fit_info key -> map (the numeric entries the run stored)."""
        with self.h5() as h5:
            return {key: h5[f"fit_info/{key}"][()] for key in h5.get("fit_info", {})}

    @property
    def shape(self) -> tuple[int, ...]:
        with self.h5() as h5:
            return tuple(h5["status"].shape)

    @property
    def wcs(self) -> Any:
        """The WCS of the maps (the cube's celestial WCS for a spectral cube), or None when the cube had none."""
        header = _text(self.attrs.get("cubefit_wcs", ""))
        if not header:
            return None
        from astropy.io import fits
        from astropy.wcs import WCS

        return WCS(fits.Header.fromstring(header))

    @property
    def input_units(self) -> list[Any]:
        """The unit of each model input (the fitting axes' coordinates), None for pixel coordinates."""
        from astropy import units as u

        stored = self.attrs.get("cubefit_input_units")
        if stored is None:  # older files: "name: unit, ..." text
            pairs = [p.rsplit(": ", 1)[-1] for p in _text(self.attrs.get("cubefit_fitting_units", "")).split(", ")]
            stored = ["" if p in ("none", "") else p for p in pairs]
        return [u.Unit(_text(x)) if _text(x) else None for x in stored]

    @property
    def data_unit(self) -> Any:
        from astropy import units as u

        text = _text(self.attrs.get("cubefit_data_unit", ""))
        return u.Unit(text) if text else None

    # -- the fitted model ---------------------------------------------------------------------------------------
    @property
    def model(self) -> Any:
        """The fitted model, as astropy's ``parallel_fit_dask`` returns it: the model class of the config, each
        parameter an array shaped like the map (NaN for failed fits), in the units the data imply."""
        from hpcfit.cubefit.fitted_model import fitted_model, units_rename

        built = self.built_model()
        maps = self.maps
        values = {p.astropy_name: maps[p.name].value for p in built.parameters}
        units = self.input_units
        rename = units_rename(built.model, units, self.data_unit) \
            if any(x is not None for x in units) or self.data_unit is not None else None
        return fitted_model(built.model, values, rename)

    def built_model(self) -> Any:
        """The unitless model the run fitted (with its bounds, fixed and tied parameters), from the stored config."""
        import yaml

        from hpcfit.cubefit.model_spec import ModelSpecError, build_model

        try:
            spec = _expand_shorthands((yaml.safe_load(self.config) or {})["cubefit"]["model"])
            return build_model(spec, input_units=self.input_units, data_unit=self.data_unit)
        except (KeyError, TypeError, AttributeError, yaml.YAMLError, ModelSpecError) as exc:
            raise ResultFileError(f"{self.path}: cannot rebuild the model from the stored config ({exc})") from None

    def figure(self, parameters: list[str] | None = None) -> Any:
        """The maps as a matplotlib Figure (on WCSAxes when the file has a WCS); see ``hpcfit.cubefit.plot``."""
        from hpcfit.cubefit.plot import maps_figure

        return maps_figure(self, parameters=parameters)

    # -- export -------------------------------------------------------------------------------------------------
    def to_fits(self, path: str | Path, overwrite: bool = False) -> Path:
        """Write the maps to a FITS file: an empty primary HDU (provenance), then one image HDU per parameter
        (``EXTNAME`` = its name, ``BUNIT`` = its unit, the maps' WCS), ``ERR_<name>`` per uncertainty map,
        ``STATUS`` and ``FITINFO_<key>`` maps. Any FITS viewer shows them on the sky."""
        from astropy.io import fits

        path = Path(path)
        if path.exists() and not overwrite:
            raise FileExistsError(f"{path} exists (pass overwrite=True, or --overwrite to hpcfit export)")
        wcs = self.wcs
        wcs_header = wcs.to_header() if wcs is not None else fits.Header()
        primary = fits.PrimaryHDU()
        primary.header["ORIGIN"] = "hpcfit"
        primary.header["HPCJOB"] = ("cubefit", "hpcfit job that wrote the source file")
        primary.header["HPCSRC"] = (self.path.name[:68], "hpcfit output file")
        primary.header["HPCVERS"] = (str(self.attrs.get("hpcfit_version", ""))[:68],
                                     "hpcfit version")
        model_text = _text(self.attrs.get("cubefit_model", ""))
        if model_text:
            primary.header.add_history(f"model: {model_text}"[:2000])
        hdus: list[Any] = [primary]

        def image(name: str, data: np.ndarray, unit: str = "", comment: str = "") -> None:
            hdu = fits.ImageHDU(np.asarray(data), header=wcs_header.copy(), name=name[:68].upper())
            if unit:
                hdu.header["BUNIT"] = unit
            hdu.header["HPCNAME"] = (name[:68], comment or "hpcfit map name")
            hdus.append(hdu)

        for name, q in self.maps.items():
            image(name, q.value, _fits_unit(q.unit), "fitted parameter")
        for name, q in self.uncertainties.items():
            image(f"ERR_{name}", q.value, _fits_unit(q.unit), "1-sigma uncertainty")
        image("STATUS", self.status.astype(np.int16), "", STATUS_MEANING)
        for key, values in self.fit_info.items():
            image(f"FITINFO_{key}", values, "", f"fit_info['{key}']")
        path.parent.mkdir(parents=True, exist_ok=True)
        fits.HDUList(hdus).writeto(path, overwrite=overwrite)
        return path


RESULT = CubefitResult
