"""``gridfit.catalog.accept_cigale_upper_limits``: CIGALE's catalogue convention (a negative error marks an upper
limit at the flux value with sigma = |error|; <= -9990 and zero errors are missing), off by default; the chi2 of
such a fit equals a direct numpy evaluation of CIGALE's formula (pcigale ``compute_chi2`` with ``lim_flag``):

    chi2 = sum_det ((f - s q) / sigma)^2 - 2 sum_lim ln(0.5 (1 + erf((f_lim - s q) / (sqrt(2) sigma))))

at the best scale, which minimises it."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
from scipy.optimize import minimize_scalar
from scipy.special import erf, erfc

from gridfit_helpers import band_lines, mbb_problem
from hpcfit.cli import main
from hpcfit.gridfit.catalog import CatalogError, read_catalog
from hpcfit.gridfit.synthetic import synthetic_catalog

CONFIG = """\
job: gridfit
output: {output}
gridfit:
  catalog: {{path: catalog.ecsv, id_column: id, distance_column: distance{extra}}}
  bands:
{bands}
  grid:
    model: modified_blackbody
    modified_blackbody:
      temperature: {{linspace: [12, 40, 29]}}
      beta: [1.5, 1.8, 2.1]
  fit:
    chi2: full
    estimate: [temperature, log_dust_mass]
