"""``hpcfit demo gridfit``: the 21 DustPedia galaxies against a Draine & Li (2007) grid when the shared data are
present; otherwise a synthetic catalogue made from a modified-blackbody grid (no data files needed)."""

from __future__ import annotations

from pathlib import Path

from hpcfit.shared_data import shared_file

DUSTPEDIA_BANDS = (("MIPS24", "MIPS1"), ("PACS70", "PACS_blue"), ("PACS100", "PACS_green"), ("PACS160", "PACS_red"),
                   ("SPIRE250", "PSW"), ("SPIRE350", "PMW"), ("SPIRE500", "PLW"))

DUSTPEDIA_CONFIG = """\
# hpcfit demo: Draine & Li (2007) dust emission fitted to 21 DustPedia galaxies in 7 far-IR bands (mJy, Mpc).
job: gridfit
output: {output}
gridfit:
  catalog:
    path: {catalog}
    id_column: name
    distance_column: distance_mpc
    flux_unit: mJy
  bands:
{bands}
  grid:
    model: dl07
    dl07:
      templates: {templates}
      umin: all                              # the 23 template values, 0.1 ... 25
      umax: [1e6]
      gamma: [0.0, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5]
      qpah: all                              # 0.47 ... 4.58 percent
  fit:
    chi2: best
    error_floor: 0.0                         # DustPedia errors already include calibration
    estimate: [umin, gamma, qpah, dust_mass, log_dust_mass, log_dust_luminosity]
    results_table: fits
run:
  progress_interval: 2
"""

SYNTHETIC_CONFIG = """\
# hpcfit demo: 300 synthetic galaxies made from a modified blackbody grid (known answers: see true_* columns).
job: gridfit
output: {output}
gridfit:
  catalog:
    path: {catalog}
    id_column: id
    distance_column: distance
  bands:
{bands}
  grid:
    model: modified_blackbody
    modified_blackbody:
      temperature: {{linspace: [10, 40, 61]}}   # K
      beta: [1.5, 1.75, 2.0, 2.25]
  fit:
    chi2: best
    error_floor: 0.0
    results_table: fits
run:
  progress_interval: 2
"""


def write_demo(directory: Path) -> Path:
    """Write the demo config (and, without shared data, the synthetic catalogue and filters); return its path."""
    config = directory / "gridfit_demo.yaml"
    catalog, templates, curves = (shared_file("dustpedia_21galaxies.csv"), shared_file("dl07"),
                                  shared_file("filters_ir"))
    if catalog is not None and templates is not None and curves is not None:
        bands = "\n".join(f"  - {{name: {name}, filter: {filt}, flux_column: {name}_mJy, "
                          f"error_column: {name}_err_mJy}}" for name, filt in DUSTPEDIA_BANDS)
        config.write_text(DUSTPEDIA_CONFIG.format(catalog=catalog, bands=bands, templates=templates,
                                                  output="dustpedia_dl07.h5"))
        return config
    _write_synthetic(directory, config)
    return config


def _write_synthetic(directory: Path, config: Path) -> None:
    from hpcfit.models.filters import FilterSet, read_filter_file
    from hpcfit.gridfit.grid import BandProjector, modified_blackbody_spec, spectral_model
    from hpcfit.gridfit.synthetic import synthetic_catalog, write_box_filters

    paths = write_box_filters(directory / "filters")
    spec = modified_blackbody_spec({"temperature": list(range(10, 41)), "beta": [1.5, 1.75, 2.0, 2.25]}, {})
    filters = FilterSet(tuple(read_filter_file(p) for p in paths.values()))
    model = spectral_model(spec, filters)
    projector = BandProjector(filters, model.wavelength, [True] * len(paths))
    table = synthetic_catalog(spec, model, projector, list(paths), n_galaxies=300, seed=1, snr=15.0)
    table.write(directory / "synthetic_mbb.ecsv", overwrite=True)
    bands = "\n".join(f"  - {{name: {name}, filter_file: filters/{path.name}, flux_column: {name}_flux, "
                      f"error_column: {name}_err}}" for name, path in paths.items())
    config.write_text(SYNTHETIC_CONFIG.format(catalog="synthetic_mbb.ecsv", bands=bands,
                                              output="synthetic_mbb.h5"))
