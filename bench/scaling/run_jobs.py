"""Strong and weak scaling runs of the four jobs on 1, 2 and 4 ranks, with phase timers, into one JSON file.

    python bench/scaling/run_jobs.py [--jobs sample,gridfit,cubefit,calibrate] [--ranks 1,2,4] [--repeat 3]
                                     [--out bench/scaling/measurements.json] [--workdir /tmp/hpcfit_scaling]

For each job, ``strong`` runs keep the problem size fixed (``STRONG[job]``) and ``weak`` runs give every rank the
same share (``WEAK[job]`` x ranks). Every run is ``mpiexec -n P python bench/scaling/timed_run.py ...`` (so the
figures include MPI and Python start-up); from each we keep the launcher's wall time, the output's root attributes
(``wall_seconds``, ``work_seconds``, ``peak_rss_mb_per_rank`` and the job's numeric ``gridfit_*``/``calibrate_*``
timings) and the per-rank phase timers of ``instrument``. Runs are repeated ``--repeat`` times, the repetitions
interleaved over the whole study so that a noisy minute on the shared machine hits every configuration a little
rather than one a lot; ``report.py`` takes medians. ``--append`` adds repetitions to an existing file (another
session on the machine). The machine has 2 cores: 4-rank runs are oversubscribed and
are labelled so everywhere. The load average at the start of each run is recorded.

Before the recorded runs, one unrecorded 1-rank run of each job in ``WARM_UP`` (sample) fills the disk cache of
derived tables (``hpcfit.disk_cache``: the cosmology's distances, the filter curves, the rebinned SSP grid, the dust
templates), so that the recorded set-up and prepare phases are those of production after a site's first run; with
``HPCFIT_CACHE_DIR=off`` they measure the cold costs instead.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import h5py
import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(HERE))

import inputs  # noqa: E402

STRONG = {"sample": 160_000, "gridfit": 4_000, "cubefit": 19_881, "calibrate": 96}
WEAK = {"sample": 80_000, "gridfit": 2_000, "cubefit": 10_000, "calibrate": 48}
CORES = os.cpu_count() or 1
WARM_UP = ("sample",)  # jobs whose set-up reads tables from the disk cache: one unrecorded run fills it


def mpiexec() -> str:
    for name in ("mpiexec.mpich", "mpiexec", "mpirun"):
        path = shutil.which(name)
        if path:
            return path
    raise SystemExit("no mpiexec on the PATH")


def read_attributes(path: Path) -> dict[str, Any]:
    """The root attributes the study uses (numbers and lists of numbers)."""
    keep: dict[str, Any] = {}
    with h5py.File(path, "r") as h5:
        for key, value in h5.attrs.items():
            if key in ("wall_seconds", "work_seconds", "peak_rss_mb_per_rank", "n_ranks", "output_mode") or \
                    key.startswith(("gridfit_", "calibrate_", "sample_n_samples")):
                if isinstance(value, (bytes, str)):
                    if key == "output_mode":
                        keep[key] = value.decode() if isinstance(value, bytes) else value
                    continue
                array = np.asarray(value)
                if array.dtype.kind in "iuf":
                    keep[key] = array.tolist()
    return keep


def run_once(job: str, size: int, ranks: int, workdir: Path, python: str) -> dict[str, Any]:
    """One timed run; returns its record (raises when the run fails)."""
    run_dir = workdir / "runs" / f"{job}_{size}_{ranks}"
    if run_dir.exists():
        shutil.rmtree(run_dir)
    config = inputs.write_config(job, size, run_dir)
    timings = run_dir / "timings"
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    done = subprocess.run([mpiexec(), "-n", str(ranks), python, str(HERE / "timed_run.py"), str(timings), job,
                           str(config)], cwd=run_dir, env=env, capture_output=True, text=True)
    launcher_seconds = time.perf_counter() - t0
    if done.returncode != 0:
        raise RuntimeError(f"{job} size {size} on {ranks} rank(s) failed ({done.returncode}):\n"
                           f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    record = {"job": job, "size": inputs.actual_size(job, size), "ranks": ranks, "load_average": load,
              "oversubscribed": ranks > CORES, "launcher_seconds": launcher_seconds,
              "attributes": read_attributes(run_dir / "out.h5"),
              "per_rank": [json.loads((timings / f"rank-{r:03d}.json").read_text()) for r in range(ranks)]}
    shutil.rmtree(run_dir, ignore_errors=True)
    return record


def _rounded(value: Any) -> Any:
    """Durations to 6 significant digits (they are not better than that; keeps the JSON small); epoch times
    (item start times) to the microsecond."""
    if isinstance(value, float):
        return round(value, 6) if abs(value) >= 1e6 else float(f"{value:.6g}")
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", default="sample,gridfit,cubefit,calibrate")
    parser.add_argument("--ranks", default="1,2,4")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", type=Path, default=HERE / "measurements.json")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/hpcfit_scaling"))
    parser.add_argument("--append", action="store_true",
                        help="keep the runs already in --out and add these as further repetitions")
    args = parser.parse_args(argv)
    jobs = args.jobs.split(",")
    ranks = [int(r) for r in args.ranks.split(",")]
    python = sys.executable
    args.workdir.mkdir(parents=True, exist_ok=True)

    plan = []  # (job, mode, size, ranks)
    for job in jobs:
        for p in ranks:
            plan.append((job, "strong", STRONG[job], p))
            plan.append((job, "weak", WEAK[job] * p, p))
    existing = json.loads(args.out.read_text()) if args.out.exists() else {}
    runs = [r for r in existing.get("runs", []) if args.append or r["job"] not in jobs]
    first = 1 + max((r["repetition"] for r in runs if r["job"] in jobs), default=-1)
    for job in (j for j in jobs if j in WARM_UP):
        run_once(job, WEAK[job], 1, args.workdir, python)  # not recorded: fills the disk cache (docstring)
    t_start = time.perf_counter()
    for rep in range(args.repeat):
        for job, mode, size, p in plan:
            record = run_once(job, size, p, args.workdir, python)
            record.update(mode=mode, repetition=first + rep)
            runs.append(record)
            print(f"[{time.perf_counter() - t_start:6.0f} s] {job:9s} {mode:6s} size {record['size']:>7,} "
                  f"{p} rank(s){' (oversubscribed)' if p > CORES else ''}: launcher {record['launcher_seconds']:.2f} s, "
                  f"engine wall {record['attributes'].get('wall_seconds', float('nan')):.2f} s, "
                  f"load {record['load_average']:.1f}", flush=True)
            args.out.write_text(json.dumps({**existing, "cores": CORES, "strong": STRONG, "weak": WEAK,
                                             "size_units": inputs.SIZE_UNITS, "runs": _rounded(runs)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
