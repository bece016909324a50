"""Claim latency of the dynamic schedule: how long a rank waits for its next item, by what rank 0 is doing.

    mpiexec -n P python bench/scaling/claim_latency.py OUT.json [--duration 2] [--repeat 3]

Through ``hpcfit.runtime.schedule.run_items`` (schedule ``dynamic``), as a job uses it: rank 0's items keep it
busy for 20 ms each — sleeping (the GIL free), in numpy (small array operations, the GIL taken and released
often) or in pure Python (the GIL held) — while every other rank takes items of 1 ms (a GIL-free sleep, so the
measurement does not depend on the other ranks' CPU) and records the gap between the end of one item and the
start of the next: one claim (``WorkCounter.claim``: an atomic fetch-and-add on rank 0's window), plus the
loop's own Python overhead. After ``--duration`` seconds rank 0 raises the stop flag, which closes the counter.
Medians (and 10th/90th percentiles) over all claims of all repetitions, in microseconds. On a machine with more
runnable processes than cores the median mostly measures the operating system's scheduling (a woken process
waits for a core); the 10th percentile is the latency of the claims that found both processes on a core, which is
what a cluster (a core per rank) gives every claim. The environment variables
that change how the MPI library progresses one-sided operations are recorded with the figures (e.g.
``MPIR_CVAR_ASYNC_PROGRESS=1``: MPICH applies claims in a progress thread of its own).

The earlier scheduler (a helper thread on rank 0 answering messages) measured 3.5 / 4.3 / 17.9 ms per round trip
with rank 0 sleeping / in numpy / in pure Python (``components.json``, same loop, 2 ranks).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from components import _busy_numpy, _busy_python  # noqa: E402

RANK0_SECONDS = 0.02
WORKER_SECONDS = 0.001


def measure(comm, busy, duration: float) -> list[float]:
    """One run: the claim gaps (seconds) seen by this rank (none on rank 0)."""
    from hpcfit.engine.job import WorkItem
    from hpcfit.runtime import signals
    from hpcfit.runtime.schedule import run_items

    items = [WorkItem(index=i, label=str(i)) for i in range(int(duration / WORKER_SECONDS) * comm.size * 4)]
    gaps: list[float] = []
    last = [None]
    end = [None]

    def work(item: WorkItem) -> None:
        start = time.perf_counter()
        if comm.rank == 0:
            end[0] = end[0] or start + duration
            if start < end[0]:
                busy(RANK0_SECONDS)
            else:
                signals.stop_requested.set()  # the counter closes at rank 0's next claim: every rank ends
            return
        if last[0] is not None:
            gaps.append(start - last[0])
        time.sleep(WORKER_SECONDS)
        last[0] = time.perf_counter()

    run_items(comm, items, work, schedule="dynamic", progress=None, label=lambda i: i.label)
    signals.stop_requested.clear()
    return gaps


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("output", type=Path)
    parser.add_argument("--duration", type=float, default=2.0)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)

    from hpcfit.runtime.comm import world_comm

    comm = world_comm()
    workloads = {"sleep": time.sleep, "numpy": _busy_numpy, "python": _busy_python}
    result: dict = {"ranks": comm.size, "cores": os.cpu_count(), "load_average": os.getloadavg()[0],
                    "environment": {k: v for k, v in os.environ.items() if k.startswith(("MPIR_CVAR_", "UCX_"))},
                    "workloads": {}}
    for name, busy in workloads.items():
        gaps: list[float] = []
        for _ in range(args.repeat):
            gaps += measure(comm, busy, args.duration)
        every = [g for part in comm.gather(gaps) or [] for g in part]
        if comm.is_root:
            us = np.asarray(every) * 1e6
            result["workloads"][name] = {
                "claims": len(every), "median_us": float(np.median(us)), "p10_us": float(np.percentile(us, 10)),
                "p90_us": float(np.percentile(us, 90)), "min_us": float(us.min()), "max_us": float(us.max()),
                "mean_us": float(us.mean())}
            print(f"{comm.size} ranks, rank 0 {name:6s}: {len(every):6d} claims, p10 {np.percentile(us, 10):8.1f} "
                  f"µs, median {np.median(us):8.1f} µs, p90 {np.percentile(us, 90):8.1f} µs", flush=True)
    if comm.is_root:
        result["load_average_end"] = os.getloadavg()[0]
        args.output.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
