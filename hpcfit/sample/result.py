"""Reading a sample output file: the training set as arrays for simulation-based inference
(``hpcfit.open(path)`` returns a :class:`SampleResult`).

``.theta`` (N, D) parameters in the sampled space and ``.x`` (N, F) simulated photometry (maggies) are read lazily:
slice them (``result.x[:10_000]``), or ``.numpy(max_rows=...)``, or ``np.asarray`` for everything. The rows are
stored shuffled, so the first rows are a random subset. ``.bounds`` is the prior box as two arrays, what sbi's
``BoxUniform(low, high)`` takes; ``.priors`` says which prior each parameter was drawn from.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from hpcfit.io.result import JobResult, LazyDataset, decoded


class SampleResult(JobResult):
    """A sample output file: ``theta``, ``x``, ``names``, ``bounds``, ``priors``, ``filters``."""

    job = "sample"

    def _theta_attrs(self) -> dict[str, Any]:
        with self.h5() as h5:
            return {key: decoded(value) for key, value in h5["samples/theta"].attrs.items()
                    if not key.startswith(("DIMENSION_", "REFERENCE_", "CLASS"))}

    @property
    def theta(self) -> LazyDataset:
        """(N, D) parameter vectors, in the sampled space (``log_*`` columns in log10), lazily read."""
        return LazyDataset(self, "samples/theta")

    @property
    def x(self) -> LazyDataset:
        """(N, F) simulated photometry in maggies (one column per filter), lazily read."""
        return LazyDataset(self, "samples/simulated_y")

    @property
    def normalised_theta(self) -> LazyDataset:
        """(N, D) the draws in [0, 1) (each parameter's prior CDF value), lazily read."""
        return LazyDataset(self, "samples/normalised_theta")

    def __len__(self) -> int:
        return self.theta.shape[0]

    @property
    def names(self) -> list[str]:
        """The free parameters, in the column order of ``theta``."""
        return [str(n) for n in self._theta_attrs()["names"]]

    @property
    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """(low, high): each parameter's bounds in the sampled space (e.g. ``BoxUniform(*map(torch.tensor,
        result.bounds))`` in sbi)."""
        attrs = self._theta_attrs()
        return np.asarray(attrs["low"], float), np.asarray(attrs["high"], float)

    @property
    def priors(self) -> dict[str, dict[str, Any]]:
        """name -> {"prior": uniform | log_uniform | normal | clipped_normal, "low", "high", and "mu", "sigma"
        for the normal ones}. Files written before priors existed were all uniform."""
        attrs = self._theta_attrs()
        kinds = attrs.get("prior", ["uniform"] * len(attrs["names"]))
        out = {}
        for j, name in enumerate(attrs["names"]):
            entry: dict[str, Any] = {"prior": str(kinds[j]), "low": float(attrs["low"][j]),
                                     "high": float(attrs["high"][j])}
            if entry["prior"] in ("normal", "clipped_normal"):
                entry.update(mu=float(attrs["mu"][j]), sigma=float(attrs["sigma"][j]))
            out[str(name)] = entry
        return out

    @property
    def log10(self) -> np.ndarray:
        """True for the columns sampled in log10 (``log_*`` names)."""
        return np.asarray(self._theta_attrs()["log10"], bool)

    @property
    def filters(self) -> list[str]:
        """The filter of each column of ``x``."""
        with self.h5() as h5:
            return [str(n) for n in decoded(h5["samples/simulated_y"].attrs["filter_names"])]

    @property
    def wavelengths(self) -> Any:
        """Each filter's pivot wavelength (a Quantity in Angstrom)."""
        return self.quantity("samples/wavelengths")

    @property
    def fixed_params(self) -> dict[str, float]:
        return json.loads(self.attrs.get("sample_fixed_params", "{}"))


RESULT = SampleResult
