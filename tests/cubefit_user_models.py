"""User line shapes for the cubefit tests: what a scientist's own module would hold, imported by every rank as
``cubefit_user_models:Name`` (the tests put this folder on PYTHONPATH)."""

from __future__ import annotations

import numpy as np
from astropy.modeling import Fittable1DModel, Parameter, custom_model
from astropy.modeling.models import Gaussian1D


def lorentzian(x, amplitude=1.0, x0=0.0, fwhm=1.0):
    """A Lorentzian line (made a model with custom_model; no fit_deriv: finite differences)."""
    half = 0.5 * fwhm
    return amplitude * half**2 / ((x - x0) ** 2 + half**2)


Lorentzian = custom_model(lorentzian)


class SkewGaussian1D(Fittable1DModel):
    """A Gaussian with a linear skew term, with an analytic fit_deriv (the batched solver uses it)."""

    amplitude = Parameter(default=1.0)
    mean = Parameter(default=0.0)
    stddev = Parameter(default=1.0, bounds=(1e-3, None))
    skew = Parameter(default=0.0)

    @staticmethod
    def evaluate(x, amplitude, mean, stddev, skew):
        z = (x - mean) / stddev
        return amplitude * np.exp(-0.5 * z**2) * (1.0 + skew * z)

    @staticmethod
    def fit_deriv(x, amplitude, mean, stddev, skew):
        z = (x - mean) / stddev
        g = np.exp(-0.5 * z**2)
        shape = 1.0 + skew * z
        d_amplitude = g * shape
        dz_dmean, dz_dstddev = -1.0 / stddev, -z / stddev
        d_z = amplitude * g * (skew - z * shape)  # d(model)/dz
        return [d_amplitude, d_z * dz_dmean, d_z * dz_dstddev, amplitude * g * z]


#: a model instance: its values and bounds are the defaults the config refines
WIDE_GAUSSIAN = Gaussian1D(amplitude=2.0, mean=20.0, stddev=4.0, bounds={"stddev": (0.5, 15.0)})

NOT_A_MODEL = {"amplitude": 1.0}
