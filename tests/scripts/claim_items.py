"""Test helper run under mpiexec: ``run_items`` over uneven items; every rank prints the indices it computed.

``python claim_items.py SCHEDULE N_ITEMS [STOP_AFTER]``: items sleep 0–3 ms (rank 0's work holds the GIL in pure
Python, the case a helper thread on rank 0 would suffer from); with STOP_AFTER, rank 1 raises the stop flag after
that many of its items, as a stop signal would. Rank 0 also prints the progress units it counted.
"""

import io
import json
import sys
import time

from hpcfit.engine.job import WorkItem
from hpcfit.runtime.comm import world_comm
from hpcfit.runtime.progress import Progress
from hpcfit.runtime.schedule import run_items
from hpcfit.runtime.signals import stop_requested

comm = world_comm()
schedule, n_items = sys.argv[1], int(sys.argv[2])
stop_after = int(sys.argv[3]) if len(sys.argv) > 3 else None
items = [WorkItem(index=i, label=f"item {i}", size=i % 5 + 1, cost=float(i % 7)) for i in range(n_items)]
done = []


def work(item: WorkItem) -> int:
    end = time.perf_counter() + 0.001 * (item.index % 4)
    x = 0
    while time.perf_counter() < end:  # pure Python: holds the GIL
        x += 1
    done.append(item.index)
    if comm.rank == 1 and stop_after is not None and len(done) >= stop_after:
        stop_requested.set()
    return item.index * 10


progress = Progress(sum(i.size for i in items), mode="none") if comm.is_root else None
results = run_items(comm, items, work, schedule=schedule, progress=progress, label=lambda i: i.label)
assert all(results[i] == i * 10 for i in results)
line = {"rank": comm.rank, "items": sorted(results), "progress": progress.done if progress else None,
        "stopped": stop_requested.is_set(), "switch_interval": sys.getswitchinterval()}
sys.stdout.write("CLAIMED " + json.dumps(line) + "\n")
sys.stdout.flush()
