"""Phase timers for one hpcfit run, installed from outside (nothing in hpcfit is changed).

``install(job_name)`` wraps, by replacing attributes at run time, the engine steps and the communication and I/O
calls the scaling model needs; every rank records into ``RECORD`` and ``dump(directory)`` writes
``rank-RRR.json``. What is recorded, per rank:

* ``phases`` (wall) and ``phases_cpu`` (CPU time of the main thread): seconds in ``prepare`` (``prepare_job``, the
  function the run calls: validation + rank-0 plan + broadcast, waiting included on the other ranks), ``warm_up``
  (inside prepare, ranks other than 0: the job's imports), ``survey`` (a job with one: every rank, inside
  ``prepare``), ``plan`` (rank 0 only), ``setup``, ``run_items`` (the work phase, idle time at its end included),
  ``write``;
* ``items``: (index, size, wall seconds, start as epoch seconds, CPU seconds) of every work item this rank
  computed (``Job.work`` only; the gaps between a worker's items are its scheduler round trips plus its checkpoint
  writes). On a shared machine the CPU seconds are the cleaner measure of an item's compute cost: time-sharing
  with other processes stretches the wall time, not the CPU time;
* ``calls``: for each wrapped call, its count, seconds and bytes — ``alltoallv`` (bytes sent), ``gather``,
  ``allgather``, ``bcast``, ``barrier``/``idle_barrier`` (waiting included), ``h5_write`` (bytes of this rank's
  pieces), ``h5_meta`` (create_dataset, write_small, set_attrs), ``h5_open``/``h5_commit``, ``checkpoint``
  (bytes of the pickles written; in the writer thread with ``run.checkpoint_async``), ``checkpoint_handoff``
  and ``checkpoint_drain`` (the main thread's hand-offs to that writer, and its waits for it at a stage's end),
  job-specific ones (gridfit ``fold`` on rank 0, calibrate ``header_scan`` on every rank, its "bytes" the number
  of files scanned, ``masters``, ``scratch_write``, sample ``exchange_round``), ``h5_plane`` (planes written
  during the work, calibrate).

Timers nest (``write`` contains ``h5_write``); the model reads each where it needs it.
"""

from __future__ import annotations

import functools
import json
import os
import time
from pathlib import Path
from typing import Any, Callable

RECORD: dict[str, Any] = {"phases": {}, "phases_cpu": {}, "items": [], "calls": {}}


def _add_call(name: str, seconds: float, nbytes: int = 0) -> None:
    entry = RECORD["calls"].setdefault(name, {"count": 0, "seconds": 0.0, "bytes": 0})
    entry["count"] += 1
    entry["seconds"] += seconds
    entry["bytes"] += int(nbytes)


