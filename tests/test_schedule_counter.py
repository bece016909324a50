"""The dynamic schedule's shared counter (hpcfit/runtime/schedule.py): under real MPI every item is claimed by
exactly one rank, rank 0's progress line counts every rank's units, and a stop on one rank closes the counter for
all. (Faults, resume and slices with the dynamic schedule: test_engine_faults.py, test_resume_and_slices.py.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from launch import HANG_GUARD_SECONDS, REPO, find_mpiexec

SCRIPT = Path(__file__).parent / "scripts" / "claim_items.py"
N_ITEMS = 240


def sizes(indices):
    return sum(i % 5 + 1 for i in indices)  # the items' sizes in claim_items.py


def launch(n: int, *args: str) -> list[dict]:
    """Run claim_items.py on ``n`` ranks; its one line per rank, checked to come from ``n`` distinct ranks."""
    launcher = find_mpiexec()
    if launcher is None:
        pytest.skip("no mpiexec on PATH")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    env.pop("HPCFIT_INJECT_FAULT", None)
    proc = subprocess.run([launcher, "-n", str(n), sys.executable, str(SCRIPT), *args], env=env,
                          capture_output=True, text=True, timeout=HANG_GUARD_SECONDS)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = [json.loads(line.split(" ", 1)[1]) for line in proc.stdout.splitlines() if line.startswith("CLAIMED ")]
    assert sorted(line["rank"] for line in lines) == list(range(n)), proc.stdout
    return sorted(lines, key=lambda line: line["rank"])


@pytest.mark.mpi
@pytest.mark.parametrize("n", [2, 4])
def test_every_item_claimed_exactly_once(n):
    lines = launch(n, "dynamic", str(N_ITEMS))
    claimed = [i for line in lines for i in line["items"]]
    assert sorted(claimed) == list(range(N_ITEMS))  # none twice, none missing
    assert lines[0]["progress"] == sizes(range(N_ITEMS))  # rank 0 counted the other ranks' units too
    assert sum(1 for line in lines if line["items"]) >= 2  # rank 0's pure-Python items did not keep it to itself
    assert all(line["switch_interval"] == 0.005 for line in lines)  # rank 0's lowered interval is given back


@pytest.mark.mpi
def test_stop_on_one_rank_closes_the_counter_for_all():
    lines = launch(2, "dynamic", str(N_ITEMS), "5")  # rank 1 raises the stop flag after its 5th item
    claimed = [i for line in lines for i in line["items"]]
    assert len(claimed) == len(set(claimed)) and len(lines[1]["items"]) == 5
    assert len(claimed) < N_ITEMS / 2  # rank 0 stopped claiming too, long before the end
    assert lines[0]["progress"] == sizes(claimed)


@pytest.mark.mpi
@pytest.mark.parametrize("schedule", ["static", "blocks"])
def test_static_schedules_report_progress_through_the_window(schedule):
    from hpcfit.runtime.schedule import block_assignment, static_assignment

    lines = launch(2, schedule, "60")
    expected = (block_assignment({i: i % 5 + 1 for i in range(60)}, 2) if schedule == "blocks"
                else static_assignment({i: float(i % 7) for i in range(60)}, 2))
    assert [line["items"] for line in lines] == [sorted(part) for part in expected]
    assert lines[0]["progress"] == sizes(range(60))


def test_serial_stand_in_needs_no_counter():
    from hpcfit.engine.job import WorkItem
    from hpcfit.runtime.comm import SerialComm
    from hpcfit.runtime.progress import Progress
    from hpcfit.runtime.schedule import WorkCounter, run_items

    assert WorkCounter.open(SerialComm()) is None
    items = [WorkItem(index=i, label=str(i), size=2, cost=float(i)) for i in range(5)]
    progress = Progress(10, mode="none")
    order = []
    results = run_items(SerialComm(), items, lambda item: order.append(item.index) or item.index, schedule="dynamic",
                        progress=progress, label=lambda item: item.label)
    assert order == [4, 3, 2, 1, 0] and results == {i: i for i in range(5)} and progress.done == 10