run: {{progress: none}}
"""


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("cigale_limits")
    paths, filters, spec, model, projector = mbb_problem(directory)
    table = synthetic_catalog(spec, model, projector, list(paths), n_galaxies=10, seed=5, snr=10.0)
    names = list(paths)
    for name in names:  # fluxes of ~100 mJy: CIGALE's invalid marker (<= -9990, in the table's numbers) stays apart
        table[f"{name}_flux"] *= 1e-3
        table[f"{name}_err"] *= 1e-3
    # CIGALE-style limits: galaxy 1 in its first band (a limit above the model), galaxy 2 in two bands (one tight,
    # below the detections' model), galaxy 4 a limit at a negative value; galaxy 6 has CIGALE's invalid marker in
    # a band and galaxy 8 a zero error (both missing)
    table[f"{names[0]}_err"][1] = -0.2 * table[f"{names[0]}_flux"][1]
    table[f"{names[0]}_flux"][1] *= 2.0
    table[f"{names[5]}_err"][2] = -0.1 * table[f"{names[5]}_flux"][2]
    table[f"{names[5]}_flux"][2] *= 0.5
    table[f"{names[4]}_err"][2] = -0.3 * table[f"{names[4]}_flux"][2]
    table[f"{names[1]}_err"][4] = -abs(table[f"{names[1]}_err"][4])
    table[f"{names[1]}_flux"][4] = -0.5 * abs(table[f"{names[1]}_err"][4])
    table[f"{names[3]}_flux"][6] = -9999.0
    table[f"{names[2]}_err"][8] = 0.0
    table.write(directory / "catalog.ecsv")
    (directory / "bands.txt").write_text(band_lines(paths))
    return directory


def bands_of(directory: Path):
    return [p.stem for p in sorted((directory / "filters").glob("*.dat"), key=lambda p: int(p.stem[3:]))]


def config(directory: Path, name: str, accept: bool | None) -> Path:
    extra = "" if accept is None else f", accept_cigale_upper_limits: {str(accept).lower()}"
    path = directory / name
    path.write_text(CONFIG.format(output=name.replace(".yaml", ".h5"), bands=(directory / "bands.txt").read_text(),
                                  extra=extra))
    return path


def test_off_by_default_a_negative_error_is_refused_with_a_hint(workdir, capsys):
    assert main(["run", str(config(workdir, "off.yaml", None))]) == 2
    err = capsys.readouterr().err
    assert "errors must be positive" in err and "accept_cigale_upper_limits" in err, err
    assert not (workdir / "off.h5").exists()


def test_the_catalogue_reads_cigale_limits(workdir):
    names = bands_of(workdir)
    specs = [{"name": n, "flux_column": f"{n}_flux", "error_column": f"{n}_err"} for n in names]
    with pytest.raises(CatalogError, match="errors must be positive"):
        read_catalog(workdir / "catalog.ecsv", specs, distance_column="distance")
    cat = read_catalog(workdir / "catalog.ecsv", specs, distance_column="distance", accept_cigale_upper_limits=True)
    from astropy.table import Table

    t = Table.read(workdir / "catalog.ecsv")
    expected_upper = np.zeros(cat.flux.shape, bool)
    expected_upper[1, 0] = expected_upper[2, 5] = expected_upper[2, 4] = expected_upper[4, 1] = True
    np.testing.assert_array_equal(cat.upper, expected_upper)
    for g, b in zip(*np.nonzero(expected_upper)):  # the limit is the flux as written, sigma the error's size
        assert cat.flux[g, b] == t[f"{names[b]}_flux"][g] and cat.error[g, b] == -t[f"{names[b]}_err"][g]
    assert not cat.valid[6, 3] and not cat.valid[8, 2]  # -9999 and a zero error: missing
    assert cat.valid.sum() == cat.flux.size - 2


def cigale_chi2(s, f, sigma, lim, q, precise=False):
    """CIGALE's chi2 of one galaxy and model at scale s, written out with erf (q = model fluxes at unit scale).
    ``precise``: 1 + erf(x) written as erfc(-x), the same number without the cancellation of 1 + erf(x) far below
    the limit (x << 0), where the literal form loses every digit."""
    det = ~lim
    chi2 = np.sum(((f[det] - q[det] * s) / sigma[det]) ** 2)
    x = (f[lim] - q[lim] * s) / (np.sqrt(2.0) * sigma[lim])
    return chi2 - 2.0 * np.sum(np.log(0.5 * (erfc(-x) if precise else 1.0 + erf(x))))


def test_chi2_and_scale_follow_cigales_formula(workdir):
    assert main(["run", str(config(workdir, "on.yaml", True))]) == 0
    with h5py.File(workdir / "on.h5") as h5:
        flux, error, upper = h5["observed/flux"][()], h5["observed/error"][()], h5["observed/upper"][()] == 1
        chi2_all, best = h5["chi2"][()], h5["best/model_index"][()]
        best_chi2, scale = h5["best/chi2"][()], h5["best/scale"][()]
        models = h5["grid/band_fluxes"][()]
        distance = h5["distance_mpc"][()]
    import astropy.units as u

    k = (1.0 * u.W / u.Hz / (4 * np.pi * (distance * u.Mpc) ** 2)).to_value(u.mJy)
    assert np.count_nonzero(upper) == 4
    for g in (1, 2, 4):  # the galaxies with limits
        used = np.isfinite(flux[g]) & np.isfinite(error[g])
        f, sigma, lim = flux[g, used], error[g, used], upper[g, used]
        q = k[g] * models[:, used]
        # best pair: hpcfit's chi2 at its scale is the formula's, and no other scale does better
        direct = cigale_chi2(scale[g], f, sigma, lim, q[best[g]], True)
        np.testing.assert_allclose(best_chi2[g], direct, rtol=1e-10, atol=1e-10)
        # the literal 1 + erf form agrees to its own precision (galaxy 4's limit sits at x = -4.9, 1 + erf = 5e-12)
        np.testing.assert_allclose(best_chi2[g], cigale_chi2(scale[g], f, sigma, lim, q[best[g]]), rtol=1e-6)
        for step in (1 - 1e-4, 1 + 1e-4):
            assert cigale_chi2(scale[g] * step, f, sigma, lim, q[best[g]], True) >= direct - 1e-12
        # every 7th pair: chi2 minimised over s >= 0 directly (the optimum lies in [0, s0], s0 = detections only):
        # a scan, then a bounded refinement
        for n in range(0, models.shape[0], 7):
            s0 = max(np.sum(f[~lim] * q[n, ~lim] / sigma[~lim] ** 2) / np.sum((q[n, ~lim] / sigma[~lim]) ** 2), 0)
            grid = np.linspace(0.0, s0, 2001)
            with np.errstate(divide="ignore"):
                values = np.array([cigale_chi2(x, f, sigma, lim, q[n], True) for x in grid])
            i = int(np.argmin(values))
            found = minimize_scalar(lambda x: cigale_chi2(x, f, sigma, lim, q[n], True),
                                    bounds=(grid[max(i - 1, 0)], grid[min(i + 1, grid.size - 1)]), method="bounded",
                                    options={"xatol": 1e-12 * (s0 + 1)})
            assert np.isfinite(found.fun)
            np.testing.assert_allclose(chi2_all[g, n], min(found.fun, values[i]), rtol=1e-7, atol=1e-7)
