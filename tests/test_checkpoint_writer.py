"""Checkpoints saved by a background writer thread (``run.checkpoint_async``, ``hpcfit/runtime/checkpoint_writer.py``):
the queue's bound holds, a failed save reaches the main thread naming the item and its cause and ends the job
without a half-written checkpoint, every stage ends with its checkpoints on disk, and results (and the checkpoints
themselves) are identical to synchronous saving, serially and on 2 ranks; a run killed in the middle of a save
resumes to the same file."""

from __future__ import annotations

import errno
import pickle
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cube_case import cube_workdir
from h5compare import assert_ran_with, assert_same_datasets
from hpcfit.cli import main
from hpcfit.runtime.checkpoint import SliceStore
from hpcfit.runtime.checkpoint_writer import CheckpointWriteError, CheckpointWriter, open_checkpoints
from hpcfit.runtime.errors import storage_error
from hpcfit.runtime.faults import ENV_VAR, InjectedFault
from launch import hpcfit
from test_engine_stages import N, StagedToy, _read
from test_resume_and_slices import static_items


class SlowStore:
    """A stand-in for SliceStore: records the saves; ``gate`` (when given) holds every save until it is set;
    ``fail`` maps an item to the exception its save raises."""

    def __init__(self, gate: threading.Event | None = None, fail: dict[int, BaseException] | None = None):
        self.gate, self.fail = gate, fail or {}
        self.saved: list[int] = []
        self.started = threading.Semaphore(0)

    def save(self, index: int, result: Any, before_rename: Any = None) -> None:
        self.started.release()
        if self.gate is not None:
            self.gate.wait()
        if index in self.fail:
            raise self.fail[index]
        self.saved.append(index)


def test_the_queue_bound_holds():
    """With the writer stuck on item 0, two more results wait in the queue; a fourth hand-off waits for room."""
    gate = threading.Event()
    store = SlowStore(gate)
    writer = CheckpointWriter(store, 0, depth=2)
    writer.save(0, "a")
    store.started.acquire()  # the writer holds item 0 (and waits on the gate)
    writer.save(1, "b")
    writer.save(2, "c")
    assert writer.pending == 3
    fourth = threading.Thread(target=writer.save, args=(3, "d"))
    fourth.start()
    fourth.join(0.5)
    assert fourth.is_alive(), "a hand-off to a full queue returned: the queue is not bounded"
    assert store.saved == []
    gate.set()
    fourth.join()
    writer.drain()
    assert store.saved == [0, 1, 2, 3] and writer.pending == 0
    writer.close()


def test_drain_waits_for_every_save():
    gate = threading.Event()
    store = SlowStore(gate)
    writer = CheckpointWriter(store, 0)
    for index in range(2):
        writer.save(index, index)
    threading.Timer(0.2, gate.set).start()
    writer.drain()  # returns only once the gate has let both saves through
    assert store.saved == [0, 1]
    writer.close()


def test_a_failed_save_is_raised_at_the_next_hand_off_and_at_the_drain():
    full = OSError(errno.ENOSPC, "No space left on device", "/scratch/out.h5.parts/item-000001.pkl")
    store = SlowStore(fail={1: full})
    writer = CheckpointWriter(store, 0, label=lambda i: f"work item {i} (fits {10 * i}-{10 * i + 9})")
    writer.save(0, "a")
    writer.save(1, "b")
    with pytest.raises(CheckpointWriteError) as caught:
        writer.drain()
    error = caught.value
    assert "work item 1 (fits 10-19)" in str(error) and "No space left on device" in str(error)
    assert error.__cause__ is full
    assert storage_error(error) is full  # a full disk stays the one-line storage message of errors.fatal
    with pytest.raises(CheckpointWriteError, match="work item 1"):
        writer.save(2, "c")  # the next hand-off raises it too (and hands nothing more to the writer)
    writer.close()  # finishing without raising again
    assert store.saved == [0]


def test_an_injected_fault_in_the_writer_leaves_no_checkpoint_of_the_item(tmp_path, monkeypatch):
    """The ``checkpoint`` fault point fires after the item's temporary file is written in full, before its rename:
    the item has no file (no temporary piece either), the items before it are whole."""
    monkeypatch.setenv(ENV_VAR, "rank=0,item=1,action=raise,at=checkpoint")
    store = SliceStore(tmp_path / "slice", 0, 1)
    store.directory.mkdir()
    writer = open_checkpoints(store, 0, asynchronous=True)
    for index in range(3):
        writer.save(index, np.full(1000, index))
    with pytest.raises(CheckpointWriteError, match="item 1") as caught:
        writer.drain()
    assert isinstance(caught.value.cause, InjectedFault)
    writer.close()
    assert sorted(p.name for p in store.directory.iterdir()) == ["item-000000.pkl"]
    np.testing.assert_array_equal(store.load(0), np.zeros(1000))


