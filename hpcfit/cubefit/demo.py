"""``hpcfit demo cubefit``: the L1448 13CO cube of astropy's parallel-fitting guide when the shared data are
present, otherwise a synthetic cube with known answers. Writes the config (and synthetic data) into a folder."""

from __future__ import annotations

from pathlib import Path

from hpcfit.shared_data import shared_file
from hpcfit.runtime.log import logger

L1448_CONFIG = """\
# hpcfit demo: a Gaussian fitted to each of the 11,025 13CO spectra of L1448 (astropy's parallel-fitting guide).
job: cubefit
output: {output}
cubefit:
  data:
    path: {data}              # 53 x 105 x 105, spectral axis (VOPT, m/s) first; the data are in K
    unit: K
  fitting_axes: 0
  world: wcs
  model:
    class: Gaussian1D
    parameters:
      amplitude: 1.0                         # K
      mean: {{value: 4000, unit: m/s, bounds: [3000, 6000]}}
      stddev: {{value: 500, unit: m/s}}
  fitter: TRFLSQFitter

  diagnostics: error
  diagnostics_path: {diag}
run:
  progress_interval: 2
"""

SYNTHETIC_CONFIG = """\
# hpcfit demo: a synthetic cube (one Gaussian line per spectrum, known answers) fitted spectrum by spectrum.
job: cubefit
output: {output}
cubefit:
  data:
    path: {data}
  fitting_axes: 0
  world: wcs
  model:
    class: Gaussian1D
    parameters:
      amplitude: 1.0
      mean: {{value: "4.4 km/s", bounds: ["2.5 km/s", "6.3 km/s"]}}
      stddev: {{value: 300, unit: m/s, bounds: [50, 2000]}}
  diagnostics: error
  diagnostics_path: {diag}
run:
  progress_interval: 2
"""


def write_demo(directory: Path) -> Path:
    config = directory / "cubefit_demo.yaml"
    cube = shared_file("l1448_13co.fits")
    if cube is not None:
        text = L1448_CONFIG.format(output="cubefit_demo.h5", data=cube, diag="cubefit_demo_diagnostics")
    else:
        from hpcfit.cubefit.synthetic import write_cube

        data = directory / "synthetic_cube.fits"
        write_cube(data)
        text = SYNTHETIC_CONFIG.format(output="cubefit_demo.h5", data=data.name, diag="cubefit_demo_diagnostics")
        logger.warning("shared L1448 cube not found (set HPCFIT_SHARED_DATA); using a synthetic cube")
    config.write_text(text)
    return config
