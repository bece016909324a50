"""The output file: same content written collectively (mpio), rank by rank (serial h5py), or by one process;
temporary name until commit."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from hpcfit.cubefit.boxes import flat_range_boxes
from launch import REPO, Completed, find_mpiexec, serial_h5py_dir

SCRIPT = Path(__file__).parent / "scripts" / "write_pieces.py"


def run_script(path: Path, n: int | None, *, serial_h5py: bool = False, env: dict | None = None,
               transfer: str = "auto") -> Completed:
    import subprocess
    import time

    full_env = dict(os.environ)
    paths = [str(REPO)]
    if serial_h5py:
        paths.insert(0, str(serial_h5py_dir()))
    full_env["PYTHONPATH"] = os.pathsep.join(paths)
    full_env.update(env or {})
    cmd = [sys.executable, str(SCRIPT), str(path), transfer]
    if n is not None:
        cmd = [find_mpiexec(), "-n", str(n)] + cmd
    t = time.monotonic()
    p = subprocess.run(cmd, env=full_env, capture_output=True, text=True, timeout=600)
    return Completed(p.returncode, p.stdout, p.stderr, time.monotonic() - t)


def content(path: Path) -> dict:
    with h5py.File(path, "r") as h5:
        return {"value": h5["maps/value"][()], "table": h5["table"][()], "names": h5["names"][()].tolist(),
                "unit": h5["maps/value"].attrs["unit"], "answer": int(h5.attrs["answer"]),
                "tiles": h5["maps/tiles"][()]}


def expected_map() -> np.ndarray:
    return (np.arange(63, dtype=float) * 1.5).reshape(7, 9)


@pytest.mark.parametrize("n,serial,env,mode,transfer", [
    (None, False, None, "single", "auto"),
    (2, False, None, "mpio", "collective"),
    (4, False, None, "mpio", "collective"),
    (3, False, None, "mpio", "independent"),
    (2, False, {"HPCFIT_SERIAL_HDF5": "1"}, "serial", "auto"),
    (3, True, None, "serial", "auto"),
], ids=["one-process", "mpio-collective-2", "mpio-collective-4", "mpio-independent-3", "serial-forced-2",
        "serial-h5py-3"])
@pytest.mark.mpi
def test_same_content_in_every_mode(tmp_path, n, serial, env, mode, transfer):
    if serial and serial_h5py_dir() is None:
        pytest.skip("no serial h5py installed aside (.venv/serial-h5py); run `make setup`")
    if n is not None and find_mpiexec() is None:
        pytest.skip("no mpiexec")
    out = tmp_path / "f.h5"
    result = run_script(out, n, serial_h5py=serial, env=env, transfer=transfer)
    assert result.returncode == 0, result.output
    assert f"MODE {mode}" in result.stdout
    assert f"RANKS {n or 1}" in result.stdout  # really n ranks: a launcher ignoring -n would run one
    if serial:
        assert "H5PY_MPI False" in result.stdout  # really a serial h5py
    got = content(out)
    np.testing.assert_array_equal(got["value"], expected_map())
    np.testing.assert_array_equal(got["table"][:, 1], np.arange(50) * 2)
    np.testing.assert_array_equal(got["tiles"], np.arange(48, dtype="f4").reshape(6, 8))
    assert got["names"] == [b"alpha", b"beta", b"gamma"] and got["unit"] == "m / s" and got["answer"] == 42
    assert not list(tmp_path.glob("*.incomplete"))


def test_flat_range_boxes_cover_exactly():
    rng = np.random.default_rng(0)
    for shape in [(5,), (4, 6), (3, 4, 5), (2, 1, 3, 4)]:
        total = int(np.prod(shape))
        for _ in range(40):
            a, b = sorted(rng.integers(0, total + 1, 2))
            seen = np.zeros(total, dtype=int)
            grid = np.arange(total).reshape(shape)
            last = a
            for box, lo, hi in flat_range_boxes(shape, int(a), int(b)):
                assert lo == last
                last = hi
                np.testing.assert_array_equal(grid[box].ravel(), np.arange(lo, hi))
                seen[lo:hi] += 1
            assert last == b or a == b
            assert seen[a:b].tolist() == [1] * (b - a) and seen.sum() == b - a


def test_incomplete_name_until_commit(tmp_path):
    from hpcfit.io.h5out import OutputFile
    from hpcfit.runtime.comm import SerialComm

    out = OutputFile(tmp_path / "r.h5", SerialComm())
    out.create_dataset("x", (3,), "f8")
    out.write([("x", (slice(0, 3),), np.ones(3))])
    assert (tmp_path / "r.h5.incomplete").exists() and not (tmp_path / "r.h5").exists()
    out.commit()
    assert (tmp_path / "r.h5").exists() and not (tmp_path / "r.h5.incomplete").exists()
