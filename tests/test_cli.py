"""The command line: help on every verb, python -m hpcfit, inspect, schema, plot, and the docs kept in step."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from hpcfit.cli import build_parser, main
from hpcfit.registry import config_reference

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("verb", ["run", "merge", "submit", "validate", "demo", "inspect", "plot", "schema"])
def test_every_verb_has_help(verb, capsys):
    with pytest.raises(SystemExit, match="^0$") as exit_info:
        main([verb, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: hpcfit " + verb) and len(out.splitlines()) > 3


def test_python_dash_m_works():
    proc = subprocess.run([sys.executable, "-m", "hpcfit", "--version"], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0 and proc.stdout.startswith("hpcfit ")


def test_usage_errors_exit_2(capsys):
    with pytest.raises(SystemExit, match="^2$") as exit_info:
        main(["frobnicate"])
    assert exit_info.value.code == 2
    assert main(["inspect", "/nonexistent/file.h5"]) == 2
    assert main(["schema", "nojob"]) == 2
    assert "unknown job 'nojob'" in capsys.readouterr().err


def test_config_reference_is_current():
    committed = (REPO / "docs" / "config_reference.md").read_text()
    assert committed.strip() == config_reference().strip(), "run `make docs` to regenerate docs/config_reference.md"


def test_inspect_and_plot_a_cubefit_file(tmp_path, capsys):
    from hpcfit.cubefit.synthetic import write_cube

    write_cube(tmp_path / "cube.fits", shape=(30, 5, 6))
    (tmp_path / "c.yaml").write_text("""\
job: cubefit
output: out.h5
cubefit:
  data: {path: cube.fits}
  model: {class: Gaussian1D, parameters: {amplitude: 1, mean: "4 km/s", stddev: "300 m/s"}}
""")
    assert main(["run", str(tmp_path / "c.yaml")]) == 0
    capsys.readouterr()
    assert main(["inspect", str(tmp_path / "out.h5"), "--config"]) == 0
    text = capsys.readouterr().out
    for expected in ("job              cubefit", "n_ranks          1", "parameters/", "mean", "[m / s]",
                     "fit status:", "converged", "config:", "class: Gaussian1D", "mpi_library"):
        assert expected in text, expected
    pytest.importorskip("matplotlib")
    assert main(["plot", str(tmp_path / "out.h5"), "-o", str(tmp_path / "maps.png")]) == 0
    assert (tmp_path / "maps.png").stat().st_size > 10_000


def test_parser_lists_all_verbs():
    help_text = build_parser().format_help()
    for verb in ("run", "validate", "demo", "inspect", "plot", "schema"):
        assert verb in help_text
