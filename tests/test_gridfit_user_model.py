"""A user model grid (``grid.model: package.module:callable``, axes in ``grid.parameters``): run under
``mpiexec -n 2`` it recovers the known best model and scale of a catalogue made from the grid itself; the callable's
output is validated at planning (importable, callable, shape, finite, unit) with exit 2 and the key's line."""

from __future__ import annotations

import os
from pathlib import Path

import astropy.units as u
import h5py
import numpy as np
import pytest
from astropy.table import Table

from h5compare import assert_ran_with
from hpcfit.cli import main
from hpcfit.gridfit.synthetic import write_box_filters
from hpcfit.models.filters import read_filter_file
from launch import hpcfit
from plugins import toy_grid

TEMPERATURES = [15.0, 18.0, 21.0, 24.0, 27.0, 30.0]
BETAS = [1.2, 1.6, 2.0]
TRUE_INDEX = [0, 4, 7, 11, 17, 9, 13, 2]  # model = temperature index * 3 + beta index (C order)
TRUE_SCALE = [1e6, 3e7, 2e5, 4e6, 8e7, 5e5, 1e7, 6e6]

CONFIG = """\
job: gridfit
output: {output}
gridfit:
  catalog: {{path: catalog.ecsv, id_column: id, distance_column: distance}}
  bands:
{bands}
  grid:
    model: {model}
    parameters:
      temperature: {temperatures}
      beta: {betas}
  fit:
    chi2: full
    estimate: [temperature, beta, log_dust_mass, log_dust_luminosity]
    models_per_chunk: 5
    galaxies_per_block: 3
run: {{progress: none}}
"""


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("gridfit_user")
    paths = write_box_filters(directory / "filters")
    filters = [read_filter_file(p) for p in paths.values()]
    params = Table({"temperature": np.repeat(TEMPERATURES, len(BETAS)), "beta": np.tile(BETAS, len(TEMPERATURES))})
    lum = toy_grid.greybody(params, filters)[0].to_value(u.W / u.Hz)  # (models, bands) per unit normalisation
    distance = np.linspace(5.0, 40.0, len(TRUE_INDEX))  # Mpc
    k = (1.0 * u.W / u.Hz / (4 * np.pi * (distance * u.Mpc) ** 2)).to_value(u.mJy)
    flux = np.asarray(TRUE_SCALE)[:, None] * k[:, None] * lum[TRUE_INDEX]  # exact: chi2 = 0 at the true model
    table = Table({"id": [f"g{i}" for i in range(len(TRUE_INDEX))], "distance": distance})
    for j, name in enumerate(paths):
        table[f"{name}_flux"], table[f"{name}_err"] = flux[:, j], 0.05 * flux[:, j]
    table.write(directory / "catalog.ecsv")
    (directory / "bands.txt").write_text(
        "\n".join(f"  - {{name: {n}, filter_file: filters/{p.name}, flux_column: {n}_flux, error_column: {n}_err}}"
                  for n, p in paths.items()))
    return directory


def write_config(directory: Path, name: str, model: str, **changes: str) -> Path:
    values = {"output": name.replace(".yaml", ".h5"), "bands": (directory / "bands.txt").read_text(),
              "model": model, "temperatures": str(TEMPERATURES), "betas": str(BETAS)} | changes
    path = directory / name
    path.write_text(CONFIG.format(**values))
    return path


