"""Work distribution: run a plan's work items on every rank, statically or by dynamic self-scheduling.

*dynamic* (default): the items are ordered largest estimated cost first, and every rank (rank 0 too) claims its
next item by advancing a shared counter: an MPI-3 one-sided window on rank 0 holding the next position in that
order, advanced with an atomic ``Fetch_and_op`` (MPI_SUM) under a passive ``Lock_all``. No rank answers
requests, so a rank's Python work (rank 0's included) never holds up another rank's claim, and every position is
claimed exactly once. Ranks that draw cheap items simply come back sooner, so uneven items (slow-converging
spectra, tiles full of NaNs) do not leave ranks idle. The same window holds the progress units the other ranks
have finished, which rank 0 reads for the progress line.

Target progress: with network or shared-memory atomics (most cluster MPIs) a claim never involves rank 0's
process. MPI libraries that implement atomics as active messages (MPICH 4.0's ch4:ucx, as on the development
machine) need rank 0 to enter the MPI library to apply a claim: a small thread on rank 0 does that
(``_Progress``: one cheap window read per wake-up, backing off while nobody claims) and the GIL's switch interval
on rank 0 is lowered while it runs, so a claim waits at most a fraction of a millisecond for the GIL even when
rank 0's own work is pure Python (``MPIR_CVAR_ASYNC_PROGRESS=1`` makes MPICH do it in C; docs/cluster.md).
``bench/scaling/claim_latency.py`` measures the claim latency.

*static*: items are assigned up front by a deterministic greedy balance of the cost estimates (every rank computes
the same assignment, no messages); the other ranks only add their finished units to the window for rank 0's
progress line. *blocks*: like static, but each rank gets a contiguous run of items in index order (e.g. a redshift
band), equal in total size.

Which rank processed an item never changes its result, so outputs do not depend on the rank count or timing.
"""

from __future__ import annotations

import heapq
import sys
import threading
from typing import Any, Callable, Sequence

import numpy as np

from hpcfit.runtime.comm import Comm
from hpcfit.runtime.errors import WorkItemError, fatal, storage_error
from hpcfit.runtime.faults import maybe_fail
from hpcfit.runtime.signals import stop_requested
from hpcfit.runtime.progress import Progress

NEXT, FINISHED = 0, 1  # the window's int64 slots on rank 0: next position to claim; units finished off rank 0
_NAP_SECONDS = 0.0002     # rank 0's progress thread: first nap after a wake-up that saw claims
_MAX_NAP_SECONDS = 0.004  # ... and the longest, while nobody claims
_SWITCH_SECONDS = 0.0002  # rank 0's GIL switch interval while its progress thread runs (Python's default: 5 ms)


def cost_order(costs: dict[int, float]) -> list[int]:
    """Item indices by decreasing cost (ties by index), the order in which work is handed out."""
    return sorted(costs, key=lambda i: (-costs[i], i))


def static_assignment(costs: dict[int, float], size: int) -> list[list[int]]:
    """Greedy longest-processing-time assignment of items to ``size`` ranks; identical on every rank."""
    loads = [(0.0, rank) for rank in range(size)]
    heapq.heapify(loads)
    assignment: list[list[int]] = [[] for _ in range(size)]
    for index in cost_order(costs):
        load, rank = heapq.heappop(loads)
        assignment[rank].append(index)
        heapq.heappush(loads, (load + max(float(costs[index]), 1e-12), rank))
    return [sorted(items) for items in assignment]


