"""The sample job: draws inside the hypercube with uniform marginals, redshift bands by index, a true permutation
when shuffled, the same file for any rank count and for the out-of-core shuffle, slices + merge, config errors,
and a failing plug-in ending the job cleanly."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
from scipy import stats

from h5compare import assert_ran_with, assert_same_datasets, datasets
from hpcfit.cli import main
from config_errors import check_bad_config
from launch import assert_every_rank_exited, hpcfit

TOY = """\
job: sample
output: {output}
sample:
  free_params:
    redshift: [0.0, 6.0]
    log_mass: [8.0, 12.0]
    dust2: [0.0, 2.0]
    tage: [0.5, 13.0]
    log_tau: [-1.0, 1.5]
  sampling:
    n_samples: {n}
    seed: 7
    method: {method}
    batch_size: 1500
    filters: dustpedia_ir
    shuffle: {shuffle}
  model: plugins.toy_sed:factory
"""


def write(directory: Path, name: str, *, n: int = 12000, method: str = "uniform", output: str = "out.h5",
          shuffle: str = "true", extra: str = "") -> Path:
    path = directory / name
    path.write_text(TOY.format(n=n, method=method, output=output, shuffle=shuffle) + extra)
    return path


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("sample")


@pytest.fixture(autouse=True)
def plugin_path(monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).parent))


@pytest.fixture(scope="module")
def serial_file(workdir) -> Path:
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    config = write(workdir, "serial.yaml", output="serial.h5")
    assert main(["run", str(config)]) == 0
    return workdir / "serial.h5"


@pytest.mark.parametrize("method", ["uniform", "latin_hypercube", "sobol"])
def test_rows_inside_bounds_with_uniform_marginals(workdir, method):
    config = write(workdir, f"{method}.yaml", method=method, output=f"{method}.h5")
    assert main(["run", str(config)]) == 0
    with h5py.File(workdir / f"{method}.h5") as h5:
        theta, unit = h5["samples/theta"][()], h5["samples/normalised_theta"][()]
        low, high = h5["samples/theta"].attrs["low"], h5["samples/theta"].attrs["high"]
        names = list(h5["samples/theta"].attrs["names"])
        assert names == ["redshift", "log_mass", "dust2", "tage", "log_tau"]
        assert np.all(theta >= low) and np.all(theta <= high)
        np.testing.assert_allclose(theta, low + (high - low) * unit, rtol=1e-12)
        for j in range(theta.shape[1]):
            assert stats.kstest(unit[:, j], "uniform").pvalue > 1e-3, (method, names[j])
        assert h5["samples/simulated_y"].shape == (12000, 7) and np.all(h5["samples/simulated_y"][()] > 0)
        assert h5.attrs["sample_method"] == method and h5.attrs["sample_seed"] == 7


def test_redshift_bands_follow_the_index_and_shuffle_is_a_permutation(workdir, serial_file):
    config = write(workdir, "ordered.yaml", output="ordered.h5", shuffle="false")
    assert main(["run", str(config)]) == 0
    ordered, shuffled = datasets(workdir / "ordered.h5"), datasets(serial_file)
    z = ordered["samples/theta"][:, 0]
    np.testing.assert_array_equal(ordered["samples/sample_index"], np.arange(12000))
    # any contiguous block of indices is a contiguous redshift band with exactly its share of samples
    for ranks in (2, 3, 4):
        edges = [r * 12000 // ranks for r in range(ranks + 1)]
        for r in range(ranks):
            band = z[edges[r]:edges[r + 1]]
            assert band.min() >= 6.0 * edges[r] / 12000 and band.max() <= 6.0 * edges[r + 1] / 12000
    zs = shuffled["samples/theta"][:, 0]
    assert not np.all(np.diff(zs) >= 0) and abs(stats.spearmanr(np.arange(12000), zs)[0]) < 0.05
    # the shuffled rows are exactly the unshuffled rows, moved
    order = np.argsort(shuffled["samples/sample_index"])
    for name in ("samples/theta", "samples/simulated_y", "samples/normalised_theta"):
        np.testing.assert_array_equal(shuffled[name][order], ordered[name])


@pytest.mark.mpi
@pytest.mark.parametrize("n,extra", [(2, ""), (4, ""), (3, "    memory_limit: 600 kB\n")],
                         ids=["2-ranks", "4-ranks", "3-ranks-out-of-core"])
def test_same_file_for_any_rank_count(workdir, serial_file, n, extra):
    config = write(workdir, f"mpi{n}.yaml", output=f"mpi{n}.h5")
    text = config.read_text().replace("    shuffle: true\n", "    shuffle: true\n" + extra)
    config.write_text(text)
    result = hpcfit(["run", config.name], n=n, cwd=workdir, env={"PYTHONPATH": str(Path(__file__).parent)})
    assert result.returncode == 0, result.output
    assert_same_datasets(serial_file, workdir / f"mpi{n}.h5")
    assert_ran_with(workdir / f"mpi{n}.h5", n_ranks=n, mode="mpio")
    with h5py.File(workdir / f"mpi{n}.h5") as h5:
        mode = h5.attrs["sample_shuffle_mode"]
        assert ("out-of-core" in mode) == bool(extra), mode


@pytest.mark.mpi
def test_builtin_model_file_identical_for_1_and_2_ranks(workdir):
    config = workdir / "builtin.yaml"
    config.write_text("""\
job: sample
output: builtin1.h5
sample:
  free_params: {redshift: [0, 6], log_mass: [8, 12], dust2: [0, 2], tage: [0.001, 13.8], log_tau: [-1, 1.47],
                log_agn_mass: [-7, 1.17], inclination: [0, 90]}
  sampling: {n_samples: 6000, seed: 3, batch_size: 1000, filters: dustpedia_ir, dtype: float32}
  model: {name: builtin, options: {ssp: synthetic}}
