"""Micro-benchmarks of the costs the scaling model is built from, through hpcfit's own code paths.

Run under ``mpiexec -n 2 python bench/scaling/components.py OUT.json [--repeat R]`` (the communication parts need
two ranks; the rest runs on rank 0). Every figure is the median of ``R`` repetitions (the machine is shared):

* ``alltoallv``: ``MPIComm.alltoallv`` (counts exchange + one Alltoallv, as the sample job's shuffle rounds) for
  several bytes per rank; fitted as t = alpha + bytes / bandwidth;
* ``gather``: ``MPIComm.gather`` of pickled numpy partials to rank 0 (gridfit's per-block gather), as the bytes
  per second rank 0 takes in (all parts, its own included);
* ``scheduler``: the dynamic scheduler (``schedule.run_items``; the figures stored in ``components.json`` and
  ``scheduler4.json`` are the earlier helper-thread scheduler's: today's shared counter is measured by
  ``claim_latency.py``): the other ranks take no-op items as fast as rank
  0's helper thread serves them while rank 0's main thread works through items of 20 ms that (a) sleep (the GIL is
  free), (b) run Python bytecode (the GIL is held), (c) run small numpy operations, (d) fit chunks of 256
  spectra of a synthetic cube with cubefit's own ``work`` (the batched solver: numpy with Python glue);
  the time per request is 1 / (items served per second): the round trip with 2 ranks, the helper thread's
  capacity with more (``--scheduler-only`` under ``mpiexec -n 4``);
* ``hdf5``: ``OutputFile.write`` with the mpio driver on two ranks: contiguous blocks (collective and
  independent transfers), many small independent hyperslab writes (cubefit's per-item pieces; one write per piece,
  and merged into one union write per rank as ``OutputFile`` does by default), and metadata
  calls (``create_dataset`` with attributes);
* ``checkpoint``: ``SliceStore.save`` (pickle, fsync, rename) for item results of several sizes (rank 0 alone);
  for ``run.checkpoint_async``, what stays on the rank's core: the main thread's CPU time per hand-off to the
  ``CheckpointWriter`` (``handoff_seconds``) and the CPU time of a save per byte (``cpu_seconds_per_byte``: the
  pickling and the copy into the kernel, which the writer thread takes from the rank's core; the storage's own
  time, fsync's wait, overlaps the work).

``python bench/scaling/components.py --startup OUT.json`` (no mpiexec) counts, with strace, the file-metadata system
calls (stat, open, ...) one rank makes to start Python and import a job: the load a rank start puts on a shared
file system's metadata server. (The first study's figure; ``startup.py`` now measures ``hpcfit run`` of each
job, which the model uses.)
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))


def median_time(fn: Callable[[], Any], repeat: int, comm: Any = None) -> float:
    """Median over ``repeat`` runs of ``fn``'s duration (the slowest rank's, when ``comm`` is given)."""
    times = []
    for _ in range(repeat):
        if comm is not None:
            comm.barrier()
        t0 = time.perf_counter()
        fn()
        seconds = time.perf_counter() - t0
        times.append(comm.allreduce(seconds, "max") if comm is not None else seconds)
    return statistics.median(times)


def fit_line(x: list[float], y: list[float]) -> tuple[float, float]:
    """Least-squares (intercept, slope) of y = a + b x."""
    slope, intercept = np.polyfit(np.asarray(x, float), np.asarray(y, float), 1)
    return float(intercept), float(slope)


# ------------------------------------------------------------------------------------------------ communication
def bench_alltoallv(comm: Any, repeat: int) -> dict[str, Any]:
    rows = []
    for nbytes in (8 << 10, 256 << 10, 2 << 20, 16 << 20, 64 << 20):
        send = np.random.default_rng(comm.rank).random(nbytes // 8)
        counts = [len(send) // comm.size] * comm.size
        counts[-1] += len(send) - sum(counts)
        seconds = median_time(lambda: comm.alltoallv(send, counts), repeat, comm)
        rows.append({"bytes_per_rank": nbytes, "seconds": seconds})
    alpha, per_byte = fit_line([r["bytes_per_rank"] for r in rows], [r["seconds"] for r in rows])
    return {"rows": rows, "alpha_seconds": max(alpha, 0.0), "bandwidth_bytes_per_s": 1.0 / per_byte,
            "ranks": comm.size, "note": "bytes_per_rank = bytes each rank sends (half stays local on 2 ranks)"}


def bench_gather(comm: Any, repeat: int) -> dict[str, Any]:
    rows = []
    for nbytes in (64 << 10, 1 << 20, 8 << 20, 32 << 20):
        part = [(0, np.ones(nbytes // 16), np.ones(nbytes // 16))]
        seconds = median_time(lambda: comm.gather(part, root=0), repeat, comm)
        rows.append({"bytes_per_rank": nbytes, "seconds": seconds})
    # rank 0 receives and unpickles every rank's part (its own included): its throughput is what limits a gather
    alpha, per_byte = fit_line([r["bytes_per_rank"] * comm.size for r in rows], [r["seconds"] for r in rows])
    return {"rows": rows, "alpha_seconds": max(alpha, 0.0), "root_bytes_per_s": 1.0 / per_byte}


# ------------------------------------------------------------------------------------------------ the scheduler
def _busy_python(seconds: float) -> None:
    end = time.perf_counter() + seconds
    x = 0
    while time.perf_counter() < end:
        for i in range(200):
            x += i * i


def _busy_numpy(seconds: float) -> None:
    end = time.perf_counter() + seconds
    a = np.random.default_rng(0).random((256, 48))
    while time.perf_counter() < end:
        b = np.exp(-0.5 * (a - 0.5) ** 2)
        a = a + 1e-9 * b.sum(axis=1, keepdims=True)


def _cubefit_worker(directory: Path) -> Callable[[float], None]:
    """A function that fits chunks of a synthetic cube (cubefit's own ``work``, 256 fits per call) for a while."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import inputs
    from hpcfit.engine.job import RunContext
    from hpcfit.runtime.comm import SerialComm
    from hpcfit.engine.run import load_config
    from hpcfit.registry import JOBS

    config = inputs.write_config("cubefit", 10_000, directory / "cubefit")
    job, cfg, _, report = load_config(str(config), ["run.checkpoint=false"], jobs=JOBS)
    plan = job.plan(cfg, report)
    ctx = RunContext(comm=SerialComm(), cfg=cfg, plan=plan, config_path=str(config))
    job.setup(ctx)
    counter = iter(range(10**9))

    def busy(seconds: float) -> None:
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            job.work(plan.items[next(counter) % len(plan.items)], ctx)

    return busy


def bench_scheduler(comm: Any, item_seconds: float, duration: float, repeat: int,
                    directory: Path | None = None) -> dict[str, Any]:
    """Seconds per request served to the other ranks while rank 0's main thread is busy for ``duration`` seconds
    (with one other rank: the round trip; with several: the helper thread's capacity, when it saturates)."""
    from hpcfit.engine.job import WorkItem
    from hpcfit.runtime import signals
    from hpcfit.runtime.schedule import run_items

    items = [WorkItem(index=i, label=str(i), size=1, cost=1.0) for i in range(200_000)]
    modes: list[tuple[str, Callable[[float], None]]] = [("sleep", time.sleep), ("python", _busy_python),
                                                        ("numpy", _busy_numpy)]
    if directory is not None and comm.rank == 0:
        modes.append(("cubefit", _cubefit_worker(directory)))
    if directory is not None and comm.rank != 0:
        modes.append(("cubefit", time.sleep))  # only rank 0's busy function matters
    out: dict[str, Any] = {}
    for mode, busy in modes:
        per_request = []
        for _ in range(repeat):
            comm.barrier()
            end = time.perf_counter() + duration

            def work(item: WorkItem) -> int:
                if comm.rank == 0:
                    if time.perf_counter() < end:
                        busy(item_seconds)
                    else:
                        signals.stop_requested.set()  # no item is handed out after this: the run ends
                return comm.rank

            t0 = time.perf_counter()
            done = run_items(comm, items, work, schedule="dynamic", progress=None, label=lambda i: i.label)
            elapsed = comm.allreduce(time.perf_counter() - t0, "max")
            signals.stop_requested.clear()
            served = comm.allreduce(len(done) if comm.rank > 0 else 0, "sum")
            per_request.append(elapsed / max(served, 1))
        out[mode] = {"seconds_per_request": statistics.median(per_request), "samples": per_request}
    return out


# --------------------------------------------------------------------------------------------------------- HDF5
def bench_hdf5(comm: Any, repeat: int, directory: Path) -> dict[str, Any]:
    import h5py

    from hpcfit.io.h5out import OutputFile
    from hpcfit.io.piece_union import merge_pieces

    result: dict[str, Any] = {}
    block = 32 << 20
    for transfer in ("collective", "independent"):
        rows = block // (8 * 64)

        def write_blocks() -> None:
            out = OutputFile(directory / f"blocks_{transfer}.h5", comm, transfer=transfer)
            out.create_dataset("x", (rows * comm.size, 64), "f8")
            data = np.full((rows, 64), float(comm.rank))
            out.write([("x", (slice(comm.rank * rows, (comm.rank + 1) * rows),), data)])
            out.commit()

        seconds = median_time(write_blocks, repeat, comm)
        result[f"contiguous_{transfer}"] = {"bytes_total": block * comm.size, "seconds": seconds,
                                            "bandwidth_bytes_per_s": block * comm.size / seconds}

    n_pieces, piece = 400, 2048  # cubefit: one (box, dataset) piece per item per output map, here 16 KiB each

    def small_writes(merge: bool) -> None:
        out = OutputFile(directory / "small.h5", comm, transfer="auto", merge=merge)
        out.create_dataset("m", (n_pieces * comm.size * piece,), "f8")
        pieces = [("m", (slice((k * comm.size + comm.rank) * piece, (k * comm.size + comm.rank + 1) * piece),),
                   np.ones(piece)) for k in range(n_pieces)]
        out.write(pieces)
        out.commit()

    seconds = median_time(lambda: small_writes(False), repeat, comm)
    result["small_independent"] = {"pieces_per_rank": n_pieces, "piece_bytes": piece * 8, "seconds": seconds,
                                   "seconds_per_piece": seconds / n_pieces}
    # the same pieces merged into one union write per rank (OutputFile's default): the per-piece part is the
    # selection's CPU cost (plus the bytes), the call itself is one small write
    seconds = median_time(lambda: small_writes(True), repeat, comm)
    result["small_merged"] = {"pieces_per_rank": n_pieces, "piece_bytes": piece * 8, "seconds": seconds,
                              "seconds_per_piece": seconds / n_pieces}

    def union_selection() -> None:  # the CPU part of a merged write: the buffer in file order and the selection
        shape = (n_pieces * comm.size * piece,)
        pieces = [((slice((k * comm.size + comm.rank) * piece, (k * comm.size + comm.rank + 1) * piece),),
                   np.ones(piece)) for k in range(n_pieces)]
        union = merge_pieces(shape, np.dtype("f8"), pieces)[0]
        union.select(h5py.h5s.create_simple(shape))

    seconds = median_time(union_selection, repeat)
    result["union_selection"] = {"pieces": n_pieces, "seconds": seconds, "seconds_per_piece": seconds / n_pieces}

    def small_collective() -> None:  # the same pieces when the dataset is large enough for "auto" to go collective
        out = OutputFile(directory / "small_coll.h5", comm, transfer="collective", merge=False)
        out.create_dataset("m", (n_pieces * comm.size * piece,), "f8")
        pieces = [("m", (slice((k * comm.size + comm.rank) * piece, (k * comm.size + comm.rank + 1) * piece),),
                   np.ones(piece)) for k in range(n_pieces)]
        out.write(pieces)
        out.commit()

    seconds = median_time(small_collective, repeat, comm)
    result["small_collective"] = {"pieces_per_rank": n_pieces, "piece_bytes": piece * 8, "seconds": seconds,
                                  "seconds_per_round": seconds / n_pieces}

    frames = 32  # a chunked (1, ny, nx) dataset, as /science/images: parallel HDF5 writes its fill at creation

    def chunked_create() -> None:
        out = OutputFile(directory / "chunked.h5", comm)
        out.create_dataset("images", (frames, 1024, 1024), "f4", chunks=(1, 1024, 1024))
        out.commit()

    seconds = median_time(chunked_create, repeat, comm)
    result["chunked_create"] = {"bytes": frames * 4 << 20, "seconds": seconds,
                                "bandwidth_bytes_per_s": (frames * 4 << 20) / seconds}

    n_datasets = 60

    def metadata() -> None:
        out = OutputFile(directory / "meta.h5", comm)
        for k in range(n_datasets):
            out.create_dataset(f"g/d{k}", (1000,), "f8", attrs={"unit": "K", "meaning": "a map"})
        out.set_attrs("/", {f"a{k}": k for k in range(20)})
        out.commit()

    seconds = median_time(metadata, repeat, comm)
    result["metadata"] = {"datasets": n_datasets, "seconds": seconds, "seconds_per_dataset": seconds / n_datasets}
    return result


def bench_checkpoint(repeat: int, directory: Path) -> dict[str, Any]:
    from hpcfit.runtime.checkpoint import SliceStore
    from hpcfit.runtime.checkpoint_writer import CheckpointWriter

    store = SliceStore(directory / "slice", 0, 1)
    store.directory.mkdir(parents=True, exist_ok=True)
    counter = iter(range(10**6))
    rows = []
    for nbytes in (1 << 10, 256 << 10, 4 << 20, 32 << 20):
        payload = np.ones(nbytes // 8)
        seconds = median_time(lambda: store.save(next(counter), payload), repeat)
        cpu = statistics.median(thread_seconds(lambda: store.save(next(counter), payload)) for _ in range(repeat))
        rows.append({"bytes": nbytes, "seconds": seconds, "cpu_seconds": cpu})
    # the smallest save is all overhead (open, fsync, rename); the larger ones give the bandwidth
    _, per_byte = fit_line([r["bytes"] for r in rows[1:]], [r["seconds"] for r in rows[1:]])
    _, cpu_per_byte = fit_line([r["bytes"] for r in rows[1:]], [r["cpu_seconds"] for r in rows[1:]])
    # a hand-off to the writer thread with room in its queue (drained in between: a full queue waits for the
    # storage, which the model charges only when the writer cannot keep up)
    writer = CheckpointWriter(store, 0)
    handoffs = []
    small = np.ones(128)
    for _ in range(max(repeat, 20)):
        handoffs.append(thread_seconds(lambda: writer.save(next(counter), small)))
        writer.drain()
    writer.close()
    return {"rows": rows, "seconds_per_save": rows[0]["seconds"], "bandwidth_bytes_per_s": 1.0 / per_byte,
            "handoff_seconds": statistics.median(handoffs), "cpu_seconds_per_byte": max(cpu_per_byte, 0.0)}


def thread_seconds(fn: Callable[[], Any]) -> float:
    """The calling thread's CPU time (user + system) spent in ``fn``."""
    c0 = time.thread_time()
    fn()
    return time.thread_time() - c0


# ------------------------------------------------------------------------------------------------------ start-up
STARTUP_CODE = ("import sys; sys.path.insert(0, {repo!r}); import hpcfit.cli, hpcfit.engine.run, mpi4py.MPI, h5py; "
                "from hpcfit.registry import job_class; [job_class(j)().warm_up() for j in "
                "('sample', 'gridfit', 'cubefit', 'calibrate')]")
_METADATA_CALLS = ("stat", "lstat", "fstat", "newfstatat", "statx", "openat", "open", "access", "readlink",
                   "getdents64")


def bench_startup(python: str) -> dict[str, Any]:
    """File-metadata system calls and seconds to start Python and import every job's modules (one process)."""
    code = STARTUP_CODE.format(repo=str(REPO))
    t0 = time.perf_counter()
    subprocess.run([python, "-c", code], check=True)
    seconds = time.perf_counter() - t0
    result: dict[str, Any] = {"seconds": seconds}
    if shutil.which("strace") is None:
        result["note"] = "strace not available: no syscall count"
        return result
    with tempfile.NamedTemporaryFile("r", suffix=".strace") as log:
        subprocess.run(["strace", "-f", "-c", "-o", log.name, "-e", "trace=" + ",".join(_METADATA_CALLS),
                        python, "-c", code], check=True, stderr=subprocess.DEVNULL)
        text = Path(log.name).read_text()
    counts = {}
    for line in text.splitlines():
        m = re.match(r"\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(\d+)?\s*(\w+)$", line)
        if m and m.group(3) in _METADATA_CALLS:
            counts[m.group(3)] = int(m.group(1))
    result["metadata_syscalls"] = counts
    result["metadata_syscalls_total"] = sum(counts.values())
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("output", type=Path)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--startup", action="store_true", help="only the start-up syscall count (no mpiexec)")
    parser.add_argument("--scheduler-only", action="store_true", help="only the scheduler benchmark (e.g. on 4 ranks)")
    args = parser.parse_args(argv)
    if args.startup:
        args.output.write_text(json.dumps({"startup": bench_startup(sys.executable)}, indent=1))
        return 0

    from hpcfit.runtime.comm import world_comm

    comm = world_comm()
    directory = Path(tempfile.mkdtemp(prefix="hpcfit_components_")) if comm.is_root else None
    directory = Path(comm.bcast(str(directory)))
    try:
        if args.scheduler_only:
            result = {"ranks": comm.size, "scheduler": bench_scheduler(comm, 0.02, 1.5, args.repeat, directory)}
            if comm.is_root:
                args.output.write_text(json.dumps(result, indent=1))
            return 0
        result = {"ranks": comm.size,
                  "alltoallv": bench_alltoallv(comm, args.repeat),
                  "gather": bench_gather(comm, args.repeat),
                  "scheduler": bench_scheduler(comm, 0.02, 1.5, max(3, args.repeat // 2), directory),
                  "hdf5": bench_hdf5(comm, args.repeat, directory)}
        if comm.is_root:
            result["checkpoint"] = bench_checkpoint(args.repeat, directory / "ckpt")
            args.output.write_text(json.dumps(result, indent=1))
    finally:
        comm.barrier()
        if comm.is_root:
            shutil.rmtree(directory, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
