"""The prior of each free parameter of the sample job: how a draw in [0, 1) becomes a parameter value.

A free parameter is given as ``[low, high]`` (uniform, as before) or as a mapping
``{bounds: [low, high], prior: uniform | log_uniform | normal | clipped_normal, mu: ..., sigma: ...}``
(agnfinder's ``Parameter`` with a prospector prior). Every prior maps the same unit draws (the counter-based,
rank-independent design of ``hpcfit.sample.hypercube``) through its inverse CDF, so draws stay reproducible, a
Latin hypercube stays stratified in probability and the partition axis stays banded by index. Values are in the
sampled space of the column (a ``log_*`` column in log10, as its bounds and ``mu``/``sigma``).

* ``uniform``: ``low + (high - low) u`` (bit for bit the job's formula before priors existed).
* ``log_uniform``: uniform in log between ``low > 0`` and ``high``.
* ``normal``: N(mu, sigma), not truncated: ``bounds`` are only the box reported in the file (draws stop at
  about 8.2 sigma, where the unit draw's resolution ends).
* ``clipped_normal``: N(mu, sigma) truncated to ``bounds`` (prospector's ``ClippedNormal``).

MPI-free science: arrays in, arrays out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

PRIORS = ("uniform", "log_uniform", "normal", "clipped_normal")
_NORMALS = ("normal", "clipped_normal")
# The unit draws are doubles in [0, 1): keep them inside (0, 1) so that the normal's inverse CDF stays finite.
_TINY = 2.0 ** -53


@dataclass(frozen=True)
class Prior:
    """One free parameter's prior, in its sampled space."""

    kind: str
    low: float
    high: float
    mu: float | None = None
    sigma: float | None = None

    def problems(self, log_axis: bool = False) -> list[tuple[str, str, str | None]]:
        """(sub-key, message, allowed values) for each problem of this prior (empty when it is valid)."""
        out: list[tuple[str, str, str | None]] = []
        if self.kind not in PRIORS:
            out.append(("prior", f"unknown prior '{self.kind}'", ", ".join(PRIORS)))
            return out
        if self.kind in _NORMALS:
            for key in ("mu", "sigma"):
                if getattr(self, key) is None:
                    out.append((key, f"the {self.kind} prior needs {key}", None))
            if self.sigma is not None and not (np.isfinite(self.sigma) and self.sigma > 0):
                out.append(("sigma", f"sigma must be positive, got {self.sigma:g}", None))
        else:
            for key in ("mu", "sigma"):
                if getattr(self, key) is not None:
                    out.append((key, f"only the normal priors take {key} (this one is {self.kind})",
                                "normal, clipped_normal"))
        if self.kind == "log_uniform":
            if log_axis:
                out.append(("prior", "a log_* parameter is already drawn in log10: give it a uniform prior",
                            "uniform, normal, clipped_normal"))
            elif not self.low > 0:
                out.append(("bounds", f"a log_uniform prior needs low > 0, got {self.low:g}", None))
        return out

    def ppf(self, unit: np.ndarray) -> np.ndarray:
        """Parameter values for unit draws ``unit`` in [0, 1) (the inverse CDF)."""
        unit = np.asarray(unit, dtype=float)
        if self.kind == "uniform":
            return self.low + (self.high - self.low) * unit
        if self.kind == "log_uniform":
            log_low, log_high = np.log(self.low), np.log(self.high)
            return np.exp(log_low + (log_high - log_low) * unit)
        inside = np.clip(unit, _TINY, 1.0 - _TINY)
        if self.kind == "normal":
            from scipy.special import ndtri

            return self.mu + self.sigma * ndtri(inside)
        from scipy.stats import truncnorm

        a, b = (self.low - self.mu) / self.sigma, (self.high - self.mu) / self.sigma
        # truncnorm's ppf works in the tail the interval lies in, so a far-off-centre clip range stays exact;
        # the clip keeps rounding from stepping past the bounds
        return np.clip(truncnorm.ppf(inside, a, b, loc=self.mu, scale=self.sigma), self.low, self.high)

    def reach(self) -> tuple[float, float]:
        """The smallest and largest values a draw can take (the bounds, except for the untruncated normal)."""
        if self.kind == "normal":
            low, high = self.ppf(np.array([0.0, 1.0 - _TINY]))
            return float(low), float(high)
        return self.low, self.high

    def band(self, first: int, last: int, n: int) -> tuple[float, float]:
        """The values of the draws of global indices first..last-1 along the partition axis (stratified by index:
        draw i lies in [i/n, (i+1)/n))."""
        if self.kind == "uniform":  # the job's formula before priors existed, kept bit for bit
            return (self.low + (self.high - self.low) * first / n, self.low + (self.high - self.low) * last / n)
        low, high = self.ppf(np.array([first / n, min(last / n, 1.0 - _TINY)]))
        return float(low), float(high)

    def describe(self) -> dict[str, Any]:
        entry: dict[str, Any] = {"prior": self.kind, "low": self.low, "high": self.high}
        if self.kind in _NORMALS:
            entry.update(mu=self.mu, sigma=self.sigma)
        return entry


def prior_of(value: Any) -> Prior:
    """The Prior of a ``free_params`` entry: ``[low, high]`` or the validated mapping."""
    if isinstance(value, (list, tuple)):
        return Prior("uniform", float(value[0]), float(value[1]))
    low, high = value["bounds"]
    return Prior(value.get("prior") or "uniform", float(low), float(high), value.get("mu"), value.get("sigma"))


def prior_attrs(priors: list[Prior]) -> dict[str, Any]:
    """The output's record of the priors (attributes of /samples/theta): ``prior`` (one name per column), and
    ``mu``, ``sigma`` (NaN where a prior has none)."""
    return {"prior": [p.kind for p in priors],
            "mu": np.array([np.nan if p.mu is None else p.mu for p in priors]),
            "sigma": np.array([np.nan if p.sigma is None else p.sigma for p in priors])}


def apply_priors(theta: np.ndarray, unit: np.ndarray, priors: list[Prior]) -> np.ndarray:
    """Replace the columns of ``theta`` (computed with the uniform formula) whose prior is not uniform."""
    for j, prior in enumerate(priors):
        if prior.kind != "uniform":
            theta[:, j] = prior.ppf(unit[:, j])
    return theta
