"""Reading a gridfit output file: the per-galaxy results as an astropy ``QTable`` in units, the chi2 array when the
run kept it, the bands and the model grid (``hpcfit.open(path)`` returns a :class:`GridfitResult`).

The table has the columns (and names) of the run's CIGALE-like results table (``hpcfit.gridfit.results_table``):
``id``, ``n_bands``, ``n_upper_limits``, ``best.*`` (model index, chi2, parameters, dust mass and luminosity, the
best model's flux in each band) and ``bayes.<quantity>`` / ``bayes.<quantity>_err``, plus ``distance``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hpcfit.io.result import JobResult, LazyDataset, ResultFileError, decoded, unit_of, with_unit


class GridfitResult(JobResult):
    """A gridfit output file. ``.table``: one row per galaxy; ``.chi2``: (galaxies, models) when kept."""

    job = "gridfit"

    @property
    def ids(self) -> np.ndarray:
        """The catalogue's galaxy ids (integers, or str)."""
        return self.read("ids")

    @property
    def bands(self) -> list[str]:
        """The band names, in the order of every per-band column and dataset."""
        return [str(b) for b in self.read("bands/name")]

    @property
    def wavelengths(self) -> Any:
        """Each band's nominal wavelength (a Quantity in micron)."""
        from astropy import units as u

        return self.read("bands/wavelength_um") * u.um

    @property
    def parameter_names(self) -> list[str]:
        """The grid's parameters (columns of ``.grid_parameters``)."""
        with self.h5() as h5:
            return [str(decoded(n)) for n in h5["grid/parameters"].attrs["names"]]

    @property
    def grid_parameters(self) -> Any:
        """The model grid as a QTable: ``model_index`` then one column per grid parameter, in its unit."""
        from astropy.table import QTable

        with self.h5() as h5:
            dset = h5["grid/parameters"]
            names = [str(decoded(n)) for n in dset.attrs["names"]]
            units = [str(decoded(n)) for n in dset.attrs.get("units", [""] * len(names))]
            values = dset[()]
        table = QTable()
        table["model_index"] = np.arange(values.shape[0])
        for j, (name, unit) in enumerate(zip(names, units)):
            table[name] = with_unit(values[:, j], unit)
        return table

    @property
    def table(self) -> Any:
        """One row per galaxy: ``id``, ``distance``, ``n_bands``, ``n_upper_limits``, ``best.*`` and
        ``bayes.*`` columns in their units (``best.<band>``: the best model's flux density in mJy)."""
        from astropy.table import QTable

        table = QTable()
        with self.h5() as h5:
            table["id"] = decoded(h5["ids"][()])
            table["distance"] = with_unit(h5["distance_mpc"][()], "Mpc")
            for name in ("n_bands", "n_upper_limits"):
                table[name] = h5[name][()]
            bands = [str(b) for b in decoded(h5["bands/name"][()])]
            best = h5["best"]
            # the results table's order: index, chi2s, grid parameters, then the derived quantities
            params = [str(decoded(n)) for n in h5["grid/parameters"].attrs["names"]]
            first = ["model_index", "chi2", "reduced_chi2"] + params + ["dust_mass", "dust_luminosity", "scale"]
            for name in [n for n in first if n in best] + [n for n in best if n not in first and n != "fluxes"]:
                table[f"best.{name}"] = with_unit(best[name][()], unit_of(best[name]))
            fluxes = with_unit(best["fluxes"][()], unit_of(best["fluxes"]))
            for b, band in enumerate(bands):
                table[f"best.{band}"] = fluxes[:, b]
            bayes = h5.get("bayes", {})
            for name in bayes:
                table[f"bayes.{name}"] = with_unit(bayes[name][()], unit_of(bayes[name]))
        return table

    @property
    def has_chi2(self) -> bool:
        with self.h5() as h5:
            return "chi2" in h5

    @property
    def chi2(self) -> Any:
        """The chi2 of every (galaxy, model) pair, read lazily (an ``h5py`` dataset view: slice it, e.g.
        ``result.chi2[0]``; ``np.asarray`` reads it all). Only when the run kept it (``gridfit.fit.chi2: full``)."""
        if not self.has_chi2:
            raise ResultFileError(f"{self.path}: this run did not keep the chi2 array (it was run with "
                                  "gridfit.fit.chi2: best); rerun with --set gridfit.fit.chi2=full to keep it")
        return LazyDataset(self, "chi2")


RESULT = GridfitResult
