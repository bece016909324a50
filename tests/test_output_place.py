"""The output's place: an unwritable folder or an output that cannot fit is refused before any work (validate and
run: exit 2, `FILE:LINE: output: ...`), and a disk that fills up during the run ends it with one line per failing
rank naming the file and the cause, no traceback, no temporary pieces left, completed checkpoints kept for
--resume. The full-disk cases run on a tmpfs of a few MB (they need root to mount it, and skip otherwise)."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from pathlib import Path

import h5py
import pytest

from hpcfit.cli import main
from hpcfit.engine.place import format_bytes, probe
from launch import hpcfit

TOY = """\
job: sample
output: {output}
run:
  checkpoint: {checkpoint}
sample:
  free_params:
    redshift: [0.0, 6.0]
    log_mass: [8.0, 12.0]
    dust2: [0.0, 2.0]
  fixed_params: {{tage: 5.0, tau: 1.0}}
  sampling:
    n_samples: {n}
    seed: 3
    batch_size: {batch}
    filters: dustpedia_ir
    dtype: float64
  model: plugins.toy_sed:factory
"""
TESTS = Path(__file__).resolve().parent


@pytest.fixture(autouse=True)
def plugin_path(monkeypatch):
    monkeypatch.syspath_prepend(str(TESTS))
    monkeypatch.setenv("PYTHONPATH", str(TESTS))


def write(path: Path, output: str, *, n: int = 4000, batch: int = 500, checkpoint: str = "true") -> Path:
    path.write_text(TOY.format(output=output, n=n, batch=batch, checkpoint=checkpoint))
    return path


@pytest.fixture
def tiny_fs(tmp_path):
    """A tmpfs of 8 MB mounted under tmp_path (root only)."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs of a few MB needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)], capture_output=True,
                          text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_unwritable_output_folder_is_refused_by_validate_and_run(tmp_path, capsys):
    config = write(tmp_path / "s.yaml", "/sys/s.h5")
    if probe(Path("/sys")) is None:
        pytest.skip("/sys takes new files here")
    for verb in ("validate", "run"):
        assert main([verb, str(config)]) == 2
        err = capsys.readouterr().err
        assert f"{config}:2: output: cannot create the output '/sys/s.h5'" in err and "Permission denied" in err
        assert "Traceback" not in err
    # a folder that would have to be created inside it, and a "folder" that is a file
    assert main(["validate", str(config), "--set", "output=/sys/new/s.h5"]) == 2
    assert "its folder '/sys/new' cannot be created: '/sys' refuses new files" in capsys.readouterr().err
    (tmp_path / "file").write_text("x")
    assert main(["validate", str(config), "--set", f"output={tmp_path / 'file' / 's.h5'}"]) == 2
    assert f"'{tmp_path / 'file'}' is a file, not a directory" in capsys.readouterr().err


def test_read_only_folder_and_checkpoint_folder(tmp_path, capsys):
    if os.geteuid() == 0:
        # root passes permission bits: a read-only bind of the folder shows what os.access cannot
        ro = tmp_path / "ro"
        ro.mkdir()
        if subprocess.run(["mount", "--bind", "-o", "ro", str(ro), str(ro)], capture_output=True).returncode:
            pytest.skip("cannot make a read-only bind mount here")
        try:
            config = write(tmp_path / "s.yaml", str(ro / "s.h5"))
            assert main(["validate", str(config)]) == 2
            assert "Read-only file system" in capsys.readouterr().err
        finally:
            subprocess.run(["umount", str(ro)], check=False)
    config = write(tmp_path / "s.yaml", "out.h5")
    (tmp_path / "out.h5.parts").write_text("not a folder")
    assert main(["validate", str(config)]) == 2
    assert "the checkpoint folder" in capsys.readouterr().err
    (tmp_path / "out.h5.parts").unlink()
    assert main(["validate", str(config)]) == 0


