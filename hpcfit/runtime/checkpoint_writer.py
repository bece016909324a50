"""Saving the checkpoints of finished work items, in the background or not (``run.checkpoint_async``).

``CheckpointWriter`` (the default): a writer thread per rank and a bounded queue. The scheduler hands it each
finished item's result (``save``) and goes on computing while the thread pickles, writes, fsyncs and renames the
item's file (``SliceStore.save``: still a temporary file renamed into place, so a file is whole or absent). The
overlap is real: the bulk of a save is ``write`` and ``fsync`` system calls, during which Python releases the GIL
(``bench/checkpoint_overlap.py`` measures it). ``SyncCheckpoints`` saves in the caller, as before the writer existed.

Rules the engine relies on:

* memory stays bounded: at most ``depth`` results wait in the queue (plus the one being written); a hand-off to a
  full queue waits for the writer. The queue holds references only: a result must not be changed after
  ``Job.work`` returned it (the engine keeps it for ``write`` anyway).
* ``drain`` waits until every handed-off item is on disk and raises the writer's error, if any; the engine drains
  at the end of every stage (before ``between``, the stop message, a slice's COMPLETE mark or ``write`` read
  checkpoints or results) and, through ``errors.on_fatal``, before a fatal end counts the checkpoints it keeps.
* a failed save (the disk, an injected fault) is raised on the main thread at the next hand-off or at the drain as
  ``CheckpointWriteError``, naming the item and chaining the cause (a full disk stays a one-line storage error),
  and so ends the job like any other rank error. The writer saves nothing after a failure: the items still queued
  are computed again by ``--resume``.
"""

from __future__ import annotations

import queue
import threading
from typing import Any, Callable, Union

from hpcfit.runtime.checkpoint import SliceStore
from hpcfit.runtime.faults import maybe_fail

DEPTH = 2  # results waiting for the writer: enough to cover one slow save, small enough to bound the memory held
SETTLE_SECONDS = 60.0  # a fatal end waits at most this long for the writer (a hung file system must not hang it)


class CheckpointWriteError(RuntimeError):
    """A checkpoint could not be saved (raised on the main thread; ``__cause__`` is the writer's exception)."""

    def __init__(self, item: str, cause: BaseException):
        super().__init__(f"the checkpoint of {item} was not saved: {type(cause).__name__}: {cause}")
        self.item, self.cause = item, cause


def save_item(store: SliceStore, rank: int, index: int, result: Any) -> None:
    """The one way both modes save: ``store.save`` with the ``checkpoint`` fault-injection point before the
    rename (``hpcfit.runtime.faults``)."""
    store.save(index, result, before_rename=lambda: maybe_fail(rank, index, at="checkpoint"))


class SyncCheckpoints:
    """Checkpoints saved by the caller: ``save`` returns when the item's file is in place."""

    def __init__(self, store: SliceStore, rank: int):
        self.store, self.rank = store, rank

    def save(self, index: int, result: Any) -> None:
        save_item(self.store, self.rank, index, result)

    def drain(self) -> None:
        """Nothing is ever pending."""

    def settle(self) -> None:
        """Nothing is ever pending."""

    def close(self) -> None:
        """No thread to stop."""


class CheckpointWriter:
    """A background thread saving the results handed to ``save``, in order; see the module doc."""

    def __init__(self, store: SliceStore, rank: int, *, depth: int = DEPTH,
                 label: Callable[[int], str] = lambda index: f"item {index}"):
        self.store, self.rank, self._label = store, rank, label
        self._queue: queue.Queue[tuple[int, Any] | None] = queue.Queue(maxsize=depth)
        self._pending = 0  # handed off and not yet saved (or skipped after a failure)
        self._idle = threading.Condition()
        self._error: CheckpointWriteError | None = None
        self._thread = threading.Thread(target=self._loop, name=f"hpcfit-checkpoints-{rank}", daemon=True)
        self._thread.start()

    # -- the main thread ----------------------------------------------------------------------------------------
    def save(self, index: int, result: Any) -> None:
        """Hand a finished item's result to the writer (waits while ``depth`` results are queued); raises the
        writer's earlier failure instead, if any."""
        self._raise_error()
        with self._idle:
            self._pending += 1
        try:
            self._queue.put((index, result))
        except BaseException:  # e.g. Ctrl-C while waiting for room: nothing was handed off, so a drain must not wait
            self._done()
            raise

    def drain(self) -> None:
        """Wait until every handed-off result is saved; raise the writer's failure, if any."""
        self._wait(None)
        self._raise_error()

    def settle(self) -> None:
        """A fatal end's clean-up (``errors.on_fatal``): let the writer finish what it holds (for a while), so that
        the message counts those items and no temporary piece is being written when the clean-ups remove them."""
        self._wait(SETTLE_SECONDS)

    def close(self) -> None:
        """Finish what is pending (without raising: a failure was raised at a hand-off or a drain, or the run is
        ending on another error) and stop the thread."""
        if self._wait(SETTLE_SECONDS):
            self._queue.put(None)
            self._thread.join(SETTLE_SECONDS)

    @property
    def pending(self) -> int:
        """Results handed off and not yet saved."""
        with self._idle:
            return self._pending

    def _wait(self, timeout: float | None) -> bool:
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout)

    def _raise_error(self) -> None:
        if self._error is not None:
            raise self._error

    def _done(self) -> None:
        """One handed-off result is saved (or skipped, or was never handed off)."""
        with self._idle:
            self._pending -= 1
            self._idle.notify_all()

    # -- the writer thread --------------------------------------------------------------------------------------
    def _loop(self) -> None:
        while (task := self._queue.get()) is not None:
            index, result = task
            try:
                if self._error is None:
                    save_item(self.store, self.rank, index, result)
            except BaseException as exc:  # noqa: BLE001 - anything must reach the main thread, not vanish here
                error = CheckpointWriteError(self._label(index), exc)
                error.__cause__ = exc
                self._error = error
            finally:
                del task, result  # not held while waiting for the next one
                self._done()


Checkpoints = Union[CheckpointWriter, SyncCheckpoints]  # what the engine hands the scheduler as ``on_done``


def open_checkpoints(store: SliceStore, rank: int, *, asynchronous: bool,
                     label: Callable[[int], str] = lambda index: f"item {index}") -> Checkpoints:
    """How this rank saves its checkpoints: in the background (``run.checkpoint_async``) or in the caller."""
    return CheckpointWriter(store, rank, label=label) if asynchronous else SyncCheckpoints(store, rank)
