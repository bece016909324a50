"""The fitted model as astropy's ``parallel_fit_dask`` returns it: a copy of the (unitless) model that was fitted,
with one array per parameter shaped like the map (NaN for failed fits), units put back from the data's units.

Shared by ``hpcfit.parallel_fit`` (both its in-process and its ``ranks=N`` path) and by ``CubefitResult.model``
(a model rebuilt from an output file), so all three give the same object.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from astropy import units as u
from astropy.modeling import Model


def units_rename(model: Model, input_units: Sequence[u.UnitBase | None],
                 data_unit: u.UnitBase | None) -> dict[str, object]:
    """The ``rename_data`` astropy's parallel_fit_dask hands to ``without_units_for_data`` and
    ``with_units_from_data``: a zero of each input's and of the output's unit, keyed by the model's own names."""
    rename: dict[str, object] = {}
    for name, unit in zip(model.inputs, input_units):
        rename[name] = (0,) * (unit if unit is not None else u.dimensionless_unscaled)
    rename[model.outputs[0]] = (0,) * (data_unit if data_unit is not None else u.dimensionless_unscaled)
    if model.n_inputs == 1:
        rename["z"] = None
    return rename


def fitted_model(model: Model, values: Mapping[str, np.ndarray], rename: Mapping[str, object] | None) -> Model:
    """A copy of the unitless ``model`` whose parameters are ``values`` (astropy name -> array over the map);
    with ``rename`` (from :func:`units_rename`) the units are put back as astropy does."""
    fitted = model.copy()
    fitted._reset_parameters(**{name: np.asarray(values[name], dtype=float) for name in model.param_names})
    if rename is not None:
        fitted = fitted.with_units_from_data(**rename)
    return fitted