def test_space_estimate_refuses_and_warns(tmp_path, monkeypatch, capsys):
    """The numbers: n x (2 parameters' columns + bands) x 8 bytes (+ the index); checkpoints double it."""
    import shutil

    from hpcfit.engine import place

    config = write(tmp_path / "s.yaml", "out.h5", n=4000)
    free = {"bytes": 10**12}
    real = shutil.disk_usage
    monkeypatch.setattr(place.shutil, "disk_usage",
                        lambda p: real(p)._replace(free=free["bytes"]))
    assert main(["validate", str(config)]) == 0
    capsys.readouterr()
    from hpcfit.engine.run import load_config
    from hpcfit.registry import JOBS

    job, cfg, _, report = load_config(str(config), [], jobs=JOBS)
    plan = job.plan(cfg, report)
    bands = len(plan.info["filter_names"])
    size = 4000 * ((2 * 3 + bands) * 8 + 8)
    assert job.estimate_output_bytes(cfg, plan) == size
    free["bytes"] = 2 * size - 1  # output + checkpoints do not fit, the output alone would
    assert main(["validate", str(config)]) == 2
    err = capsys.readouterr().err
    assert f"{config}:2: output: the run needs about {2 * size:,} bytes ({size:,} bytes output + {size:,} bytes " \
           "of checkpoints until it is written)" in err
    assert f"has {2 * size - 1:,} bytes free" in err and "set run.checkpoint: false" in err
    free["bytes"] = int(size / 0.95)
    assert main(["validate", str(config), "--set", "run.checkpoint=false"]) == 0  # within 10 %: a warning only
    err = capsys.readouterr().err
    assert f"{config}:2: output: the run needs about {format_bytes(size)} for the output, 95% of the " in err
    assert "little room to spare (warning)" in err
    free["bytes"] = int(size / 0.89)  # more than 10 % to spare: silent
    assert main(["validate", str(config), "--set", "run.checkpoint=false"]) == 0
    assert "room" not in capsys.readouterr().err
    free["bytes"] = size - 1
    assert main(["run", str(config), "--set", "run.checkpoint=false"]) == 2
    assert "set run.checkpoint" not in capsys.readouterr().err  # the output alone cannot fit
    assert not (tmp_path / "out.h5").exists() and not (tmp_path / "out.h5.parts").exists()


@pytest.mark.mpi
def test_estimate_check_refuses_a_run_that_cannot_fit_on_a_tiny_fs(tmp_path, tiny_fs):
    config = write(tmp_path / "s.yaml", str(tiny_fs / "s.h5"), n=200_000, batch=20_000)
    for verb in ("validate", "run"):
        result = hpcfit([verb, str(config)], n=2, cwd=tmp_path)
        assert result.returncode == 2, result.output
        assert f"{config}:2: output: the run needs about" in result.stderr and "MB free" in result.stderr
        assert "Traceback" not in result.output
    assert list(tiny_fs.iterdir()) == []


def _run_while_filling(args: list[str], cwd: Path, mount: Path, leave: int, trigger: Path, n: int | None = 2, **kw):
    """Run hpcfit under mpiexec -n 2 and, once ``trigger`` exists (the run is past its checks), fill the file
    system up to ``leave`` free bytes, as another user's job on a shared scratch space would."""
    stop = threading.Event()
    outcome: dict = {}

    def run() -> None:
        outcome["result"] = hpcfit(args, n=n, cwd=cwd, **kw)
        stop.set()

    thread = threading.Thread(target=run)
    thread.start()
    while not stop.is_set() and not trigger.exists():
        time.sleep(0.02)
    free = os.statvfs(mount).f_bavail * os.statvfs(mount).f_frsize
    with open(mount / "filler", "wb") as handle:
        handle.write(b"\0" * max(0, free - leave))
    thread.join()
    return outcome["result"]


def _assert_one_line_per_failing_rank(result, needle: str) -> list[str]:
    assert result.returncode != 0, result.output
    assert "Traceback" not in result.output, result.output
    lines = [line for line in result.stderr.splitlines() if "FATAL" in line]
    assert 1 <= len(lines) <= 2, result.output  # one per failing rank
    for line in lines:
        assert needle in line and "No space left on device (ENOSPC)" in line, line
        assert "no output file was written" in line, line
    return lines


def _pieces(mount: Path) -> list[Path]:
    return [p for p in mount.rglob("*") if p.name.endswith(".tmp") or p.name.endswith(".incomplete")]


