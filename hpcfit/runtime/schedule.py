"""Work distribution: run a plan's work items on every rank, statically or by dynamic self-scheduling.

*dynamic* (default): rank 0 keeps a queue of item indices, largest estimated cost first, and a helper thread on
rank 0 answers "next item?" requests from the other ranks while rank 0's main thread works through the same
queue. Ranks that draw cheap items simply come back sooner, so uneven items (slow-converging spectra, tiles full
of NaNs) do not leave ranks idle. The requests travel on a duplicate of the job's communicator, so they never
mix with the job's own collectives.

*static*: items are assigned up front by a deterministic greedy balance of the cost estimates (every rank computes
the same assignment, no messages); the other ranks only send progress notices to rank 0. *blocks*: like static,
but each rank gets a contiguous run of items in index order (e.g. a redshift band), equal in total size.

Which rank processed an item never changes its result, so outputs do not depend on the rank count or timing.
"""

from __future__ import annotations

import heapq
import threading
import time
from collections import deque
from typing import Any, Callable, Iterable, Sequence

from hpcfit.runtime.comm import Comm
from hpcfit.runtime.errors import WorkItemError, fatal, storage_error
from hpcfit.runtime.faults import maybe_fail
from hpcfit.runtime.signals import stop_requested
from hpcfit.runtime.progress import Progress

TAG_REQUEST = 101  # worker -> root: "I finished `size` units, give me the next item"
TAG_REPLY = 102    # root -> worker: next item index, or -1 when the queue is empty
TAG_NOTICE = 103   # worker -> root (static schedule): "I finished `size` units"
TAG_DONE = 104     # worker -> root (static schedule): "I have no more items"

_POLL_SECONDS = 0.0005
_MAX_POLL_SECONDS = 0.016


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
    After a stop signal (``signals.stop_requested``) no new item is started.
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

    if schedule == "dynamic" and not comm.thread_safe():
        schedule = "static"  # the MPI library cannot take calls from rank 0's helper thread
    channel = comm.dup()
    try:
        if schedule == "dynamic":
            _run_dynamic(comm, channel, sizes, costs, do, progress, results)
        else:
            _run_static(comm, channel, sizes, costs, do, progress, results, schedule)
    except WorkItemError as exc:
        fatal(comm, exc)
    channel.idle_barrier()  # ranks that finish early wait here without spinning
    channel.free()
    return results


def _serve(comm: Comm, channel: Any, handle: Callable[[int, int, Any], bool]) -> threading.Thread:
    """Start rank 0's helper thread: it answers the other ranks' messages with ``handle(source, tag, payload)``
    (True when that rank has finished) until every other rank has finished."""

    def loop() -> None:
        remaining = comm.size - 1
        nap = _POLL_SECONDS
        while remaining:
            pending = channel.iprobe()
            if pending is None:
                # Back off while nobody asks: every wake-up takes the GIL from rank 0's own work.
                time.sleep(nap)
                nap = min(2 * nap, _MAX_POLL_SECONDS)
                continue
            nap = _POLL_SECONDS
            source, tag = pending
            remaining -= handle(source, tag, channel.recv(source, tag))

    return _start_guarded_thread(comm, loop)


def _work_through(indices: Iterable[int], do: Callable[[int], Any], results: dict[int, Any],
                  done: Callable[[int], None]) -> None:
    """Process items in order until they run out or a stop signal arrives; ``done(index)`` after each."""
    for index in indices:
        if stop_requested.is_set():
            break
        results[index] = do(index)
        done(index)


def _run_dynamic(comm: Comm, channel: Any, sizes: dict[int, int], costs: dict[int, float],
                 do: Callable[[int], Any], progress: Progress | None, results: dict[int, Any]) -> None:
    if comm.is_root:
        queue = deque(cost_order(costs))
        lock = threading.Lock()

        def take() -> int | None:
            with lock:
                return queue.popleft() if queue and not stop_requested.is_set() else None

        def answer(source: int, tag: int, payload: Any) -> bool:
            finished, stopping = payload
            if progress and finished:
                progress.advance(finished)
            index = None if stopping else take()
            channel.send(-1 if index is None else index, source, TAG_REPLY)
            return index is None

        server = _serve(comm, channel, answer)
        _work_through(iter(take, None), do, results, lambda i: progress and progress.advance(sizes[i]))
        server.join()
    else:
        finished = 0
        while True:
            channel.send((finished, stop_requested.is_set()), 0, TAG_REQUEST)
            index = channel.recv(0, TAG_REPLY)
            if index < 0:
                break
            results[index] = do(index)
            finished = sizes[index]


def _run_static(comm: Comm, channel: Any, sizes: dict[int, int], costs: dict[int, float],
                do: Callable[[int], Any], progress: Progress | None, results: dict[int, Any],
                schedule: str) -> None:
    if schedule == "blocks":
        mine = block_assignment(sizes, comm.size)[comm.rank]
    else:
        mine = static_assignment(costs, comm.size)[comm.rank]
    if comm.is_root:
        def note(source: int, tag: int, finished: Any) -> bool:
            if tag != TAG_DONE and progress:
                progress.advance(finished)
            return tag == TAG_DONE

        server = _serve(comm, channel, note)
        _work_through(mine, do, results, lambda i: progress and progress.advance(sizes[i]))
        server.join()
    else:
        _work_through(mine, do, results, lambda i: channel.send(sizes[i], 0, TAG_NOTICE))
        channel.send(0, 0, TAG_DONE)


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
