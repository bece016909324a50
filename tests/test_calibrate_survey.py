"""calibrate's survey (the header scan shared by the ranks before rank 0 plans): the same plan and the same output
file for 1, 2 and 4 ranks; a bad header in any rank's share still gives an error naming the file (and the key,
for a bad frame under on_bad_frame: fail); a failure during the survey ends the whole job, naming the rank and the
stage; ``hpcfit validate`` runs the survey too."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from h5compare import assert_ran_with, assert_same_datasets
from launch import HANG_GUARD_SECONDS, REPO, Completed, find_mpiexec, hpcfit

from hpcfit.calibrate.kernels.synthetic import make_night, write_raw_frame
from hpcfit.calibrate.planning import make_plan
from hpcfit.engine.run import load_config
from hpcfit.registry import JOBS

SHAPE = (24, 32)
SCRIPT = REPO / "tests" / "scripts" / "calibrate_plan.py"
CONFIG = """\
job: calibrate
output: {output}
calibrate:
  inputs: [night{more}]
  batch_frames: 8
{extra}"""


def write_config(root: Path, name: str, output: str, *, more: str = "", extra: str = "") -> Path:
    path = root / name
    path.write_text(CONFIG.format(output=output, more=more, extra=extra))
    return path


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """A night of 71 frames (more than the threaded-scan threshold of one process), plus files the survey must
    account for like the single-process scan: a note (not FITS), a focus frame (a type calibrate does not use)
    and a truncated science frame (rejected while planning)."""
    root = tmp_path_factory.mktemp("survey")
    night = root / "night"
    make_night(night, shape=SHAPE, n_science=48, n_stars=5, cosmic_rays_per_frame=2)
    (night / "notes.txt").write_text("observing log\n")
    write_raw_frame(night / "misc" / "focus.fits", np.full(SHAPE, 1000.0), IMAGETYP="focus",
                    EXPTIME=1.0, DATE_OBS="2024-03-11T01:00:00")
    whole = write_raw_frame(night / "ScienceImages" / "truncated.fits", np.full(SHAPE, 1000.0),
                            IMAGETYP="Light Frame", EXPTIME=30.0, FILTER="V", DATE_OBS="2024-03-11T01:01:00")
    whole.write_bytes(whole.read_bytes()[:2880 + 100])
    # the last file in path order (the last rank's share): an EXPTIME card astropy cannot parse
    bad = write_raw_frame(root / "zz_bad" / "unparsable.fits", np.full(SHAPE, 1000.0), IMAGETYP="Light Frame",
                          EXPTIME=30.0, FILTER="V", DATE_OBS="2024-03-11T01:02:00")
    data = bytearray(bad.read_bytes())
    at = data.index(b"EXPTIME =")
    data[at:at + 80] = b"EXPTIME = abc".ljust(80)
    bad.write_bytes(bytes(data))
    return root


def _serial_plan(config: Path):
    job, cfg, _, _ = load_config(config, [], jobs=JOBS)
    return make_plan(cfg, lambda *args: pytest.fail(f"unexpected config problem {args}"))


@pytest.mark.mpi
def test_survey_on_1_2_4_ranks_gives_the_plan_of_one_process(root):
    config = write_config(root, "plan.yaml", "plan.h5")
    expected = _serial_plan(config)
    assert any(r.name == "truncated.fits" for r in expected.rejected)
    assert {s.name for s in expected.skipped} == {"notes.txt", "focus.fits"}
    for n in (1, 2, 4):
        launched = _run_script(root, config, n)
        assert launched.returncode == 0, launched.output
        got = pickle.loads((root / f"plan{n}.pkl").read_bytes())
        assert got["ranks"] == n
        assert got["calib"] == expected, f"{n} rank(s): another plan than one process makes"


def _run_script(root: Path, config: Path, n: int) -> Completed:
    """calibrate_plan.py under ``mpiexec -n n``, with the tree under test first on the path."""
    launcher = find_mpiexec()
    if launcher is None:
        pytest.skip("no mpiexec on PATH")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p))
    env.pop("HPCFIT_INJECT_FAULT", None)
    proc = subprocess.run([launcher, "-n", str(n), sys.executable, str(SCRIPT), str(config), f"plan{n}.pkl"],
                          cwd=root, env=env, capture_output=True, text=True, timeout=HANG_GUARD_SECONDS)
    return Completed(proc.returncode, proc.stdout, proc.stderr, 0.0)


@pytest.mark.mpi
def test_same_output_on_1_2_4_ranks(root):
    outputs = {}
    for n in (1, 2, 4):
        config = write_config(root, f"run{n}.yaml", f"run{n}.h5")
        result = hpcfit(["run", config.name], n=n, cwd=root)
        assert result.returncode == 0, result.output
        assert_ran_with(root / f"run{n}.h5", n_ranks=n, mode="mpio" if n > 1 else None)
        outputs[n] = root / f"run{n}.h5"
    assert_same_datasets(outputs[1], outputs[2])
    assert_same_datasets(outputs[1], outputs[4])


@pytest.mark.mpi
def test_bad_frame_in_the_last_ranks_share_is_reported_with_file_and_key(root):
    config = write_config(root, "fail.yaml", "fail.h5", extra="  on_bad_frame: fail\n")
    result = hpcfit(["run", config.name], n=4, cwd=root)
    assert result.returncode == 2, result.output
    assert "calibrate.on_bad_frame" in result.stderr and "truncated.fits" in result.stderr, result.output
    assert not (root / "fail.h5").exists()


@pytest.mark.mpi
def test_unreadable_header_on_the_last_rank_ends_the_job_naming_file_and_rank(root):
    config = write_config(root, "bad.yaml", "bad.h5", more=", zz_bad")
    result = hpcfit(["run", config.name], n=4, cwd=root)
    assert result.returncode not in (0, 2), result.output
    assert "FATAL on rank 3 of 4" in result.stderr and "while processing survey" in result.stderr, result.output
    assert "unparsable.fits" in result.stderr and "EXPTIME" in result.stderr, result.output
    assert not (root / "bad.h5").exists()


@pytest.mark.mpi
@pytest.mark.parametrize("action", ["raise", "kill"])
def test_fault_at_stage_survey_ends_the_job(root, action):
    config = write_config(root, f"fault-{action}.yaml", f"fault-{action}.h5")
    result = hpcfit(["run", config.name], n=4, cwd=root,
                    env={"HPCFIT_INJECT_FAULT": f"rank=2,stage=survey,action={action}"})
    assert result.returncode != 0, result.output
    if action == "raise":
        assert "FATAL on rank 2 of 4" in result.stderr and "while processing survey" in result.stderr, result.output
        assert "InjectedFault: injected fault on rank 2, stage survey" in result.stderr, result.output
    assert not (root / f"fault-{action}.h5").exists()


def test_validate_runs_the_survey_on_one_rank(root):
    """validate is as strict as run: the survey's bad frame is reported with its key, and the survey runs."""
    config = write_config(root, "validate.yaml", "validate.h5", extra="  on_bad_frame: fail\n")
    result = hpcfit(["validate", config.name], cwd=root)
    assert result.returncode == 2 and "calibrate.on_bad_frame" in result.stderr, result.output
    assert "truncated.fits" in result.stderr, result.output
    fine = write_config(root, "validate-ok.yaml", "validate-ok.h5")
    assert hpcfit(["validate", fine.name], cwd=root).returncode == 0
    failed = hpcfit(["validate", fine.name], cwd=root, env={"HPCFIT_INJECT_FAULT": "rank=0,stage=survey"})
    assert failed.returncode not in (0, 2) and "while processing survey" in failed.stderr, failed.output


def test_only_calibrate_has_a_survey():
    assert {name for name in JOBS.names() if JOBS.load(name).has_survey()} == {"calibrate"}
