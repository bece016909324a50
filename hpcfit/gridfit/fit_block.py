"""Fit one galaxy block against one model chunk, and fold the chunks' partial results into the final answers.

A chunk's partial result for a block of G galaxies is two packed float64 arrays (see
:mod:`hpcfit.gridfit.reduce`): the best model (MINLOC record: chi2, global index, scale, then the chosen
model's parameters, band fluxes and luminosity per unit mass as payload) and the likelihood-weighted moments of the
estimated quantities. :func:`fold` merges the partials of all chunks in chunk order; since the chunks and galaxy
blocks are fixed before the ranks are known, and every partial is computed the same way whichever rank holds it,
the folded result is the same bit for bit for any number of ranks.

Estimated quantities: any grid parameter, plus quantities of the fitted scale (the dust mass in M_sun when the
model is L_nu per M_sun and the per-galaxy model factor is 1 / (4 pi D^2)): ``dust_mass``, ``log_dust_mass``
(log10 M_sun), ``dust_luminosity`` and ``log_dust_luminosity`` (L_sun: mass times the model's luminosity per
unit mass).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from hpcfit.gridfit.chi2 import ModelSlice, Photometry, best_in_block
from hpcfit.gridfit.reduce import BestFit, Moments, ScaleQuantity, merge_best_packed, merge_moments_packed
from hpcfit.gridfit.grid import ModelChunk

SCALE_QUANTITIES = ("dust_mass", "log_dust_mass", "dust_luminosity", "log_dust_luminosity")
SCALE_UNITS = {"dust_mass": "solMass", "log_dust_mass": "dex(solMass)", "dust_luminosity": "solLum",
               "log_dust_luminosity": "dex(solLum)"}


@dataclass(frozen=True)
class Estimates:
    """Which quantities get likelihood-weighted means and standard deviations."""

    param_names: tuple[str, ...]  # all grid parameters, in table order
    names: tuple[str, ...]  # the quantities reported, in the user's order

    @property
    def scale_names(self) -> list[str]:
        return [n for n in SCALE_QUANTITIES if n in self.names]

    @property
    def ordered(self) -> tuple[str, ...]:
        """The quantities of a moments record: every grid parameter (one GEMM gives them all), then the scale
        quantities asked for (each costs a pass over the block)."""
        return tuple(self.param_names) + tuple(self.scale_names)

    def scale_quantities(self, luminosity_per_mass: np.ndarray) -> list[ScaleQuantity]:
        unit = {"dust_mass": 1.0, "log_dust_mass": 1.0, "dust_luminosity": luminosity_per_mass,
                "log_dust_luminosity": luminosity_per_mass}
        return [ScaleQuantity(n, unit[n], log10=n.startswith("log_")) for n in self.scale_names]


@dataclass(eq=False)
class LoadedChunk:
    """A model chunk ready for the chi2 kernel (the transposed band fluxes built once)."""

    chunk: ModelChunk
    models: ModelSlice

    @classmethod
    def of(cls, chunk: ModelChunk) -> LoadedChunk:
        return cls(chunk, ModelSlice.from_fluxes(chunk.fluxes))


def n_extra(n_params: int, n_bands: int) -> int:
    """Payload columns of a best-fit record: parameters, band fluxes, luminosity per unit mass."""
    return n_params + n_bands + 1


def reduce_chunk(phot: Photometry, loaded: LoadedChunk, estimates: Estimates, chi2: np.ndarray,
                 scale: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Packed best-fit (MINLOC record with the chosen model as payload) and moments partials of a chi2 block."""
    chunk = loaded.chunk
    local, best_chi2, best_scale = best_in_block(phot, loaded.models, chi2, scale)
    extra = np.column_stack([chunk.params[local], chunk.fluxes[local], chunk.luminosity_per_mass[local]])
    best = BestFit.from_block(local, best_chi2, best_scale, chunk.start, extra)
    moments = Moments.from_block(chi2, chunk.params, estimates.param_names, scale=scale,
                                 scale_quantities=estimates.scale_quantities(chunk.luminosity_per_mass),
                                 best_local=local)
    return best.pack(), moments.pack()


def fold(partials: Sequence[tuple[np.ndarray, np.ndarray]], extra: int, n_quantities: int
         ) -> tuple[np.ndarray, np.ndarray]:
    """Left fold of (best, moments) packed partials in the given order (chunk order)."""
    best, moments = partials[0]
    for b, m in partials[1:]:
        best = merge_best_packed(best, b, extra)
        moments = merge_moments_packed(moments, m, n_quantities)
    return best, moments


@dataclass(eq=False)
class BlockResult:
    """Final per-galaxy answers of a block (all arrays have G rows)."""

    model_index: np.ndarray  # int64, -1 where the galaxy has no usable band
    chi2: np.ndarray
    reduced_chi2: np.ndarray
    scale: np.ndarray  # M_sun of dust for the built-in models
    params: np.ndarray  # (G, P) of the best model
    model_flux: np.ndarray  # (G, B) best model's band fluxes in the catalogue's unit (mJy)
    luminosity: np.ndarray  # scale x luminosity per unit mass (L_sun)
    bayes: dict[str, tuple[np.ndarray, np.ndarray]]  # name -> (mean, std)
    n_bands: np.ndarray
    n_upper: np.ndarray


def finalise(phot: Photometry, best_packed: np.ndarray, moments_packed: np.ndarray, estimates: Estimates,
             n_bands: int) -> BlockResult:
    """Unpack the folded partials of a block into per-galaxy answers; galaxies without a usable band get NaN."""
    n_params = len(estimates.param_names)
    best = BestFit.unpack(best_packed, n_extra(n_params, n_bands))
    moments = Moments.unpack(moments_packed, estimates.ordered).finalise()
    none = phot.n_used == 0
    params = best.extra[:, :n_params].copy()
    unit_flux = best.extra[:, n_params:n_params + n_bands]
    lum = best.extra[:, n_params + n_bands]
    model_flux = (best.scale * phot.factor)[:, None] * unit_flux
    result = BlockResult(
        model_index=np.where(none, -1, best.index),
        chi2=best.chi2.copy(),
        reduced_chi2=phot.reduced_chi2(best.chi2),
        scale=best.scale.copy(),
        params=params,
        model_flux=model_flux,
        luminosity=best.scale * lum,
        bayes={name: (moments[name][0].copy(), moments[name][1].copy()) for name in estimates.names},
        n_bands=phot.n_used.astype(np.int32),
        n_upper=phot.n_upper.astype(np.int32),
    )
    if none.any():
        for array in (result.chi2, result.reduced_chi2, result.scale, result.params, result.model_flux,
                      result.luminosity, *[a for pair in result.bayes.values() for a in pair]):
            array[none] = np.nan
    return result


__all__ = ["BlockResult", "Estimates", "LoadedChunk", "SCALE_QUANTITIES", "finalise", "fold", "n_extra",
           "reduce_chunk"]
