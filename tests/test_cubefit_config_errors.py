"""Bad cubefit configs: each gives exit code 2, names FILE:LINE and the key path, and creates no output file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hpcfit.cli import main
from hpcfit.cubefit.synthetic import write_cube

from config_errors import check_bad_config, check_config_error_under_mpi

GOOD = """\
job: cubefit
output: out.h5
cubefit:
  data:
    path: cube.fits
  fitting_axes: 0
  model:
    class: Gaussian1D
    parameters:
      amplitude: 1.0
      mean: {value: 4000, unit: m/s, bounds: [2500, 6300]}
      stddev: {value: 300, unit: m/s}
  fitter: TRFLSQFitter
  chunk_n_max: 100
"""

# (name, replacement of a line of GOOD or text appended, expected "LINE: key.path" fragment, message fragment)
CASES = [
    ("missing job", ("job: cubefit\n", ""), r"cfg\.yaml:1: job:", "missing required key"),
    ("unknown job", ("job: cubefit", "job: cubefitt"), r"cfg\.yaml:1: job:", "did you mean 'cubefit'"),
    ("missing data file", ("path: cube.fits", "path: nope.fits"), r"cfg\.yaml:5: cubefit\.data\.path:",
     "does not exist"),
    ("fitting axis out of range", ("fitting_axes: 0", "fitting_axes: 5"), r"cfg\.yaml:6: cubefit\.fitting_axes:",
     "allowed: 0..2"),
    ("unknown model class", ("class: Gaussian1D", "class: Gausian1D"), r"cfg\.yaml:8: cubefit\.model\.class:",
     "did you mean 'Gaussian1D'"),
    ("unknown parameter", ("      amplitude: 1.0", "      sigma: 1.0"),
     r"cfg\.yaml:10: cubefit\.model\.parameters\.sigma:", "allowed: amplitude, mean, stddev"),
    ("bounds reversed", ("bounds: [2500, 6300]", "bounds: [6300, 2500]"),
     r"cfg\.yaml:11: cubefit\.model\.parameters\.mean\.bounds:", "is not below upper bound"),
    ("value outside bounds", ("value: 4000, unit: m/s", "value: 9000, unit: m/s"),
     r"cfg\.yaml:11: cubefit\.model\.parameters\.mean\.value:", "outside the bounds"),
    ("bound in the wrong unit", ("bounds: [2500, 6300]", "bounds: ['2 K', 6300]"),
     r"cfg\.yaml:11: cubefit\.model\.parameters\.mean\.bounds\.0:", "cannot be expressed in the parameter's unit 'm/s'"),
    ("unknown fitter", ("fitter: TRFLSQFitter", "fitter: FooFitter"), r"cfg\.yaml:13: cubefit\.fitter\.class:",
     "allowed: TRFLSQFitter"),
    ("chunk size zero", ("chunk_n_max: 100", "chunk_n_max: 0"), r"cfg\.yaml:14: cubefit\.chunk_n_max:",
     "out of range"),
    ("misspelt key", ("chunk_n_max: 100", "chunk_nmax: 100"), r"cfg\.yaml:14: cubefit\.chunk_nmax:",
     "did you mean 'chunk_n_max'"),
    ("diagnostics without path", ("chunk_n_max: 100", "chunk_n_max: 100\n  diagnostics: all"),
     r"cfg\.yaml:\d+: cubefit\.diagnostics_path:", "required when diagnostics is 'all'"),
    ("fit_info key of another fitter", ("chunk_n_max: 100", "chunk_n_max: 100\n  fit_info: [ierr]"),
     r"cfg\.yaml:15: cubefit\.fit_info\.0:", "allowed: nfev, njev"),
    ("world arrays of wrong length", ("fitting_axes: 0", "fitting_axes: 0\n  world: {source: arrays, arrays: [[1, 2, 3]]}"),
     r"cfg\.yaml:7: cubefit\.world\.arrays\.0:", "expected 30 coordinates"),
    ("weights of another shape", ("fitting_axes: 0", "fitting_axes: 0\n  weights: {path: small.npy}"),
     r"cfg\.yaml:7: cubefit\.weights\.path:", "differs from the data's"),
    ("yaml syntax", ("  fitting_axes: 0", "  fitting_axes: [0"), r"cfg\.yaml:\d+:", "not valid YAML"),
]


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    write_cube(tmp_path / "cube.fits", shape=(30, 6, 7))
    np.save(tmp_path / "small.npy", np.ones((3, 3, 3)))
    return tmp_path


@pytest.mark.parametrize("name,edit,where,what", CASES, ids=[c[0] for c in CASES])
def test_bad_config_exits_2_with_location(workdir, capsys, name, edit, where, what):
    check_bad_config(workdir, GOOD, edit, where, what, capsys)


def test_several_problems_reported_together(workdir, capsys):
    text = GOOD.replace("chunk_n_max: 100", "chunk_n_max: 0").replace("fitter: TRFLSQFitter", "fitter: X")
    (workdir / "cfg.yaml").write_text(text)
    assert main(["validate", str(workdir / "cfg.yaml")]) == 2
    err = capsys.readouterr().err
    assert "2 problems" in err and "cubefit.chunk_n_max" in err and "cubefit.fitter.class" in err


def test_existing_output_is_not_overwritten(workdir, capsys):
    (workdir / "cfg.yaml").write_text(GOOD)
    (workdir / "out.h5").write_text("precious")
    assert main(["run", str(workdir / "cfg.yaml")]) == 2
    assert "already exists" in capsys.readouterr().err
    assert (workdir / "out.h5").read_text() == "precious"


def test_valid_config_validates(workdir, capsys):
    (workdir / "cfg.yaml").write_text(GOOD)
    assert main(["validate", str(workdir / "cfg.yaml"), "--plan"]) == 0
    out = capsys.readouterr().out
    assert "valid cubefit configuration" in out and "1 work item(s), 42 fits" in out


@pytest.mark.mpi
def test_config_error_under_mpi_every_rank_exits_2_quietly(workdir):
    check_config_error_under_mpi(workdir, GOOD.replace("class: Gaussian1D", "class: Gausian1D"),
                                 "cubefit.model.class")
