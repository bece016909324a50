"""A minimal forward-model plug-in, as a template for users: ``model: hpcfit.models.sed.example_plugin:SPEC``.

It models a source with a power-law spectrum L_nu = L_0 (nu / nu_0)^slope (nu_0 at 5500 A), luminosity scaled by
``mass`` (L_0 = mass x 1e14 W/Hz per 1e10 Msun), observed at ``redshift``, and returns maggies through the job's
filters. It shows the three things a plug-in provides: a factory called once per rank with (filters, options,
bounds); a model object with ``param_names``, ``filter_names``, ``wavelengths``, ``description`` and a batched
``__call__``; and (optionally, but it lets the config validator check names and ranges early) a ``ModelSpec``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from hpcfit.models.sed.constants import AB_ZERO_POINT_SI, MIN_LUMINOSITY_DISTANCE_M
from hpcfit.models.sed.plugin import ModelSpec, OptionSpec, ParamSpec, as_param_dict


class PowerLawModel:
    """Maggies of a redshifted power-law spectrum; exact band averages of a power law on a fine grid."""

    param_names = ("redshift", "mass", "slope")

    def __init__(self, filters: Any, cosmology_name: str = "Planck18", z_max: float = 10.0):
        from hpcfit.models.filters import load_filter_set
        from hpcfit.models.sed.cosmology import DistanceTable

        self.filters = load_filter_set(filters)
        self.filter_names = tuple(self.filters.names)
        self.wavelengths = self.filters.pivot_wavelengths
        self.description = f"power-law L_nu ~ nu^slope, cosmology {cosmology_name}"
        self.distances = DistanceTable(cosmology_name, z_max=z_max)
        # <(lambda_obs / (1+z) / 5500)^-slope> over each band = (1+z)^slope * <(lambda_obs / 5500)^-slope>: tabulate
        # the band average of (lambda / 5500)^-slope against slope once, then interpolate (smooth in slope).
        self.slopes = np.linspace(-5.0, 5.0, 401)
        grid = np.geomspace(min(f.wavelength[0] for f in self.filters), max(f.wavelength[-1] for f in self.filters), 4000)
        weights = np.stack([f.weights(grid) for f in self.filters], axis=1)  # (n_lambda, F)
        self.band_powers = ((grid[None, :] / 5500.0) ** -self.slopes[:, None]) @ weights  # (n_slope, F)

    def __call__(self, params: Mapping[str, np.ndarray] | np.ndarray) -> np.ndarray:
        p = as_param_dict(params, self.param_names)
        z, mass, slope = p["redshift"], p["mass"], p["slope"]
        band = np.stack([np.interp(slope, self.slopes, self.band_powers[:, f]) for f in range(len(self.filters))], 1)
        l_0 = 1e14 * mass / 1e10
        d_l = np.maximum(self.distances.luminosity_distance_m(z), MIN_LUMINOSITY_DISTANCE_M)
        scale = (1.0 + z) ** (1.0 + slope) * l_0 / (4.0 * np.pi * d_l**2 * AB_ZERO_POINT_SI)
        return band * scale[:, None]


def make_power_law_model(*, filters: Any, options: Mapping[str, Any], bounds: Mapping[str, Any]) -> PowerLawModel:
    """The plug-in factory: called once per rank."""
    z_max = float(bounds.get("redshift", (0.0, 10.0))[1])
    return PowerLawModel(filters, cosmology_name=options.get("cosmology", "Planck18"), z_max=max(z_max, 1e-3))


SPEC = ModelSpec(
    name="power_law_example",
    params=(
        ParamSpec("redshift", 0.0, 20.0, "", "source redshift"),
        ParamSpec("mass", 0.0, 1e15, "Msun", "luminosity scale"),
        ParamSpec("slope", -5.0, 5.0, "", "L_nu ~ nu^slope"),
    ),
    factory=make_power_law_model,
    options=(OptionSpec("cosmology", "Planck18", "astropy cosmology name", None, str),),
    doc=__doc__ or "",
)