def test_synchronous_checkpoints_share_the_fault_point(tmp_path, monkeypatch):
    monkeypatch.setenv(ENV_VAR, "rank=0,item=0,action=raise,at=checkpoint")
    store = SliceStore(tmp_path / "slice", 0, 1)
    store.directory.mkdir()
    saver = open_checkpoints(store, 0, asynchronous=False)
    with pytest.raises(InjectedFault):
        saver.save(0, "a")
    assert list(store.directory.iterdir()) == []


# ------------------------------------------------------------------------------------------------ in the engine
FILES_AT_BETWEEN: list[list[int]] = []


class CheckedToy(StagedToy):
    """The staged toy, whose ``between`` also lists the checkpoint files on disk at that moment."""

    def between(self, ctx, stage: int, results: dict[int, Any]) -> None:
        parts = Path(ctx.cfg.output).with_name(Path(ctx.cfg.output).name + ".parts") / "slice-000-of-001"
        FILES_AT_BETWEEN.append(sorted(int(p.stem.split("-")[1]) for p in parts.glob("item-*.pkl")))
        super().between(ctx, stage, results)


class Catalog:
    def names(self) -> list[str]:
        return ["toy"]

    def load(self, name: str) -> type:
        return CheckedToy


def _toy(tmp_path: Path, *overrides: str, **mode: Any) -> int:
    from hpcfit.engine.run import RunMode, execute
    from hpcfit.runtime.comm import SerialComm

    config = tmp_path / "toy.yaml"
    config.write_text("job: toy\noutput: toy.h5\nrun:\n  progress: none\ntoy:\n  n: 6\n")
    return execute(str(config), list(overrides), SerialComm(), argv=["test"], jobs=Catalog(), mode=RunMode(**mode))


def test_a_stage_ends_with_its_checkpoints_on_disk(tmp_path, monkeypatch):
    """Saves slowed down in the writer: ``between`` (after the first stage) still finds every item of that
    stage saved, and the file is right."""
    FILES_AT_BETWEEN.clear()
    monkeypatch.setenv(ENV_VAR, "rank=*,item=*,action=delay:0.1,at=checkpoint")
    assert _toy(tmp_path, keep_parts=True) == 0
    assert FILES_AT_BETWEEN == [list(range(N))]
    square, shift = _read(tmp_path / "toy.h5")
    np.testing.assert_array_equal(square, np.arange(N) ** 2)
    parts = tmp_path / "toy.h5.parts" / "slice-000-of-001"
    assert sorted(p.name for p in parts.glob("item-*")) == [f"item-{i:06d}.pkl" for i in range(2 * N)]


def test_a_failed_save_ends_a_serial_run_and_resume_completes_it(tmp_path, monkeypatch, capsys):
    """The last item's save fails: nothing is handed off after it, so the stage's drain raises it (errors.fatal:
    JobFailed in a one-process run)."""
    last = 2 * N - 1
    monkeypatch.setenv(ENV_VAR, f"rank=0,item={last},action=raise,at=checkpoint")
    with pytest.raises(SystemExit):
        _toy(tmp_path)
    err = capsys.readouterr().err
    assert "FATAL on" in err and "while processing saving the checkpoints of stage shift" in err, err
    assert f"CheckpointWriteError: the checkpoint of work item {last} (shift {N - 1}) was not saved" in err, err
    assert "InjectedFault" in err
    parts = tmp_path / "toy.h5.parts" / "slice-000-of-001"
    assert not (tmp_path / "toy.h5").exists() and not list(parts.glob(".*.tmp"))
    done = sorted(int(p.stem.split("-")[1]) for p in parts.glob("item-*.pkl"))
    assert done == list(range(last))  # every item before it saved, the failed one absent
    for index in done:  # whatever is presented as a checkpoint is whole
        with open(parts / f"item-{index:06d}.pkl", "rb") as handle:
            pickle.load(handle)
    monkeypatch.delenv(ENV_VAR)
    assert _toy(tmp_path, resume=True) == 0
    np.testing.assert_array_equal(_read(tmp_path / "toy.h5")[1], sum(i * i for i in range(N)) + np.arange(N))


