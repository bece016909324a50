"""The sample job's axis-naming rule, in one place: a free or fixed parameter named ``log_<p>`` is drawn (or given)
in log10 and feeds the model parameter ``<p>`` as ``10 ** value``; any other name feeds the model as it is."""

from __future__ import annotations

import numpy as np

LOG_PREFIX = "log_"


def is_log(param: str) -> bool:
    """True for an axis drawn in log10 (``log_mass``)."""
    return param.startswith(LOG_PREFIX)


def model_name(param: str) -> str:
    """The model parameter a sampled axis feeds: log_mass -> mass."""
    return param[len(LOG_PREFIX):] if is_log(param) else param


def to_model(param: str, value: float | np.ndarray) -> float | np.ndarray:
    """A value of the axis as the model sees it (linear units)."""
    return 10.0 ** value if is_log(param) else value


def linear_range(param: str, low: float, high: float) -> tuple[float, float]:
    """The axis range [low, high] in the model's linear units."""
    return to_model(param, low), to_model(param, high)
