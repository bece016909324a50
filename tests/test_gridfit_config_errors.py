"""Bad gridfit configs and inputs: each gives exit code 2, names FILE:LINE and the key path (and the file/column
where the problem is in the catalogue), and creates no output file."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from astropy.table import Table

from gridfit_helpers import write_inputs
from hpcfit.cli import main
from config_errors import check_bad_config, check_config_error_under_mpi

GOOD = """\
job: gridfit
output: out.h5
gridfit:
  catalog:
    path: catalog.ecsv
    id_column: id
    distance_column: distance
  bands:
    - {name: box70, filter_file: filters/box70.dat, flux_column: box70_flux, error_column: box70_err}
    - {name: box160, filter_file: filters/box160.dat, flux_column: box160_flux, error_column: box160_err}
    - name: box250
      filter_file: filters/box250.dat
      flux_column: box250_flux
      error_column: box250_err
  grid:
    model: modified_blackbody
    modified_blackbody:
      temperature: {linspace: [12, 40, 8]}
      beta: [1.5, 2.0]
  fit:
    chi2: best
    error_floor: 0.05
    estimate: [temperature, log_dust_mass]
"""

# (name, (old, new) edit of GOOD, expected "LINE: key.path" fragment, message fragment)
CASES = [
    ("band column missing from the table", ("flux_column: box160_flux", "flux_column: box160_flx"),
     r"cfg\.yaml:10: gridfit\.bands\.1\.flux_column:", "column 'box160_flx': column not found; did you mean 'box160_flux'"),
    ("zero error in the table", ("error_column: box250_err", "error_column: bad_err"),
     r"cfg\.yaml:14: gridfit\.bands\.2\.error_column:", "errors must be positive: 1 row (ids: gal00002)"),
    ("distance <= 0", ("distance_column: distance", "distance_column: bad_distance"),
     r"cfg\.yaml:7: gridfit\.catalog\.distance_column:", "distance must be > 0 and finite: 1 row (ids: gal00004)"),
    ("unknown filter", ("filter_file: filters/box70.dat", "filter: PACS_blu"),
     r"cfg\.yaml:9: gridfit\.bands\.0\.filter:", "unknown filter 'PACS_blu'; did you mean 'PACS_blue'"),
    ("filter file missing", ("filter_file: filters/box160.dat", "filter_file: filters/nope.dat"),
     r"cfg\.yaml:10: gridfit\.bands\.1\.filter_file:", "does not exist"),
    ("both filter and filter file", ("filter_file: filters/box160.dat", "filter_file: filters/box160.dat, filter: PSW"),
     r"cfg\.yaml:10: gridfit\.bands\.1:", "exactly one of `filter`"),
    ("catalogue file missing", ("path: catalog.ecsv", "path: nope.ecsv"), r"cfg\.yaml:5: gridfit\.catalog\.path:",
     "does not exist"),
    ("unknown id column", ("id_column: id", "id_column: name"), r"cfg\.yaml:6: gridfit\.catalog\.id_column:",
     "column 'name': column not found"),
    ("flux unit that is not a flux density", ("error_column: box250_err", "error_column: box250_err\n      unit: K"),
     r"cfg\.yaml:15: gridfit\.bands\.2\.unit:", "'K' is a unit of temperature, not a flux density"),
    ("negative temperature", ("temperature: {linspace: [12, 40, 8]}", "temperature: [-5, 20]"),
     r"cfg\.yaml:18: gridfit\.grid\.modified_blackbody\.temperature:", "-5 K is not a temperature"),
    ("linspace without values", ("[12, 40, 8]", "[12, 40, 0]"),
     r"cfg\.yaml:18: gridfit\.grid\.modified_blackbody\.temperature\.linspace\.2:", "num must be an integer"),
    ("repeated axis values", ("beta: [1.5, 2.0]", "beta: [1.5, 2.0, 1.5]"),
     r"cfg\.yaml:19: gridfit\.grid\.modified_blackbody\.beta:", "values are repeated"),
    ("missing temperature axis", ("      temperature: {linspace: [12, 40, 8]}\n", ""),
     r"cfg\.yaml:\d+: gridfit\.grid\.modified_blackbody\.temperature:", "required when grid.model is modified_blackbody"),
    ("unknown model", ("model: modified_blackbody", "model: modified_bb"), r"cfg\.yaml:16: gridfit\.grid\.model:",
     "allowed: dl07, modified_blackbody"),
    ("chi2 choice misspelt", ("chi2: best", "chi2: ful"), r"cfg\.yaml:21: gridfit\.fit\.chi2:", "did you mean 'full'"),
    ("negative error floor", ("error_floor: 0.05", "error_floor: -0.1"), r"cfg\.yaml:22: gridfit\.fit\.error_floor:",
     "out of range"),
    ("quantity that cannot be estimated", ("estimate: [temperature, log_dust_mass]", "estimate: [temperature, umin]"),
     r"cfg\.yaml:23: gridfit\.fit\.estimate\.1:", "'umin' cannot be estimated with grid.model modified_blackbody"),
    ("misspelt key", ("  error_floor: 0.05", "  error_flor: 0.05"), r"cfg\.yaml:22: gridfit\.fit\.error_flor:",
     "did you mean 'error_floor'"),
]


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    write_inputs(tmp_path, n_galaxies=12)
    table = Table.read(tmp_path / "catalog.ecsv")
    table["bad_err"] = table["box250_err"]
    table["bad_err"][2] = 0.0
    table["bad_distance"] = table["distance"]
    table["bad_distance"][4] = -1.0
    table.write(tmp_path / "catalog.ecsv", overwrite=True)
    return tmp_path


@pytest.mark.parametrize("name,edit,where,what", CASES, ids=[c[0] for c in CASES])
def test_bad_config_exits_2_with_location(workdir, capsys, name, edit, where, what):
    check_bad_config(workdir, GOOD, edit, where, what, capsys, outputs="out*")


def test_catalogue_errors_name_the_file(workdir, capsys):
    (workdir / "cfg.yaml").write_text(GOOD.replace("flux_column: box160_flux", "flux_column: box160_flx"))
    assert main(["run", str(workdir / "cfg.yaml")]) == 2
    assert f"{workdir / 'catalog.ecsv'}: column 'box160_flx'" in capsys.readouterr().err


def test_dl07_axis_outside_the_templates(workdir, capsys, shared_path):
    shared_path("dl07")
    text = GOOD.replace("""    model: modified_blackbody
    modified_blackbody:
      temperature: {linspace: [12, 40, 8]}
      beta: [1.5, 2.0]""", """    model: dl07
    dl07:
      umin: [0.05, 1.0]
      gamma: [0, 0.1]
      qpah: [2.5]""").replace("[temperature, log_dust_mass]", "[umin, log_dust_mass]")
    (workdir / "cfg.yaml").write_text(text)
    assert main(["run", str(workdir / "cfg.yaml")]) == 2
    err = capsys.readouterr().err
    assert re.search(r"cfg\.yaml:18: gridfit\.grid\.dl07\.umin: 0\.05 is outside the DL07 templates", err), err
    assert "(allowed: 0.1, 0.15, 0.2" in err
    (workdir / "cfg.yaml").write_text(text.replace("qpah: [2.5]", "qpah: [2.6]").replace("gamma: [0, 0.1]",
                                                                                          "gamma: [0, 1.5]"))
    assert main(["run", str(workdir / "cfg.yaml")]) == 2
    err = capsys.readouterr().err
    assert "3 problems" in err, err  # every bad axis is reported at once
    assert re.search(r"cfg\.yaml:19: gridfit\.grid\.dl07\.gamma: 1\.5 is outside .* \(allowed: 0 <= gamma <= 1\)", err), err
    assert re.search(r"cfg\.yaml:20: gridfit\.grid\.dl07\.qpah: 2\.6 is outside", err), err
    assert not list(workdir.glob("out*"))


def test_dl07_directory_without_templates(workdir, capsys):
    text = GOOD.replace("""    model: modified_blackbody
    modified_blackbody:
      temperature: {linspace: [12, 40, 8]}""", """    model: dl07
    dl07:
      templates: filters
      umin: [1.0]
      gamma: [0, 0.1]
      qpah: [2.5]""").replace("      beta: [1.5, 2.0]\n", "").replace("[temperature, log_dust_mass]", "[umin]")
    (workdir / "cfg.yaml").write_text(text)
    assert main(["run", str(workdir / "cfg.yaml")]) == 2
    err = capsys.readouterr().err
    assert re.search(r"cfg\.yaml:18: gridfit\.grid\.dl07\.templates: cannot load the DL07 templates: no DL07 files", err), err


def test_existing_results_table_is_not_overwritten(workdir, capsys):
    (workdir / "cfg.yaml").write_text(GOOD)
    (workdir / "out_results.fits").write_text("precious")
    assert main(["run", str(workdir / "cfg.yaml")]) == 2
    assert "gridfit.fit.results_table: results table" in capsys.readouterr().err
    assert (workdir / "out_results.fits").read_text() == "precious"


def test_valid_config_validates_and_plans(workdir, capsys):
    (workdir / "cfg.yaml").write_text(GOOD)
    assert main(["validate", str(workdir / "cfg.yaml"), "--plan"]) == 0
    out = capsys.readouterr().out
    assert "valid gridfit configuration" in out and "1 work item(s), 16 models" in out


@pytest.mark.mpi
def test_config_error_under_mpi_every_rank_exits_2_quietly(workdir):
    check_config_error_under_mpi(workdir, GOOD.replace("flux_column: box160_flux", "flux_column: box160_flx"),
                                 "gridfit.bands.1.flux_column", outputs="out*")
