"""run.mpi_info: MPI-IO hints checked (a bad one is a config error naming the key), defaulted on Lustre only,
handed to the mpio file (read back from the file's access property list under mpiexec) and recorded in the
output; planes of an early dataset written by each rank alone in every HDF5 mode."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from launch import REPO, find_mpiexec, hpcfit, serial_h5py_dir

from hpcfit.calibrate.kernels.synthetic import make_night
from hpcfit.cli import main
from hpcfit.io.mpi_hints import LUSTRE_STRIPE_UNIT, check_hints, file_system_type, resolve_hints

SCRIPT = Path(__file__).parent / "scripts" / "planes_and_hints.py"
HINTS = {"striping_factor": "2", "striping_unit": "1048576", "cb_buffer_size": "4194304", "romio_cb_write": "enable"}


def problems(hints: dict) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    check_hints(hints, lambda key, message, allowed: found.append((key, message)))
    return found


def test_good_hints_pass_and_bad_ones_are_named():
    assert problems({"striping_factor": 8, "striping_unit": "4194304", "romio_cb_write": "enable",
                     "cb_config_list": "*:1", "some_vendor_hint": "x"}) == []
    bad = dict(problems({"striping_factor": 0, "romio_cb_write": "maybe", "cb_buffer_size": "4M",
                         "Striping-Factor": 2, "romio_no_indep_rw": "yes", "cb_nodes": [2]}))
    assert set(bad) == {"run.mpi_info.striping_factor", "run.mpi_info.romio_cb_write", "run.mpi_info.cb_buffer_size",
                        "run.mpi_info.Striping-Factor", "run.mpi_info.romio_no_indep_rw", "run.mpi_info.cb_nodes"}
    assert "enable, disable, automatic" in bad["run.mpi_info.romio_cb_write"]
    assert "integer >= 1" in bad["run.mpi_info.striping_factor"]


def test_lustre_default_only_when_none_given(tmp_path, monkeypatch):
    import hpcfit.io.mpi_hints as mpi_hints

    monkeypatch.setattr(mpi_hints, "file_system_type", lambda path, mounts="/proc/mounts": "lustre")
    hints, source = resolve_hints("auto", tmp_path / "out.h5", 64)
    assert hints == {"striping_factor": "16", "striping_unit": str(LUSTRE_STRIPE_UNIT)} and "Lustre" in source
    assert resolve_hints("auto", tmp_path / "out.h5", 4)[0]["striping_factor"] == "4"
    # larger outputs get more stripes: one per 512 MiB beyond 8 GiB, at most 64, never more than the ranks
    stripes = lambda ranks, size: int(resolve_hints("auto", tmp_path / "out.h5", ranks, size)[0]["striping_factor"])  # noqa: E731
    assert stripes(64, 1 << 30) == 16 and stripes(64, 8 << 30) == 16 and stripes(64, (8 << 30) + 1) == 17
    assert stripes(64, 10_800_000_000) == 21 and stripes(64, 1 << 40) == 64 and stripes(128, 1 << 40) == 64
    assert stripes(8, 1 << 40) == 8 and stripes(1, None) == 1
    assert resolve_hints({"cb_nodes": 2}, tmp_path / "out.h5", 64) == ({"cb_nodes": "2"}, "run.mpi_info")
    assert resolve_hints("none", tmp_path / "out.h5", 64)[0] == {}
    monkeypatch.setattr(mpi_hints, "file_system_type", lambda path, mounts="/proc/mounts": "ext4")
    assert resolve_hints("auto", tmp_path / "out.h5", 64) == ({}, "auto: none (ext4 file system)")


def test_file_system_type_takes_the_longest_mount_point(tmp_path):
    mounts = tmp_path / "mounts"
    mounts.write_text("rootfs / overlay rw 0 0\n10.0.0.1@tcp:/scratch /scratch lustre rw 0 0\n"
                      "tmpfs /scratch/tmp tmpfs rw 0 0\n")
    assert file_system_type("/scratch/user/run/out.h5", str(mounts)) == "lustre"
    assert file_system_type("/scratch/tmp/x", str(mounts)) == "tmpfs"
    assert file_system_type("/scratchy/x", str(mounts)) == "overlay"
    assert file_system_type("/x", str(tmp_path / "missing")) == ""


@pytest.fixture(scope="module")
def small_night(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("hints")
    make_night(root / "night", shape=(32, 40), n_bias=3, n_dark=3, n_flat=3, n_science=2)
    return root


def _config(root: Path, name: str, run: str) -> Path:
    path = root / f"{name}.yaml"
    path.write_text(f"job: calibrate\noutput: {name}.h5\nrun:\n{run}\ncalibrate:\n  inputs: [night]\n")
    return path


def test_run_hands_the_jobs_output_estimate_to_the_stripe_count(small_night, monkeypatch):
    import hpcfit.engine.run as engine_run
    from hpcfit.calibrate.job import CalibrateJob

    seen, estimates = [], []
    real, estimate = engine_run.resolve_hints, CalibrateJob.estimate_output_bytes
    monkeypatch.setattr(engine_run, "resolve_hints", lambda *a: seen.append(a) or real(*a))
    monkeypatch.setattr(CalibrateJob, "estimate_output_bytes",
                        lambda self, cfg, plan: estimates.append(estimate(self, cfg, plan)) or estimates[-1])
    config = _config(small_night, "est", "  overwrite: true")
    assert main(["run", str(config), "-q"]) == 0
    assert len(seen) == 1 and seen[0][2] == 1
    assert seen[0][3] and seen[0][3] > 0  # the calibrate job's estimate of its output, not None
    assert seen[0][3] == estimates[-1]


def test_bad_hint_in_a_config_exits_2_naming_key_and_line(small_night, capsys):
    config = _config(small_night, "bad", "  mpi_info:\n    striping_factor: 4\n    romio_ds_write: maybe")
    assert main(["run", str(config)]) == 2
    err = capsys.readouterr().err
    assert "bad.yaml:6" in err and "run.mpi_info.romio_ds_write" in err and "enable, disable, automatic" in err
    assert not (small_night / "bad.h5").exists()
    config = _config(small_night, "bad1", "  mpi_info: {romio_ds_write: off}")  # YAML reads `off` as false
    assert main(["validate", str(config)]) == 2
    assert "run.mpi_info.romio_ds_write: false is not valid (allowed: integer >= 0 | string)" in capsys.readouterr().err
    config = _config(small_night, "bad2", "  mpi_info: [striping_factor]")
    assert main(["validate", str(config)]) == 2
    assert "run.mpi_info" in capsys.readouterr().err


def _run_script(tmp_path: Path, n: int | None, hints: dict, serial_h5py: bool = False) -> list[dict]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(([str(serial_h5py_dir())] if serial_h5py else [])
                                                      + [str(REPO)]))
    cmd = [sys.executable, str(SCRIPT), str(tmp_path / "planes.h5"), json.dumps(hints)]
    if n is not None:
        cmd = [find_mpiexec(), "-n", str(n)] + cmd
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(next(line for line in proc.stdout.splitlines() if line.startswith("RESULT "))[7:])


@pytest.mark.mpi
@pytest.mark.parametrize("n,serial,mode", [(None, False, "single"), (2, False, "mpio"), (2, True, "serial")],
                         ids=["single", "mpio-2", "serial-h5py-2"])
def test_planes_written_by_each_rank_alone_and_hints_reach_the_file(tmp_path, n, serial, mode):
    if serial and serial_h5py_dir() is None:
        pytest.skip("no serial h5py installed aside (.venv/serial-h5py); run `make setup`")
    report = _run_script(tmp_path, n, HINTS, serial)
    assert [r["mode"] for r in report] == [mode] * (n or 1)
    if mode == "mpio":
        # the hints the file was opened with (HDF5 keeps the MPI.Info it was given)
        assert all(r["hints"] == HINTS for r in report), report
    for r in report:
        assert r["seen"] == 100.0 * ((r["rank"] + 1) % 5)
    with h5py.File(tmp_path / "planes.h5") as h5:
        planes = h5["planes"]
        assert planes.shape == (4, 3, 4) and planes.chunks == (1, 3, 4) and planes.attrs["unit"] == "adu"
        expected = np.arange(12, dtype=np.float32).reshape(3, 4) + 100 * np.arange(4)[:, None, None]
        np.testing.assert_array_equal(planes[()], expected)


@pytest.mark.mpi
def test_hints_recorded_in_the_output(small_night):
    config = _config(small_night, "hinted", "  mpi_info: {cb_buffer_size: 1048576, romio_cb_write: disable}")
    result = hpcfit(["run", config.name], n=2, cwd=small_night)
    assert result.returncode == 0, result.output
    with h5py.File(small_night / "hinted.h5") as h5:
        assert h5.attrs["output_mode"] == "mpio"
        assert json.loads(h5.attrs["mpi_info"]) == {"cb_buffer_size": "1048576", "romio_cb_write": "disable"}
        assert h5.attrs["mpi_info_source"] == "run.mpi_info"
