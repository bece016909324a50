"""A fast analytic plug-in for the sample job's tests: a power law scaled by mass and 1/(1+z)^2.

``failing_factory`` builds the same model but raises for redshift > 3 (so only the rank owning the high-redshift
band fails), to test that a plug-in exception ends the job cleanly.
"""

import numpy as np

PARAMS = ("redshift", "mass", "dust2", "tage", "tau")


class ToyModel:
    param_names = PARAMS
    description = "toy power law (tests)"

    def __init__(self, filters, fail_above=None):
        self.filter_names = tuple(filters.names)
        self.wavelengths = np.asarray(filters.pivot_wavelengths, dtype=float)
        self.fail_above = fail_above

    def __call__(self, params):
        z = np.asarray(params["redshift"], dtype=float)
        if self.fail_above is not None and np.any(z > self.fail_above):
            raise RuntimeError(f"toy model refuses redshift > {self.fail_above}")
        slope = -0.5 - np.asarray(params["dust2"])[:, None]
        shape = (self.wavelengths[None, :] / 5000.0) ** slope
        scale = np.asarray(params["mass"])[:, None] * 1e-12 / (1.0 + z[:, None]) ** 2
        return scale * shape * (1 + 0.01 * np.asarray(params["tage"])[:, None] / np.asarray(params["tau"])[:, None])


def factory(*, filters, options, bounds):
    return ToyModel(filters)


def failing_factory(*, filters, options, bounds):
    return ToyModel(filters, fail_above=3.0)


factory.param_names = PARAMS
factory.valid_ranges = {"redshift": (0.0, 20.0), "mass": (0.0, 1e15), "dust2": (0.0, 10.0), "tage": (1e-4, 20.0),
                        "tau": (1e-3, 1e3)}
failing_factory.param_names = PARAMS