def block_assignment(sizes: dict[int, int], size: int) -> list[list[int]]:
    """Contiguous runs of items (in index order) with near-equal total size per rank: rank r gets the r-th
    block. Used when the order of items carries meaning, e.g. redshift bands of the sample job."""
    order = sorted(sizes)
    total = sum(sizes[i] for i in order)
    assignment: list[list[int]] = [[] for _ in range(size)]
    done = 0
    for index in order:
        # the rank whose equal share contains this item's midpoint
        rank = min(size - 1, int((done + sizes[index] / 2) * size // max(total, 1)))
        assignment[rank].append(index)
        done += sizes[index]
    return assignment


def run_items(comm: Comm, items: Sequence[Any], work: Callable[[Any], Any], *, schedule: str,
              progress: Progress | None, label: Callable[[Any], str], todo: Sequence[int] | None = None,
              on_done: Callable[[int, Any], None] | None = None) -> dict[int, Any]:
    """Process every item of ``todo`` (default: all) exactly once across the ranks; return this rank's results.

    ``items[i].size`` is the item's weight in progress units and ``items[i].cost`` its relative cost.
    ``on_done(index, result)`` runs on the computing rank right after each item (the checkpoint).
    An exception in ``work`` ends the whole job (see ``errors.fatal``) naming the rank and the item.
    After a stop signal on any rank no new item is started (on every rank, with the dynamic schedule).
    """
    todo = list(range(len(items))) if todo is None else list(todo)
    sizes = {i: int(getattr(items[i], "size", 1)) for i in todo}
    costs = {i: float(getattr(items[i], "cost", 1.0)) for i in todo}

    def do(index: int) -> Any:
        try:
            maybe_fail(comm.rank, index)
            result = work(items[index])
            if on_done is not None:
                on_done(index, result)
            return result
        except Exception as exc:  # noqa: BLE001 - every failure must end the job with its item named
            raise WorkItemError(label(items[index]), exc) from exc

    results: dict[int, Any] = {}
    if comm.size == 1:
        for index in (sorted(todo) if schedule == "blocks" else cost_order(costs)):
            if stop_requested.is_set():
                break
            try:
                results[index] = do(index)
            except WorkItemError as exc:
                # A serial run hands a failing item's exception to its caller; a full disk is no bug to debug,
                # so it ends the run as under MPI (one line, the checkpoints' temporaries removed).
                if storage_error(exc) is not None:
                    fatal(comm, exc)
                raise
            if progress:
                progress.advance(sizes[index])
        return results

    channel = comm.dup()
    counter = WorkCounter.open(channel)
    if counter is None and schedule == "dynamic":
        schedule = "static"  # no one-sided communication in this MPI: fall back to the static assignment
    # rank 0's thread needs MPI_THREAD_MULTIPLE (mpi4py's default); without it claims still work, served
    # whenever rank 0 enters the MPI library (its own claims), and the progress line counts rank 0's items
    driver = (_Progress(comm, counter, progress) if comm.is_root and counter is not None and comm.thread_safe()
              else None)
    try:
        if schedule == "dynamic":
            _run_dynamic(comm, counter, sizes, costs, do, progress, results)
        else:
            mine = (block_assignment(sizes, comm.size) if schedule == "blocks"
                    else static_assignment(costs, comm.size))[comm.rank]
            for index in mine:
                if stop_requested.is_set():
                    break
                results[index] = do(index)
                if comm.is_root:
                    progress and progress.advance(sizes[index])
                elif counter is not None:
                    counter.note(sizes[index])
    except WorkItemError as exc:
        fatal(comm, exc)
    except BaseException:  # e.g. KeyboardInterrupt in a serial-looking caller: no collective clean-up possible
        if driver is not None:
            driver.stop(count_last=False)
        raise
    channel.idle_barrier()  # ranks that finish early wait here without spinning (and rank 0 serves claims)
    if driver is not None:
        driver.stop()
    if counter is None:  # nobody could report finished units during the run: count them now
        elsewhere = comm.allreduce(0 if comm.is_root else sum(sizes[i] for i in results))
        if progress:
            progress.advance(elsewhere)
    if counter is not None:
        counter.free()
    channel.free()
    return results


class WorkCounter:
    """Two int64 counters in an MPI window on rank 0 (slots ``NEXT`` and ``FINISHED``), updated atomically by
    any rank with passive-target one-sided operations (``Lock_all`` for the window's whole life)."""

    def __init__(self, channel: Comm, MPI: Any):
        self._MPI = MPI
        self._rank = channel.rank
        self._win = MPI.Win.Allocate(2 * 8 if channel.is_root else 0, 8, comm=channel.mpi)
        if channel.is_root:
            np.frombuffer(self._win.tomemory(), dtype=np.int64)[:] = 0
        channel.barrier()  # zeroed before anyone adds to it
        self._win.Lock_all(MPI.MODE_NOCHECK)
        self._lock = threading.Lock()  # rank 0: its main thread and its progress thread take turns on the window
        self._pair = np.zeros(2, np.int64)
        self._add = np.zeros(1, np.int64)
        self._got = np.zeros(1, np.int64)
        self._none = np.zeros(2, np.int64)
        self._both = np.zeros(2, np.int64)
        self._seen = np.zeros(2, np.int64)

    @classmethod
    def open(cls, channel: Comm) -> "WorkCounter | None":
        """A new counter on ``channel`` (collective), or None where one-sided communication is unavailable."""
        if channel.mpi is None:
            return None
        from mpi4py import MPI

        try:
            return cls(channel, MPI)
        except (NotImplementedError, MPI.Exception):
            return None

    def claim(self, finished: int = 0) -> int:
        """Add ``finished`` units to ``FINISHED`` and take the next position: one atomic operation on both slots
        (a single round trip to rank 0)."""
        with self._lock:
            self._pair[:] = (1, finished)
            self._win.Get_accumulate(self._pair, self._both, 0, target=(NEXT, 2, self._MPI.INT64_T),
                                     op=self._MPI.SUM)
            self._win.Flush(0)
            return int(self._both[0])

    def close(self, count: int) -> None:
        """Move ``NEXT`` past the end (+``count``): every later claim gets a position >= ``count`` (a stop)."""
        with self._lock:
            self._add[0] = count
            self._win.Fetch_and_op(self._add, self._got, 0, NEXT, self._MPI.SUM)
            self._win.Flush(0)

    def note(self, finished: int) -> None:
        """Add ``finished`` units to ``FINISHED`` without waiting for rank 0."""
        with self._lock:
            self._add[0] = finished
            self._win.Accumulate(self._add, 0, target=(FINISHED, 1, self._MPI.INT64_T), op=self._MPI.SUM)
            self._win.Flush_local(0)

    def read(self) -> tuple[int, int]:
        """(next position, finished units): an atomic read of rank 0's slots. On rank 0 the call also lets the
        MPI library apply claims that wait for the target's help (see the module doc)."""
        with self._lock:
            self._win.Get_accumulate(self._none, self._seen, 0, target=(NEXT, 2, self._MPI.INT64_T),
                                     op=self._MPI.NO_OP)
            self._win.Flush(0)
            return int(self._seen[0]), int(self._seen[1])

    def free(self) -> None:
        """Collective: end the access epoch and free the window."""
        self._win.Unlock_all()
        self._win.Free()


class _Progress:
    """Rank 0's thread during ``run_items``: reads the window (so claims that need the target's help are applied
    without waiting for rank 0's work, see the module doc) and advances the progress line with the other ranks'
    finished units. It naps between reads, doubling the nap while nothing changes."""

    def __init__(self, comm: Comm, counter: WorkCounter, progress: Progress | None):
        self._counter, self._progress = counter, progress
        self._seen = 0
        self._halt = threading.Event()
        self._switch = sys.getswitchinterval()
        sys.setswitchinterval(min(self._switch, _SWITCH_SECONDS))
        self._thread = _start_guarded_thread(comm, self._loop)

    def _loop(self) -> None:
        nap, last = _NAP_SECONDS, (-1, -1)
        while not self._halt.is_set():
            now = self._counter.read()
            self._advance(now[1])
            nap = _NAP_SECONDS if now != last else min(2 * nap, _MAX_NAP_SECONDS)
            last = now
            self._halt.wait(nap)

    def _advance(self, finished: int) -> None:
        if self._progress and finished > self._seen:
            self._progress.advance(finished - self._seen)
        self._seen = max(self._seen, finished)

    def stop(self, count_last: bool = True) -> None:
        """End the thread and restore the switch interval; then (after every rank has finished) count the last
        units."""
        self._halt.set()
        self._thread.join()
        sys.setswitchinterval(self._switch)
        if count_last:
            self._advance(self._counter.read()[1])


def _run_dynamic(comm: Comm, counter: WorkCounter, sizes: dict[int, int], costs: dict[int, float],
                 do: Callable[[int], Any], progress: Progress | None, results: dict[int, Any]) -> None:
    """Claim positions of the cost order until they run out (or a stop signal closes the counter for all)."""
    order = cost_order(costs)
    finished = 0  # units of this rank's last item, not yet added to the window (ranks other than 0)
    while True:
        if stop_requested.is_set():
            counter.close(len(order))
            break
        position = counter.claim(finished)
        finished = 0
        if position >= len(order):
            break
        index = order[position]
        results[index] = do(index)
        if comm.is_root:
            progress and progress.advance(sizes[index])
        else:
            finished = sizes[index]
    if finished:
        counter.note(finished)


def _start_guarded_thread(comm: Comm, target: Callable[[], None]) -> threading.Thread:
    """A daemon thread whose unexpected failure ends the job instead of vanishing silently."""

    def guarded() -> None:
        try:
            target()
        except Exception as exc:  # noqa: BLE001
            fatal(comm, exc, item="work distribution on rank 0")

    thread = threading.Thread(target=guarded, name="hpcfit-scheduler", daemon=True)
    thread.start()
    return thread
