"""The Python face: ``import hpcfit`` stays light, ``hpcfit.run`` takes a path or a dict (validated like YAML, every
problem raised as one ConfigError, a failure as RunError, nothing exits the process), runs serially in-process
and collectively under mpiexec, and returns the output opened; ``hpcfit.open`` refuses non-hpcfit files clearly."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import numpy as np
import pytest

import hpcfit
from h5compare import assert_ran_with, datasets
from hpcfit.io.result import ResultFileError
from launch import REPO, find_mpiexec

TOY = {"job": "sample", "output": "toy.h5", "run": {"progress": "none"},
       "sample": {"free_params": {"redshift": [0.0, 6.0], "log_mass": [8.0, 12.0], "dust2": [0.0, 2.0],
                                  "tage": [0.5, 13.0], "log_tau": [-1.0, 1.5]},
                  "sampling": {"n_samples": 3000, "seed": 5, "batch_size": 700, "filters": "dustpedia_ir"},
                  "model": "plugins.toy_sed:factory"}}
TESTS = Path(__file__).resolve().parent


@pytest.fixture(autouse=True)
def plugin_path(monkeypatch):
    monkeypatch.syspath_prepend(str(TESTS))
    monkeypatch.setenv("PYTHONPATH", str(TESTS))


def _python(code: str, **kwargs) -> subprocess.CompletedProcess:
    env = {"PYTHONPATH": f"{REPO}:{TESTS}", "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=env,
                          **kwargs)


def test_import_hpcfit_imports_no_heavy_module():
    result = _python("""
        import sys
        import hpcfit
        heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("numpy", "astropy", "h5py", "mpi4py", "scipy"))
        print(heavy)
        print(callable(hpcfit.run), callable(hpcfit.open), hpcfit.ConfigError.__name__, "run" in dir(hpcfit))
    """)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "[]", lines[0]
    assert lines[1] == "True True ConfigError True"
    assert set(hpcfit.__all__) >= {"run", "open", "ConfigError", "RunError", "__version__"}
    with pytest.raises(AttributeError, match="no attribute 'nonsense'"):
        hpcfit.nonsense  # noqa: B018


def test_run_a_dict_returns_the_result(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a dict's relative output is relative to the working directory
    caller = {**TOY, "sample": dict(TOY["sample"])}
    result = hpcfit.run(caller, overrides={"sample.sampling.seed": 6})
    assert type(result).__name__ == "SampleResult" and result.path == tmp_path / "toy.h5"
    assert caller["sample"]["sampling"]["seed"] == 5  # the caller's dict is left alone
    data = datasets(tmp_path / "toy.h5")
    np.testing.assert_array_equal(np.asarray(result.theta), data["samples/theta"])
    np.testing.assert_array_equal(result.x[:10], data["samples/simulated_y"][:10])
    assert result.attrs["sample_seed"] == 6 and result.attrs["job"] == "sample"
    assert "seed: 5" in result.config  # the dict, as YAML, in the provenance


def test_run_a_path_with_string_overrides_is_the_command_line_run(tmp_path, monkeypatch):
    import yaml

    from hpcfit.cli import main

    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "cfg.yaml").write_text(yaml.safe_dump(TOY, sort_keys=False))
    assert hpcfit.run(tmp_path / "config" / "cfg.yaml").path == tmp_path / "config" / "toy.h5"  # beside the file
    monkeypatch.chdir(tmp_path)  # an override's relative path is relative to the working directory, like --set
    result = hpcfit.run(tmp_path / "config" / "cfg.yaml", overrides=["output=api.h5"])
    assert result.path == tmp_path / "api.h5"
    assert main(["run", str(tmp_path / "config" / "cfg.yaml"), "--set", "output=cli.h5"]) == 0
    a, b = datasets(tmp_path / "api.h5"), datasets(tmp_path / "cli.h5")
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def test_run_a_bad_dict_raises_every_problem(tmp_path):
    bad = {"job": "sample", "output": str(tmp_path / "x.h5"), "colour": "blue",
           "run": {"schedul": "static", "overwrite": "maybe"},
           "sample": {"free_params": {"redshift": [0.0, 6.0]}, "bogus": 1,
                      "sampling": {"n_samples": -3, "method": "random"}}}
    with pytest.raises(hpcfit.ConfigError) as info:
        hpcfit.run(bad)
    paths = sorted(issue.path for issue in info.value.issues)
    assert paths == ["colour", "run.overwrite", "run.schedul", "sample.bogus", "sample.sampling.method",
                     "sample.sampling.n_samples"], paths
    text = str(info.value)
    assert "<dict>: run.schedul: unknown key (did you mean 'schedule'?)" in text
    assert "sample.sampling.method: 'random' is not one of the choices (allowed: uniform, latin_hypercube, sobol)" \
        in text
    assert not (tmp_path / "x.h5").exists()
    with pytest.raises(hpcfit.ConfigError, match="unknown job 'smaple'"):
        hpcfit.run({"job": "smaple", "output": "x.h5"})
    with pytest.raises(hpcfit.ConfigError, match="cannot read the configuration"):
        hpcfit.run(tmp_path / "missing.yaml")
    with pytest.raises(hpcfit.ConfigError, match="expected a config file's path or a dict"):
        hpcfit.run(42)


def test_a_failure_raises_run_error_with_its_cause(tmp_path, monkeypatch):
    from hpcfit.runtime.faults import InjectedFault

    monkeypatch.setenv("HPCFIT_INJECT_FAULT", "rank=0,item=1")
    with pytest.raises(hpcfit.RunError, match="work item 1") as info:
        hpcfit.run({**TOY, "output": str(tmp_path / "fail.h5")})
    assert isinstance(info.value.__cause__, InjectedFault)
    assert not (tmp_path / "fail.h5").exists()
    assert not (tmp_path / "fail.h5.incomplete").exists()


@pytest.mark.mpi
def test_run_under_mpiexec_is_collective(tmp_path):
    launcher = find_mpiexec()
    if launcher is None:
        pytest.skip("no mpiexec on PATH")
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(f"""
        import hpcfit
        from hpcfit.runtime.comm import world_comm
        config = {TOY!r}
        rank = world_comm().rank
        result = hpcfit.run(config)
        print(f"rank {{rank}}: {{type(result).__name__}} {{len(result)}}")
        try:
            hpcfit.run({{**config, "sample": {{**config["sample"], "bogus": 1}}}})
        except hpcfit.ConfigError as exc:
            print(f"rank {{rank}}: ConfigError {{[i.path for i in exc.issues]}}")
    """))
    env = {"PYTHONPATH": f"{REPO}:{TESTS}", "PATH": "/usr/bin:/bin"}
    proc = subprocess.run([launcher, "-n", "2", sys.executable, str(script)], cwd=tmp_path, capture_output=True,
                          text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for rank in (0, 1):
        assert f"rank {rank}: SampleResult 3000" in proc.stdout
        assert f"rank {rank}: ConfigError ['sample.bogus']" in proc.stdout
    assert_ran_with(tmp_path / "toy.h5", n_ranks=2)


def test_open_refuses_what_is_not_an_hpcfit_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        hpcfit.open(tmp_path / "absent.h5")
    (tmp_path / "text.h5").write_text("not hdf5")
    with pytest.raises(ResultFileError, match="not a readable HDF5 file"):
        hpcfit.open(tmp_path / "text.h5")
    with h5py.File(tmp_path / "plain.h5", "w") as h5:
        h5["x"] = np.arange(3)
    with pytest.raises(ResultFileError, match="no 'job' attribute; not an hpcfit output file"):
        hpcfit.open(tmp_path / "plain.h5")
    with h5py.File(tmp_path / "other.h5", "w") as h5:
        h5.attrs["job"] = "spectra"
    with pytest.raises(ResultFileError, match="'spectra' names no job of this installation"):
        hpcfit.open(tmp_path / "other.h5")