""")
    assert main(["run", str(config)]) == 0
    result = hpcfit(["run", config.name, "--set", "output=builtin2.h5"], n=2, cwd=workdir)
    assert result.returncode == 0, result.output
    assert_same_datasets(workdir / "builtin1.h5", workdir / "builtin2.h5")
    assert_ran_with(workdir / "builtin2.h5", n_ranks=2, mode="mpio")
    with h5py.File(workdir / "builtin2.h5") as h5:
        assert h5["samples/simulated_y"].dtype == np.float32
        assert "synthetic" in h5.attrs["sample_model_description"]


@pytest.mark.mpi
def test_slices_and_merge_give_the_same_rows_in_the_same_order(workdir, serial_file):
    config = write(workdir, "sliced.yaml", output="sliced.h5")
    for k in range(3):
        assert main(["run", str(config), "--slice", f"{k}/3"]) == 0
    result = hpcfit(["merge", config.name], n=2, cwd=workdir, env={"PYTHONPATH": str(Path(__file__).parent)})
    assert result.returncode == 0, result.output
    assert_same_datasets(serial_file, workdir / "sliced.h5")
    assert_ran_with(workdir / "sliced.h5", n_ranks=2, mode="mpio")


@pytest.mark.mpi
def test_failing_plugin_on_one_rank_ends_the_job(workdir):
    config = write(workdir, "fail.yaml", output="fail.h5")
    config.write_text(config.read_text().replace("plugins.toy_sed:factory", "plugins.toy_sed:failing_factory"))
    result = hpcfit(["run", config.name], n=2, cwd=workdir, env={"PYTHONPATH": str(Path(__file__).parent)})
    assert result.returncode != 0
    assert "FATAL on rank 1 of 2" in result.stderr and "toy model refuses redshift > 3" in result.stderr, result.output
    assert not (workdir / "fail.h5").exists() and not (workdir / "fail.h5.incomplete").exists()


BAD = [
    ("low not below high", ("dust2: [0.0, 2.0]", "dust2: [2.0, 1.0]"), r"bad\.yaml:7: sample\.free_params\.dust2:",
     "must be below high"),
    ("unknown parameter", ("dust2: [0.0, 2.0]", "dust3: [0.0, 2.0]"), r"bad\.yaml:7: sample\.free_params\.dust3:",
     "unknown parameter"),
    ("unknown filter", ("filters: dustpedia_ir", "filters: [PACS_blue, PACS_mauve]"), r"bad\.yaml:15: sample\.sampling\.filters:",
     "PACS_mauve"),
    ("unknown method", ("method: uniform", "method: halton"), r"bad\.yaml:13: sample\.sampling\.method:", "allowed: uniform"),
    ("bad memory limit", ("    shuffle: true", "    shuffle: true\n    memory_limit: lots"), r"bad\.yaml:17: sample\.sampling\.memory_limit:",
     "is not a size"),
    ("plug-in not importable", ("plugins.toy_sed:factory", "nowhere.module:factory"), r"bad\.yaml:17: sample\.model\.name:",
     "cannot import"),
    ("missing required parameter", ("    tage: [0.5, 13.0]\n", ""), r"bad\.yaml:\d+: sample\.free_params:", "needs tage"),
    ("range outside the model's", ("tage: [0.5, 13.0]", "tage: [0.5, 30.0]"), r"bad\.yaml:8: sample\.free_params\.tage:",
     "outside the model's valid range"),
    ("partition axis not free", ("    shuffle: true", "    shuffle: true\n    partition_by: mass"),
     r"bad\.yaml:17: sample\.sampling\.partition_by:", "not a free parameter"),
]


@pytest.mark.parametrize("name,edit,where,what", BAD, ids=[b[0] for b in BAD])
def test_bad_config_exits_2(workdir, capsys, name, edit, where, what):
    text = TOY.format(n=100, method="uniform", output="bad.h5", shuffle="true")
    check_bad_config(workdir, text, edit, where.replace("bad", "cfg"), what, capsys, outputs="bad.h5*")


@pytest.mark.mpi
def test_fewer_samples_than_ranks_is_a_config_error(workdir):
    config = write(workdir, "tiny.yaml", n=1, output="tiny.h5")
    result = hpcfit(["run", config.name], n=2, cwd=workdir, env={"PYTHONPATH": str(Path(__file__).parent)},
                    probe_ranks=True)
    assert result.returncode == 2 and "sampling.n_samples" in result.stderr and "2 ranks" in result.stderr, result.output
    assert_every_rank_exited(result, 2, 2)


def test_out_of_core_without_checkpoints_leaves_no_spill(workdir, serial_file, tmp_path):
    """With run.checkpoint: false nothing can resume from the bucket files: they are removed once written, and a
    user's own spill directory keeps its unrelated files."""
    config = write(workdir, "nospill.yaml", output="nospill.h5")
    config.write_text(config.read_text().replace("    shuffle: true\n", "    shuffle: true\n    memory_limit: 600 kB\n")
                      + "run: {checkpoint: false}\n")
    assert main(["run", str(config)]) == 0
    assert_same_datasets(serial_file, workdir / "nospill.h5")
    assert not (workdir / "nospill.h5.parts").exists()
    own = tmp_path / "scratch"
    own.mkdir()
    (own / "keep.txt").write_text("mine")
    config.write_text(config.read_text().replace("output: nospill.h5", "output: nospill2.h5")
                      .replace("    shuffle: true\n", f"    shuffle: true\n    spill_dir: {own}\n"))
    assert main(["run", str(config)]) == 0
    assert_same_datasets(serial_file, workdir / "nospill2.h5")
    assert sorted(p.name for p in own.iterdir()) == ["keep.txt"]