@pytest.mark.mpi
def test_disk_full_during_checkpoints_ends_with_one_line_and_resumes(tmp_path, tiny_fs):
    """sample under mpiexec -n 2: the disk fills up while the items are computed (slowed down so the filler comes
    first): one line per failing rank naming the checkpoint file, no .tmp pieces, the completed items kept; with
    room again, --resume finishes the run."""
    config = write(tmp_path / "s.yaml", str(tiny_fs / "s.h5"), n=8000, batch=500)
    manifest = tiny_fs / "s.h5.parts" / "slice-000-of-001" / "manifest.json"
    result = _run_while_filling(["run", str(config)], tmp_path, tiny_fs, leave=200_000, trigger=manifest,
                                env={"HPCFIT_INJECT_FAULT": "rank=*,item=*,action=delay:1"})
    lines = _assert_one_line_per_failing_rank(result, "cannot write '")
    assert ".pkl'" in lines[0] and "while processing work item" in lines[0]
    assert _pieces(tiny_fs) == []
    assert not (tiny_fs / "s.h5").exists()
    kept = sorted((tiny_fs / "s.h5.parts" / "slice-000-of-001").glob("item-*.pkl"))
    if kept:
        assert f"{len(kept)} completed item(s) kept in" in result.stderr and "--resume" in result.stderr
    (tiny_fs / "filler").unlink()
    resumed = hpcfit(["run", str(config), "--resume"], n=2, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.output
    assert f"resuming: {len(kept)} of 16 item(s) already done" in resumed.output
    with h5py.File(tiny_fs / "s.h5") as h5:
        assert h5["samples/theta"].shape == (8000, 3)
    assert _pieces(tiny_fs) == [] and not (tiny_fs / "s.h5.parts").exists()


@pytest.mark.mpi
@pytest.mark.parametrize("serial_h5py", [False, True], ids=["mpio", "serial-h5py"])
def test_disk_full_while_writing_the_output(tmp_path, tiny_fs, serial_h5py):
    """The checkpoints fit but the output does not: one line naming the output's temporary name, which is
    removed, and the completed checkpoints kept, in the parallel-HDF5 and the serial-h5py modes."""
    config = write(tmp_path / "s.yaml", str(tiny_fs / "s.h5"), n=8000, batch=2000)
    manifest = tiny_fs / "s.h5.parts" / "slice-000-of-001" / "manifest.json"
    size = 8000 * ((2 * 3 + 7) * 8 + 8)
    result = _run_while_filling(["run", str(config)], tmp_path, tiny_fs, leave=size + 60_000, trigger=manifest,
                                env={"HPCFIT_INJECT_FAULT": "rank=*,item=*,action=delay:1"},
                                serial_h5py=serial_h5py)
    lines = _assert_one_line_per_failing_rank(result, f"cannot write '{tiny_fs / 's.h5.incomplete'}'")
    assert "while processing writing the output" in lines[0], lines
    assert "4 completed item(s) kept in" in result.stderr
    assert _pieces(tiny_fs) == [] and not (tiny_fs / "s.h5").exists()


def test_a_failed_checkpoint_write_leaves_no_piece_and_names_its_file(tmp_path, monkeypatch):
    import errno
    import pickle

    from hpcfit.runtime import checkpoint
    from hpcfit.runtime.checkpoint import SliceStore

    store = SliceStore.for_slice(tmp_path / "out.h5", 0, 1)
    store.start(print, job="sample", fingerprint_value="f", items=[0, 1], resume=False)
    store.save(0, {"rows": 1})

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint.pickle, "dump", full)
    with pytest.raises(OSError) as info:
        store.save(1, {"rows": 2})
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(store.directory / "item-000001.pkl")
    assert sorted(p.name for p in store.directory.iterdir()) == ["item-000000.pkl", "manifest.json"]
    assert store.describe_kept() == f"1 completed item(s) kept in {store.directory} for --resume"
    monkeypatch.setattr(checkpoint.pickle, "dump", pickle.dump)
    # a piece left by a rank killed mid-write goes when the run resumes (and by remove_temporary at a fatal end)
    (store.directory / ".item-000001.pkl.123.tmp").write_bytes(b"partial")
    assert store.start(print, job="sample", fingerprint_value="f", items=[0, 1], resume=True) == {0}
    assert not list(store.directory.glob("*.tmp"))
    (store.directory / ".item-000001.pkl.123.tmp").write_bytes(b"partial")
    store.remove_temporary()
    assert not list(store.directory.glob("*.tmp"))


def test_storage_errors_are_recognised_with_or_without_an_errno():
    import errno

    from hpcfit.runtime.errors import WorkItemError, describe_storage_error, storage_error

    mpi = OSError("Can't write data (MPI_File_write_at failed: MPI error string is 'Other I/O error , error stack:"
                  "\nADIOI_GEN_WRITECONTIG(80): Other I/O error No space left on device')")
    found = storage_error(mpi)
    assert found is not None and found.errno == errno.ENOSPC
    quota = OSError(errno.EDQUOT, "Disk quota exceeded", "/scratch/x.h5")
    assert describe_storage_error(storage_error(WorkItemError("item 3", quota))) == \
        "cannot write '/scratch/x.h5': Disk quota exceeded (EDQUOT)"
    try:
        try:
            raise OSError(errno.EIO, "Input/output error")
        except OSError as exc:
            raise RuntimeError("writing failed") from exc
    except RuntimeError as chained:
        assert storage_error(chained).errno == errno.EIO
    assert storage_error(OSError(errno.EACCES, "Permission denied")) is None
    assert storage_error(ValueError("No space left on device")) is None


def test_disk_full_in_a_serial_run(tmp_path, tiny_fs):
    """Without MPI (a serial run hands other failures of an item to its caller): the same one line, exit 1."""
    config = write(tmp_path / "s.yaml", str(tiny_fs / "s.h5"), n=8000, batch=500)
    manifest = tiny_fs / "s.h5.parts" / "slice-000-of-001" / "manifest.json"
    result = _run_while_filling(["run", str(config)], tmp_path, tiny_fs, leave=150_000, trigger=manifest, n=None,
                                env={"HPCFIT_INJECT_FAULT": "rank=*,item=*,action=delay:0.5"})
    assert result.returncode == 1
    (line,) = _assert_one_line_per_failing_rank(result, "cannot write '")
    assert "FATAL on rank 0 of 1" in line and "completed item(s) kept in" in line
    assert _pieces(tiny_fs) == []
