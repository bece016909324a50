"""Checkpoints saved in the background (``run.checkpoint_async: true``) against saved by the work loop (``false``):
the same job, the same ranks, like for like.

    python bench/checkpoint_overlap.py [--rows 2000000] [--batch 100000] [--ranks 2 1] [--repeat 5] [--json OUT]

Runs the scaling study's sample config (``bench/scaling/inputs.py``: 9 parameters, DES bands, float32, checkpoints
on) under ``mpiexec -n RANKS`` alternately with the checkpoints synchronous and asynchronous (alternating, so that
both sides see the same drift of a shared machine's load), ``--repeat`` times each, and reports the best (and the
median) of each side: the work phase (``work_seconds``, from the first item to the last checkpoint on disk, the
part the writer thread changes) and the whole run (``wall_seconds``), both read from the outputs' provenance, and
their ratio async / sync, and the longest time a rank's work loop waited for its checkpoints (the phase timers
of ``bench/scaling/instrument.py``: ``SliceStore.save`` when synchronous, ``CheckpointWriter.save`` and ``drain``
when asynchronous). Every async output is compared with the first sync one dataset by dataset: they must be
identical. Each run's checkpoints (one file per item: ``batch`` rows, ~104 bytes each) are written and then
removed with the output, as in production (the first sync run keeps them a moment, to report their size).

``--gil`` measures instead whether the writer thread holds the GIL: the main thread counts in a pure-Python loop
for 0.3 s, alone and while the writer saves three 10.8 MB results; the counts per CPU second of the main thread
(time-sharing with other processes changes its CPU share, not its rate per CPU second) are equal when the saves
run without the GIL (pickle hands the arrays' buffers to ``write``, which, like ``fsync``, releases it).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import h5py
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench" / "scaling"))

import inputs  # noqa: E402
from run_jobs import mpiexec  # noqa: E402

MODES = {"sync": "false", "async": "true"}


def run_once(config: Path, output: Path, ranks: int, asynchronous: str, batch: int,
             keep_parts: bool = False) -> dict[str, float]:
    """One ``hpcfit run`` (through the scaling study's phase timers); its provenance's work and wall seconds, and
    the longest time a rank's work loop waited for its checkpoints (``blocked_seconds``: the saves themselves
    when synchronous, the hand-offs to the writer and the waits for it at the stage's end when asynchronous)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    timings = output.with_name(output.stem + "_timings")
    shutil.rmtree(timings, ignore_errors=True)
    command = [mpiexec(), "-n", str(ranks), sys.executable, str(REPO / "bench" / "scaling" / "timed_run.py"),
               str(timings), "sample", str(config),
               "--set", f"output={output}", "--set", f"run.checkpoint_async={asynchronous}",
               "--set", f"sample.sampling.batch_size={batch}"] + (["--keep-parts"] if keep_parts else [])
    proc = subprocess.run(command, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"run failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    calls = [json.loads(path.read_text())["calls"] for path in sorted(timings.glob("rank-*.json"))]
    waited = ("checkpoint",) if asynchronous == "false" else ("checkpoint_handoff", "checkpoint_drain")
    blocked = max(sum(c.get(name, {}).get("seconds", 0.0) for name in waited) for c in calls)
    with h5py.File(output, "r") as h5:
        return {"work_seconds": float(h5.attrs["work_seconds"]), "wall_seconds": float(h5.attrs["wall_seconds"]),
                "blocked_seconds": blocked}


def same_datasets(a: Path, b: Path) -> bool:
    """Every dataset of ``a`` is in ``b`` with the same values (NaN equal to NaN)."""
    names: list[str] = []
    with h5py.File(a, "r") as ha, h5py.File(b, "r") as hb:
        ha.visititems(lambda name, obj: names.append(name) if isinstance(obj, h5py.Dataset) else None)
        return all(name in hb and np.array_equal(ha[name][()], hb[name][()],
                                                 equal_nan=ha[name].dtype.kind == "f") for name in names)


def measure(rows: int, batch: int, ranks: int, repeat: int, directory: Path) -> dict[str, Any]:
    config = inputs.write_config("sample", rows, directory)
    times: dict[str, list[dict[str, float]]] = {mode: [] for mode in MODES}
    reference = directory / "reference_sync.h5"
    identical = True
    sizes: list[int] = []
    for trial in range(repeat):
        for mode in (("sync", "async") if trial % 2 == 0 else ("async", "sync")):
            output = directory / f"{mode}.h5"
            first = mode == "sync" and not reference.exists()
            times[mode].append(run_once(config, output, ranks, MODES[mode], batch, keep_parts=first))
            if first:  # the reference output, and the size of a checkpoint
                parts = output.with_name(output.name + ".parts")
                sizes = [p.stat().st_size for p in parts.rglob("item-*.pkl")]
                shutil.rmtree(parts)
                output.rename(reference)
            elif mode == "async":
                identical &= same_datasets(reference, output) if reference.exists() else True
            t = times[mode][-1]
            print(f"  {mode:5s} trial {trial + 1}: work {t['work_seconds']:.3f} s, wall {t['wall_seconds']:.3f} s, "
                  f"waiting for checkpoints {t['blocked_seconds']:.3f} s", flush=True)
    summary: dict[str, Any] = {"rows": rows, "batch": batch, "ranks": ranks, "repeat": repeat,
                               "checkpoint_bytes_per_item": statistics.median(sizes), "items": len(sizes),
                               "identical_outputs": bool(identical), "load_average": os.getloadavg()[0]}
    for key in ("work_seconds", "wall_seconds", "blocked_seconds"):
        for mode in MODES:
            values = [t[key] for t in times[mode]]
            summary[f"{mode}_{key}_best"] = min(values)
            summary[f"{mode}_{key}_median"] = statistics.median(values)
        summary[f"ratio_{key}_best"] = summary[f"async_{key}_best"] / summary[f"sync_{key}_best"]
    return summary


def gil_probe(trials: int = 5, seconds: float = 0.3) -> dict[str, Any]:
    """Pure-Python counting on the main thread per CPU second, alone and during background saves."""
    sys.path.insert(0, str(REPO))
    from hpcfit.runtime.checkpoint import SliceStore
    from hpcfit.runtime.checkpoint_writer import CheckpointWriter

    def spin() -> float:
        count, t0, c0 = 0, time.perf_counter(), time.thread_time()
        while time.perf_counter() - t0 < seconds:
            count += 1
        return count / max(time.thread_time() - c0, 1e-9)

    payload = np.ones(10_800_000 // 8)
    alone, beside, left = [], [], []
    with tempfile.TemporaryDirectory(prefix="hpcfit_gil_probe_") as tmp:
        store = SliceStore(Path(tmp) / "slice", 0, 1)
        store.directory.mkdir()
        writer = CheckpointWriter(store, 0)
        for trial in range(trials):
            alone.append(spin())
            for k in range(3):
                writer.save(3 * trial + k, payload)
            beside.append(spin())
            t0 = time.perf_counter()
            writer.drain()
            left.append(time.perf_counter() - t0)  # what the saves still needed after the main thread's 0.3 s
        writer.close()
    return {"loops_per_cpu_second_alone": statistics.median(alone),
            "loops_per_cpu_second_during_saves": statistics.median(beside),
            "ratio": statistics.median(beside) / statistics.median(alone),
            "drain_seconds_after_spin": statistics.median(left), "load_average": os.getloadavg()[0]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--batch", type=int, default=100_000,
                        help="rows per work item, one checkpoint each (100,000: production's, 10.8 MB)")
    parser.add_argument("--ranks", type=int, nargs="+", default=[2, 1])
    parser.add_argument("--repeat", type=int, default=5, help="runs of each side (best-of-N)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--gil", action="store_true", help="only the GIL probe (one process, no mpiexec)")
    args = parser.parse_args(argv)
    if args.gil:
        print(json.dumps(gil_probe(), indent=1))
        return 0
    results = []
    with tempfile.TemporaryDirectory(prefix="hpcfit_ckpt_overlap_") as tmp:
        for ranks in args.ranks:
            print(f"sample, {args.rows:,} rows in items of {args.batch:,}, {ranks} rank(s), load "
                  f"{os.getloadavg()[0]:.2f}", flush=True)
            results.append(measure(args.rows, args.batch, ranks, args.repeat, Path(tmp) / f"p{ranks}"))
    print("\n| ranks | items x bytes | work sync (best/median) | work async (best/median) | ratio work | "
          "wall sync | wall async | ratio wall | waiting for checkpoints sync / async (best) | identical | load |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['ranks']} | {r['items']} x {r['checkpoint_bytes_per_item'] / 1e6:.2f} MB | "
              f"{r['sync_work_seconds_best']:.3f} / {r['sync_work_seconds_median']:.3f} s | "
              f"{r['async_work_seconds_best']:.3f} / {r['async_work_seconds_median']:.3f} s | "
              f"{r['ratio_work_seconds_best']:.3f} | {r['sync_wall_seconds_best']:.3f} s | "
              f"{r['async_wall_seconds_best']:.3f} s | {r['ratio_wall_seconds_best']:.3f} | "
              f"{r['sync_blocked_seconds_best']:.3f} / {r['async_blocked_seconds_best']:.3f} s | "
              f"{r['identical_outputs']} | {r['load_average']:.2f} |")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
