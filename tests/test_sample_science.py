"""The sample job's science, checked row by row against independent computations: every stored row's
``simulated_y`` is the built-in model evaluated on that row's stored theta (``log_`` axes decoded base 10, the
fixed parameters added), ``normalised_theta`` is theta rescaled to [0, 1), the ``log10`` attribute marks exactly
the ``log_`` axes, each row's redshift lies in the stratum of its ``sample_index``, and the row's theta is the draw
of that index — in one process (unshuffled) and on 2 ranks with the collective shuffle, in memory and out of core,
so that rows crossing ranks are checked too."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from h5compare import assert_ran_with
from hpcfit.cli import main
from launch import hpcfit

N = 3000
SEED = 11
FREE = {"redshift": (0.0, 4.0), "log_mass": (8.0, 12.0), "dust2": (0.0, 2.0), "tage": (0.5, 13.0),
        "log_tau": (-1.0, 1.47), "log_agn_mass": (-7.0, 1.17), "inclination": (0.0, 90.0)}
FIXED = {"agn_eb_v": 0.1, "log_agn_torus_mass": -1.0}
OPTIONS = {"ssp": "synthetic"}
FILTERS = "des"

CONFIG = """\
job: sample
output: {output}
sample:
  free_params: {{{free}}}
  fixed_params: {{{fixed}}}
  sampling: {{n_samples: {n}, seed: {seed}, method: uniform, batch_size: 400, filters: {filters},
             shuffle: {shuffle}{extra}}}
  model: {{name: builtin, options: {{ssp: synthetic}}}}
"""


def write_config(directory: Path, name: str, output: str, *, shuffle: bool, extra: str = "") -> Path:
    """A sample config over FREE / FIXED with the built-in model (synthetic SSPs) and the DES bands."""
    free = ", ".join(f"{k}: [{lo}, {hi}]" for k, (lo, hi) in FREE.items())
    fixed = ", ".join(f"{k}: {v}" for k, v in FIXED.items())
    path = directory / name
    path.write_text(CONFIG.format(output=output, free=free, fixed=fixed, n=N, seed=SEED, filters=FILTERS,
                                  shuffle=str(shuffle).lower(), extra=extra))
    return path


def read_samples(path: Path) -> dict:
    """Every dataset of /samples and the attributes of theta."""
    with h5py.File(path) as h5:
        s = h5["samples"]
        out = {name: s[name][()] for name in ("theta", "normalised_theta", "simulated_y", "sample_index")}
        attrs = s["theta"].attrs
        out.update(names=[str(n) for n in attrs["names"]], low=attrs["low"][()], high=attrs["high"][()],
                   log10=attrs["log10"][()], filter_names=[str(n) for n in s["simulated_y"].attrs["filter_names"]])
    return out


def reference_model():
    """The built-in model built here, independently of the job, with full (not per-rank band) bounds."""
    from hpcfit.models.filters import load_filter_set
    from hpcfit.models.sed.loader import load_model_spec

    bounds = {}
    for name, (lo, hi) in FREE.items():
        if name.startswith("log_"):
            bounds[name[4:]] = (10.0 ** lo, 10.0 ** hi)
        else:
            bounds[name] = (lo, hi)
    for name, value in FIXED.items():
        if name.startswith("log_"):
            bounds[name[4:]] = (10.0 ** value, 10.0 ** value)
        else:
            bounds[name] = (value, value)
    return load_model_spec("builtin").build(filters=load_filter_set(FILTERS), options=dict(OPTIONS), bounds=bounds)


def model_inputs(data: dict, decode=lambda v: 10.0 ** v) -> dict[str, np.ndarray]:
    """Model parameters (linear) of every stored row: the file's ``log10`` columns decoded with ``decode``."""
    theta, n = data["theta"], data["theta"].shape[0]
    params = {}
    for j, (name, is_log) in enumerate(zip(data["names"], data["log10"])):
        params[name[4:] if is_log else name] = decode(theta[:, j]) if is_log else theta[:, j]
    for name, value in FIXED.items():
        key, linear = (name[4:], 10.0 ** value) if name.startswith("log_") else (name, value)
        params[key] = np.full(n, linear)
    return params