def _timed(name: str, fn: Callable[..., Any], *, phase: bool = False,
           nbytes: Callable[..., int] | None = None) -> Callable[..., Any]:
    """``fn`` wrapped: its duration is added to phase ``name`` or to call ``name`` (with the bytes it moves)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        t0, c0 = time.perf_counter(), time.thread_time()
        try:
            return fn(*args, **kwargs)
        finally:
            seconds = time.perf_counter() - t0
            if phase:
                RECORD["phases"][name] = RECORD["phases"].get(name, 0.0) + seconds
                RECORD["phases_cpu"][name] = RECORD["phases_cpu"].get(name, 0.0) + time.thread_time() - c0
            else:
                _add_call(name, seconds, nbytes(*args, **kwargs) if nbytes else 0)

    return wrapper


def _patch(owner: Any, attribute: str, name: str, **kwargs: Any) -> None:
    setattr(owner, attribute, _timed(name, getattr(owner, attribute), **kwargs))


def _piece_bytes(self: Any, pieces: Any) -> int:
    pieces = list(pieces) if not isinstance(pieces, list) else pieces
    return sum(getattr(array, "nbytes", 0) for _, _, array in pieces)


def _work_wrapper(work: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(work)
    def wrapper(self: Any, item: Any, ctx: Any) -> Any:
        start, t0, c0 = time.time(), time.perf_counter(), time.thread_time()
        result = work(self, item, ctx)
        RECORD["items"].append([int(item.index), int(item.size), time.perf_counter() - t0, start,
                                time.thread_time() - c0])
        return result

    return wrapper


def install(job_name: str) -> None:
    """Wrap the engine, communicator, output and job steps of ``job_name`` (call before ``cli.main``)."""
    from hpcfit.io import h5out
    from hpcfit.registry import job_class
    from hpcfit.runtime import checkpoint, checkpoint_writer, comm
    from hpcfit.engine import run as engine

    job = job_class(job_name)
    for step in ("warm_up", "plan", "setup", "write") + (("survey",) if job.has_survey() else ()):
        _patch(job, step, step, phase=True)
    job.work = _work_wrapper(job.work)
    # run_job calls prepare_job (engine.prepare is only the CLI's validate path): wrap what the run really calls.
    _patch(engine, "prepare_job", "prepare", phase=True)
    _patch(engine, "run_items", "run_items", phase=True)

    _patch(comm.MPIComm, "alltoallv", "alltoallv", nbytes=lambda self, send, counts: getattr(send, "nbytes", 0))
    for collective in ("gather", "allgather", "bcast", "barrier", "idle_barrier"):
        _patch(comm.MPIComm, collective, collective)
    out = h5out.OutputFile
    _patch(out, "write", "h5_write", nbytes=_piece_bytes)
    for meta in ("create_dataset", "write_small", "set_attrs"):
        _patch(out, meta, "h5_meta")
    _patch(out, "write_plane", "h5_plane", nbytes=lambda self, name, index, array: getattr(array, "nbytes", 0))
    _patch(out, "__init__", "h5_open")
    _patch(out, "commit", "h5_commit")

    def _pickle_bytes(self: Any, index: int, result: Any, *args: Any, **kwargs: Any) -> int:
        path = self.directory / f"item-{index:06d}.pkl"
        return path.stat().st_size if path.exists() else 0

    _patch(checkpoint.SliceStore, "save", "checkpoint", nbytes=_pickle_bytes)
    _patch(checkpoint_writer.CheckpointWriter, "save", "checkpoint_handoff")
    _patch(checkpoint_writer.CheckpointWriter, "drain", "checkpoint_drain")
    _install_job_specific(job_name)


def _install_job_specific(job_name: str) -> None:
    if job_name == "gridfit":
        from hpcfit.gridfit import job as gridfit

        _patch(gridfit._Collected, "add", "fold")
        _patch(gridfit, "_photometry", "photometry")
        _patch(gridfit, "_share_catalog", "catalogue_share")  # slice read + Allgatherv, or the broadcast
        _patch(gridfit._Collected, "write_table", "results_table")  # an ECSV table's Gatherv included
    elif job_name == "calibrate":
        from hpcfit.calibrate import masters
        from hpcfit.calibrate import planning
        from hpcfit.calibrate import science

        _patch(planning, "scan", "header_scan", nbytes=lambda paths, options: len(paths))  # "bytes": files
        _patch(planning, "find_inputs", "find_inputs")
        _patch(masters, "build_masters", "masters")
        _patch(science, "_write_scratch", "scratch_write",
               nbytes=lambda path, frames: sum(f.nbytes for f in frames))
    elif job_name == "sample":
        from hpcfit.sample import shuffle

        _patch(shuffle, "exchange_round", "exchange_round")
        _patch(shuffle, "scatter_to_buckets", "scatter_to_buckets")


def dump(directory: str | os.PathLike, rank: int, size: int, extra: dict[str, Any] | None = None) -> Path:
    """Write this rank's record as ``directory/rank-RRR.json``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"rank-{rank:03d}.json"
    path.write_text(json.dumps({"rank": rank, "size": size, **RECORD, **(extra or {})}))
    return path
