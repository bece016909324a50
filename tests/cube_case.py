"""The small synthetic cubefit case shared by the engine, resume, SLURM and submit tests."""

from __future__ import annotations

from pathlib import Path

from hpcfit.cubefit.synthetic import write_cube

CONFIG = """\
job: cubefit
output: out.h5
cubefit:
  data: {path: cube.fits}
  model:
    class: Gaussian1D
    parameters:
      amplitude: 1.0
      mean: {value: 4000, unit: m/s, bounds: [2500, 6300]}
      stddev: {value: 300, unit: m/s}
  chunk_n_max: 20
"""


def cube_workdir(tmp_path_factory, name: str, shape: tuple[int, int, int]) -> Path:
    """A fresh directory with cube.fits (spectra of 30 channels over a shape[1] x shape[2] map) and cfg.yaml."""
    path = tmp_path_factory.mktemp(name)
    write_cube(path / "cube.fits", shape=shape)
    (path / "cfg.yaml").write_text(CONFIG)
    return path