def expected_theta(data: dict) -> np.ndarray:
    """Theta of every stored row recomputed from its sample_index with the job's draw function (the partition
    axis, redshift, drawn in column 0 and moved back to its config position)."""
    from hpcfit.sample.hypercube import unit_points

    names = data["names"]
    partition = names.index("redshift")
    order = [partition] + [j for j in range(len(names)) if j != partition]
    drawn = unit_points("uniform", SEED, 0, N, N, len(names))
    unit = np.empty_like(drawn)
    unit[:, order] = drawn
    theta = data["low"] + (data["high"] - data["low"]) * unit
    return theta[data["sample_index"]]


def check_rows(data: dict, model) -> None:
    """The row-by-row science checks shared by every run."""
    names, theta, y = data["names"], data["theta"], data["simulated_y"]
    assert names == list(FREE) and theta.shape == (N, len(FREE)) and y.shape == (N, len(model.filter_names))
    assert data["filter_names"] == list(model.filter_names)
    np.testing.assert_array_equal(data["low"], [lo for lo, _ in FREE.values()])
    np.testing.assert_array_equal(data["high"], [hi for _, hi in FREE.values()])
    # log10 marks exactly the log_ axes
    np.testing.assert_array_equal(data["log10"], [n.startswith("log_") for n in names])
    # normalised_theta is theta rescaled by the stored bounds
    np.testing.assert_allclose(data["normalised_theta"], (theta - data["low"]) / (data["high"] - data["low"]),
                               rtol=1e-12, atol=1e-12)
    # rows stay whole: sample_index is a permutation and each row holds the draw of its index ...
    np.testing.assert_array_equal(np.sort(data["sample_index"]), np.arange(N))
    np.testing.assert_array_equal(theta, expected_theta(data))
    # ... whose redshift lies in the index's stratum [i/N, (i+1)/N) of the range (the redshift bands)
    z = theta[:, names.index("redshift")]
    lo, hi = FREE["redshift"]
    stratum = (z - lo) / (hi - lo) * N - data["sample_index"]
    assert np.all((stratum > -1e-9) & (stratum < 1 + 1e-9))
    # every stored y is the model evaluated, here, on the stored theta (log_ axes base 10), with the one BLAS
    # thread the job computes with (run.blas_threads: a threaded BLAS sums in another order, ~1e-6 relative here)
    with threadpool_limits(limits=1):
        expected = np.asarray(model(model_inputs(data)))
    np.testing.assert_allclose(y, expected, rtol=1e-6, atol=0)
    # the check can tell the base: decoding the log_ axes with exp instead gives other photometry
    natural = np.asarray(model(model_inputs(data, decode=np.exp)))
    assert np.median(np.abs(natural / y - 1)) > 0.5


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("sample_science")


@pytest.fixture(scope="module")
def model():
    # built, like the job's, with one BLAS thread: its tables are matrix products too
    with threadpool_limits(limits=1):
        return reference_model()


def test_serial_rows_are_the_model_of_their_theta(workdir, model):
    """One process, unshuffled: rows in index order, each the model of its own theta."""
    config = write_config(workdir, "serial.yaml", str(workdir / "serial.h5"), shuffle=False)
    assert main(["run", str(config)]) == 0
    data = read_samples(workdir / "serial.h5")
    np.testing.assert_array_equal(data["sample_index"], np.arange(N))
    assert np.all(np.diff(data["theta"][:, 0]) > 0)  # redshift increases with the index
    check_rows(data, model)


@pytest.mark.mpi
@pytest.mark.parametrize("extra", ["", ", memory_limit: 300 kB"], ids=["in-memory", "out-of-core"])
def test_shuffled_rows_on_two_ranks_stay_whole(workdir, model, extra):
    """2 ranks, each building its tables for its own redshift band, rows shuffled across ranks: every stored row
    is still one draw with its own model photometry."""
    name = "ooc" if extra else "mem"
    config = write_config(workdir, f"{name}.yaml", f"{name}.h5", shuffle=True, extra=extra)
    result = hpcfit(["run", config.name], n=2, cwd=workdir)
    assert result.returncode == 0, result.output
    data = read_samples(workdir / f"{name}.h5")
    assert_ran_with(workdir / f"{name}.h5", n_ranks=2, mode="mpio")
    with h5py.File(workdir / f"{name}.h5") as h5:
        assert ("out-of-core" in h5.attrs["sample_shuffle_mode"]) == bool(extra)
    index = data["sample_index"]
    # really shuffled across the ranks' halves: rows drawn by rank 1 (index >= N/2) land in rank 0's half
    assert np.mean(index[: N // 2] >= N // 2) > 0.4
    check_rows(data, model)
