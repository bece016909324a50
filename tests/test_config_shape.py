"""One config shape for every job (job, output, run, <job>:), errors that spell out moved keys, `--set output=`
for every job, `-v`/`-q` on every verb, and `import hpcfit` leaving the process alone."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from cube_case import CONFIG as CUBE_CONFIG
from hpcfit.cli import build_parser, main
from hpcfit.cubefit.synthetic import write_cube
from hpcfit.registry import available_jobs, job_class

REPO = Path(__file__).resolve().parent.parent

OLD_GRIDFIT = """\
job: gridfit
catalog: {path: catalog.ecsv}
bands:
  - {name: b, filter: PSW, flux_column: f, error_column: e}
grid: {model: modified_blackbody}
fit:
  output: old.h5
  chi2: best
"""

OLD_SAMPLE = """\
job: sample
free_params: {redshift: [0, 6]}
sampling: {n_samples: 10, output: old.h5}
model: builtin
"""


@pytest.mark.parametrize("path", sorted((REPO / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_every_example_config_has_the_one_shape(path):
    values = yaml.safe_load(path.read_text())
    job = values["job"]
    assert set(values) <= {"job", "output", "run", job}, sorted(values)
    assert isinstance(values["output"], str) and isinstance(values[job], dict)


@pytest.mark.parametrize("job", ["cubefit", "gridfit", "sample", "calibrate"])
def test_every_job_schema_is_one_section_named_after_the_job(job):
    assert list(job_class(job).schema.fields) == [job]


@pytest.mark.parametrize("text,moves", [
    (OLD_GRIDFIT, [(2, "catalog", "gridfit.catalog"), (3, "bands", "gridfit.bands"), (5, "grid", "gridfit.grid"),
                   (7, "fit.output", "output"), (6, "fit", "gridfit.fit")]),
    (OLD_SAMPLE, [(2, "free_params", "sample.free_params"), (3, "sampling.output", "output"),
                  (3, "sampling", "sample.sampling"), (4, "model", "sample.model")]),
], ids=["gridfit", "sample"])
@pytest.mark.parametrize("verb", ["validate", "run"])
def test_old_layout_is_told_the_new_spelling(tmp_path, capsys, text, moves, verb):
    (tmp_path / "old.yaml").write_text(text)
    assert main([verb, str(tmp_path / "old.yaml")]) == 2
    err = capsys.readouterr().err
    for line, old, new in moves:
        assert re.search(rf"old\.yaml:{line}: {re.escape(old)}: this key has moved: write it as `{re.escape(new)}`",
                         err), err
    assert not list(tmp_path.glob("old.h5*"))


def test_set_output_works_for_every_job():
    # the key is the engine's, declared once for every job (gridfit and sample kept it elsewhere before)
    for job in available_jobs():
        assert "output" not in job_class(job).schema.fields[job].fields, job
    from hpcfit.engine.run import engine_schema

    assert "output" in engine_schema(available_jobs()).fields


def test_set_output_redirects_a_run(tmp_path):
    write_cube(tmp_path / "cube.fits", shape=(30, 2, 3))
    (tmp_path / "cfg.yaml").write_text(CUBE_CONFIG)
    assert main(["run", str(tmp_path / "cfg.yaml"), "-q", "--set", f"output={tmp_path / 'elsewhere.h5'}"]) == 0
    assert (tmp_path / "elsewhere.h5").is_file() and not (tmp_path / "out.h5").exists()


@pytest.mark.parametrize("verb,args", [("run", ["c.yaml"]), ("merge", ["c.yaml"]), ("submit", ["c.yaml"]),
                                       ("validate", ["c.yaml"]), ("demo", ["cubefit"]), ("inspect", ["f.h5"]),
                                       ("plot", ["f.h5"]), ("schema", [])])
def test_every_verb_takes_verbose_and_quiet(verb, args):
    parser = build_parser()
    assert parser.parse_args([verb, *args, "-v"]).verbose == 1
    assert parser.parse_args([verb, *args, "-qq"]).quiet == 2


def test_quiet_hides_information_and_verbose_adds_debug(tmp_path, capsys):
    write_cube(tmp_path / "cube.fits", shape=(30, 2, 3))
    (tmp_path / "cfg.yaml").write_text(CUBE_CONFIG + "run: {overwrite: true, progress: none}\n")
    assert main(["run", str(tmp_path / "cfg.yaml")]) == 0
    normal = capsys.readouterr()
    assert "hpcfit: wrote " in normal.out and "plan:" not in normal.out
    assert main(["run", str(tmp_path / "cfg.yaml"), "-q"]) == 0
    quiet = capsys.readouterr()
    assert quiet.out == "" and "wrote" not in quiet.err
    assert main(["run", str(tmp_path / "cfg.yaml"), "-v"]) == 0
    assert re.search(r"hpcfit: plan: 1 work item\(s\) of fits; first: ", capsys.readouterr().out)
    # errors still show with -q
    (tmp_path / "bad.yaml").write_text(CUBE_CONFIG.replace("chunk_n_max: 20", "chunk_n_max: -1"))
    assert main(["validate", str(tmp_path / "bad.yaml"), "-q"]) == 2
    assert "bad.yaml:11: cubefit.chunk_n_max:" in capsys.readouterr().err


def test_import_hpcfit_changes_nothing_in_the_process():
    probe = ("import os, sys; before = dict(os.environ); import hpcfit, hpcfit.cli, hpcfit.registry; "
             "assert dict(os.environ) == before, set(os.environ.items()) ^ set(before.items()); "
             "assert 'hpcfit.process' not in sys.modules; print('numpy' in sys.modules)")
    env = {k: v for k, v in os.environ.items() if not k.endswith("_NUM_THREADS") and k != "HPCFIT_BLAS_THREADS"}
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO, env=env)
    assert proc.returncode == 0, proc.stderr
    # the command line alone imports nothing heavy before its entry has applied the process settings
    proc = subprocess.run([sys.executable, "-c", "import sys, hpcfit.cli; print('numpy' in sys.modules)"],
                          capture_output=True, text=True, cwd=REPO, env=env)
    assert proc.stdout.strip() == "False", proc.stderr


def test_the_command_sets_one_blas_thread(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.endswith("_NUM_THREADS") and k != "HPCFIT_BLAS_THREADS"}
    probe = ("import os, sys; from hpcfit.cli import entry; from hpcfit import cli; "
             "cli.main = lambda argv=None: print(os.environ.get('OPENBLAS_NUM_THREADS'), "
             "os.environ.get('OMP_NUM_THREADS')) or 0; entry()")
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO, env=env)
    assert proc.stdout.split() == ["1", "1"], proc.stderr
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO,
                          env={**env, "OMP_NUM_THREADS": "3"})
    assert proc.stdout.split() == ["1", "3"], proc.stderr  # a user's own setting wins