def test_two_ranks_recover_the_known_best_fit(workdir):
    config = write_config(workdir, "user.yaml", "plugins.toy_grid:greybody")
    tests = Path(__file__).resolve().parent  # the ranks import plugins.toy_grid from here, hpcfit from this tree
    done = hpcfit(["run", str(config)], n=2, cwd=workdir, env={"PYTHONPATH": f"{tests.parent}{os.pathsep}{tests}"})
    assert done.returncode == 0, done.stdout + done.stderr
    out = workdir / "user.h5"
    assert_ran_with(out, n_ranks=2)
    with h5py.File(out) as h5:
        assert list(h5["best/model_index"][()]) == TRUE_INDEX
        np.testing.assert_allclose(h5["best/scale"][()], TRUE_SCALE, rtol=1e-9)
        np.testing.assert_allclose(h5["best/chi2"][()], 0.0, atol=1e-12)
        assert list(np.argmin(h5["chi2"][()], axis=1)) == TRUE_INDEX  # /chi2 by the GEMM form: ~1e-12 of 0
        params = h5["grid/parameters"][()]
        assert list(h5["grid/parameters"].attrs["names"]) == ["temperature", "beta"]
        np.testing.assert_array_equal(params[TRUE_INDEX, 0], h5["best/temperature"][()])
        # the grid's band fluxes are the callable's values, converted from erg/s/Hz to W/Hz
        filters = [read_filter_file(p) for p in sorted((workdir / "filters").glob("*.dat"),
                                                       key=lambda p: int(p.stem[3:]))]
        table = Table({"temperature": params[:, 0], "beta": params[:, 1]})
        lum, total = toy_grid.greybody(table, filters)
        np.testing.assert_allclose(h5["grid/band_fluxes"][()], lum.to_value(u.W / u.Hz), rtol=1e-12)
        np.testing.assert_allclose(h5["grid/luminosity_per_mass"][()], total.to_value(u.solLum), rtol=1e-12)
        assert np.all(np.isfinite(h5["bayes/log_dust_luminosity"][()]))
        assert "plugins.toy_grid:greybody" in h5.attrs["gridfit_grid"]


def test_plain_numbers_take_the_luminosity_unit(workdir):
    text = CONFIG.format(output="plain.h5", bands=(workdir / "bands.txt").read_text(), model="plugins.toy_grid:plain",
                         temperatures=str(TEMPERATURES), betas=str(BETAS))
    text = text.replace("estimate: [temperature, beta, log_dust_mass, log_dust_luminosity]",
                        "estimate: [temperature, log_dust_mass]")
    (workdir / "plain.yaml").write_text(text)
    assert main(["run", str(workdir / "plain.yaml")]) == 0
    with h5py.File(workdir / "plain.h5") as h5:
        assert list(h5["best/model_index"][()]) == TRUE_INDEX
        assert np.all(np.isnan(h5["grid/luminosity_per_mass"][()]))
    # the same numbers read as erg/s/Hz are 1e7 times fainter: the fitted scale is 1e7 times larger
    (workdir / "plain_erg.yaml").write_text(text.replace("plain.h5", "plain_erg.h5").replace(
        "  fit:", "    luminosity_unit: erg / (s Hz)\n  fit:"))
    assert main(["run", str(workdir / "plain_erg.yaml")]) == 0
    with h5py.File(workdir / "plain_erg.h5") as h5:
        np.testing.assert_allclose(h5["best/scale"][()], 1e7 * np.asarray(TRUE_SCALE), rtol=1e-9)


@pytest.mark.parametrize("model, key, message", [
    ("nowhere.module:f", "gridfit.grid.model", "cannot import 'nowhere.module'"),
    ("plugins.toy_grid:missing", "gridfit.grid.model", "has no attribute 'missing'"),
    ("plugins.toy_grid:NOT_CALLABLE", "gridfit.grid.model", "is not callable"),
    ("plugins.toy_grid:wrong_shape", "gridfit.grid.model", "of shape (8, 7) for 8 models x 6 bands"),
    ("plugins.toy_grid:not_finite", "gridfit.grid.model", "non-finite band luminosities"),
    ("plugins.toy_grid:plain", "gridfit.fit.estimate.3", "cannot be estimated"),
    ("not a target", "gridfit.grid.model", "neither a built-in model nor package.module:callable"),
])
def test_bad_user_models_exit_2_naming_the_key(workdir, capsys, model, key, message):
    config = write_config(workdir, "bad.yaml", model)
    assert main(["run", str(config)]) == 2
    err = capsys.readouterr().err
    assert f"{key}:" in err and message in err, err
    assert not (workdir / "bad.h5").exists()


def test_user_model_needs_its_axes_and_builtin_models_refuse_them(workdir, capsys):
    config = write_config(workdir, "noaxes.yaml", "plugins.toy_grid:greybody")
    config.write_text("".join(line for line in config.read_text().splitlines(keepends=True)
                              if not line.startswith(("    parameters:", "      temperature:", "      beta:"))))
    assert main(["validate", str(config)]) == 2
    assert "gridfit.grid.parameters: required with a user model" in capsys.readouterr().err
    config = write_config(workdir, "builtin.yaml", "modified_blackbody")
    config.write_text(config.read_text().replace("  fit:", "    modified_blackbody: {temperature: [20.0]}\n  fit:"))
    assert main(["validate", str(config)]) == 2
    assert "gridfit.grid.parameters: only for a user model" in capsys.readouterr().err