# ----------------------------------------------------------------------------------------------- under mpiexec
@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    path = cube_workdir(tmp_path_factory, "ckpt_writer", (30, 12, 15))
    assert main(["run", str(path / "cfg.yaml"), "--set", f"output={path / 'reference.h5'}",
                 "--set", "run.checkpoint_async=false"]) == 0
    return path


def _checkpoints(parts: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(parts.glob("item-*.pkl"))}


@pytest.mark.mpi
def test_async_and_sync_checkpoints_give_identical_results_on_two_ranks(workdir):
    """The same file, serial or on 2 ranks, with the checkpoints saved either way; the checkpoints themselves are
    the same bytes."""
    kept = {}
    for flag in ("true", "false"):
        output = f"mpi_{flag}.h5"
        result = hpcfit(["run", "cfg.yaml", "--set", f"output={output}", "--set", f"run.checkpoint_async={flag}",
                         "--keep-parts"], n=2, cwd=workdir)
        assert result.returncode == 0, result.output
        assert_same_datasets(workdir / "reference.h5", workdir / output)
        assert_ran_with(workdir / output, n_ranks=2, mode="mpio")
        kept[flag] = _checkpoints(workdir / f"{output}.parts" / "slice-000-of-001")
    assert len(kept["true"]) == sum(map(len, static_items(workdir, 2))) > 1
    assert kept["true"] == kept["false"]


@pytest.mark.mpi
def test_a_failed_save_on_one_rank_ends_the_job_with_its_cause(workdir):
    item = static_items(workdir, 2)[1][0]  # rank 1's first item under the static schedule: its first save
    result = hpcfit(["run", "cfg.yaml", "--set", "output=failed.h5", "--set", "run.schedule=static"], n=2,
                    cwd=workdir, env={ENV_VAR: f"rank=1,item={item},action=raise,at=checkpoint"})
    assert result.returncode != 0, result.output
    assert "FATAL on rank 1 of 2" in result.stderr, result.output
    assert "CheckpointWriteError" in result.stderr and f"the checkpoint of work item {item} " in result.stderr
    assert "InjectedFault: injected fault on rank 1" in result.stderr, result.output
    assert not (workdir / "failed.h5").exists() and not (workdir / "failed.h5.incomplete").exists()
    parts = workdir / "failed.h5.parts" / "slice-000-of-001"
    assert not (parts / f"item-{item:06d}.pkl").exists() and not list(parts.glob(".*.tmp"))
    for path in parts.glob("item-*.pkl"):  # whatever is presented as a checkpoint is whole
        with open(path, "rb") as handle:
            pickle.load(handle)


@pytest.mark.mpi
def test_killed_in_the_middle_of_a_save_then_resume_is_identical(workdir):
    """SIGKILL of rank 1 in its writer thread, its item's temporary file written but not renamed: --resume
    (checkpoints saved in the background again) removes the piece and completes the same file."""
    assignment = static_items(workdir, 2)
    item = assignment[1][2]
    result = hpcfit(["run", "cfg.yaml", "--set", "output=killed.h5", "--set", "run.schedule=static"], n=2,
                    cwd=workdir, env={ENV_VAR: f"rank=1,item={item},action=kill,at=checkpoint"})
    assert result.returncode != 0, result.output
    assert not (workdir / "killed.h5").exists()
    parts = workdir / "killed.h5.parts" / "slice-000-of-001"
    done = sorted(int(p.stem.split("-")[1]) for p in parts.glob("item-*.pkl"))
    n_items = sum(map(len, assignment))
    assert item not in done and len(done) < n_items
    assert list(parts.glob(f".item-{item:06d}.pkl.*.tmp")), "the kill did not land in the middle of the save"
    resumed = hpcfit(["run", "cfg.yaml", "--set", "output=killed.h5", "--resume"], n=2, cwd=workdir)
    assert resumed.returncode == 0, resumed.output
    assert f"resuming: {len(done)} of {n_items}" in resumed.stdout, resumed.stdout
    assert not list(parts.glob(".*.tmp")) or not parts.exists()
    assert_same_datasets(workdir / "reference.h5", workdir / "killed.h5")
    assert_ran_with(workdir / "killed.h5", n_ranks=2, mode="mpio")
