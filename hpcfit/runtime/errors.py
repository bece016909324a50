"""Errors and how a job ends on them.

Two kinds of failure end a run:

* ``ConfigError`` (and usage errors): detected on rank 0 before any work starts; reported once, every rank
  exits with code 2 (``EXIT_CONFIG``), no output file is created.
* anything unexpected during the work: the failing rank prints one message naming itself, the work item and
  the cause (plus the traceback), runs the registered clean-ups (e.g. removes the incomplete output file) and
  calls ``MPI_Abort`` so that no other rank waits forever in a collective.

A write that fails because of the storage (disk full, quota exceeded, an I/O error: ``STORAGE_ERRNOS``) is no
bug of the program: its message is ONE line, without a traceback, naming the file, the cause and what was kept
(the notes registered with ``on_fatal_note``, e.g. the completed checkpoints that ``--resume`` continues from).
"""

from __future__ import annotations

import errno
import os
import sys
import threading
import time
import traceback
from typing import TYPE_CHECKING, Callable, NoReturn

if TYPE_CHECKING:  # the command line reads the exit codes before numpy (and MPI) may be imported
    from hpcfit.runtime.comm import Comm

EXIT_OK = 0
EXIT_FATAL = 1
EXIT_CONFIG = 2


class UsageError(Exception):
    """A command-line mistake (exit code 2)."""


class WorkItemError(Exception):
    """An unexpected exception while processing one work item (wraps the cause)."""

    def __init__(self, item_label: str, cause: BaseException):
        super().__init__(f"{item_label}: {type(cause).__name__}: {cause}")
        self.item_label = item_label
        self.cause = cause


# A full disk (ENOSPC), an exceeded quota (EDQUOT) or a failing device (EIO): the storage, not the program.
STORAGE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EIO})


class JobFailed(SystemExit):
    """How ``fatal`` ends a one-process run: a ``SystemExit`` with code 1 for the command line, which also says
    what failed (``message``) and why (``cause``), so that ``hpcfit.run`` can raise an ordinary exception."""

    def __init__(self, message: str, cause: BaseException):
        super().__init__(EXIT_FATAL)
        self.message, self.cause = message, cause


_cleanups: list[Callable[[], None]] = []
_notes: list[Callable[[], str | None]] = []
_fatal_lock = threading.Lock()


def on_fatal(callback: Callable[[], None]) -> Callable[[], None]:
    """Register a clean-up to run (best effort) before a fatal abort; returns a function that unregisters it."""
    _cleanups.append(callback)

    def remove() -> None:
        if callback in _cleanups:
            _cleanups.remove(callback)

    return remove


def on_fatal_note(describe: Callable[[], str | None]) -> Callable[[], None]:
    """Register a note for the fatal message saying what a failed run kept (e.g. its checkpoints); ``describe``
    runs at the time of the failure and may return None. Returns a function that unregisters it."""
    _notes.append(describe)

    def remove() -> None:
        if describe in _notes:
            _notes.remove(describe)

    return remove


def storage_error(exc: BaseException) -> OSError | None:
    """The OSError of a full disk, exceeded quota or I/O error behind ``exc`` (itself or a cause), else None."""
    seen: set[int] = set()
    node: BaseException | None = exc.cause if isinstance(exc, WorkItemError) else exc
    while node is not None and id(node) not in seen:
        seen.add(id(node))
        if isinstance(node, OSError):
            if node.errno in STORAGE_ERRNOS:
                return node
            # MPI-IO's errors reach h5py without an errno, the system's text inside theirs
            # ("MPI_File_write_at failed: ... Other I/O error No space left on device")
            for number in sorted(STORAGE_ERRNOS):
                if os.strerror(number) in str(node):
                    named = OSError(number, os.strerror(number), node.filename)
                    named.__cause__ = node
                    return named
        node = node.__cause__ or node.__context__
    return None


def describe_storage_error(error: OSError) -> str:
    """'cannot write FILE: No space left on device (ENOSPC)' from an OSError (h5py's texts run to many lines)."""
    target = f" '{error.filename}'" if error.filename else ""
    return f"cannot write{target}: {os.strerror(error.errno)} ({errno.errorcode.get(error.errno, error.errno)})"


def fatal(comm: Comm, exc: BaseException, *, item: str | None = None) -> NoReturn:
    """Report an unexpected failure on this rank and end the whole job now."""
    with _fatal_lock:  # the scheduler thread and the main thread may fail together: report once
        cause = exc.cause if isinstance(exc, WorkItemError) else exc
        item = item or (exc.item_label if isinstance(exc, WorkItemError) else None)
        where = f" while processing {item}" if item else ""
        # Clean up first (temporary pieces, the incomplete output): the notes then count only what was kept.
        _run_cleanups()
        kept = _kept_notes()
        storage = storage_error(exc)
        if storage is not None:
            message = (f"hpcfit: FATAL on {comm.describe()}{where}: {describe_storage_error(storage)}; "
                       f"no output file was written{kept}\n")
        else:
            tb = "".join(traceback.format_exception(type(cause), cause, cause.__traceback__))
            message = (
                f"hpcfit: FATAL on {comm.describe()}{where}: {type(cause).__name__}: {cause}\n"
                f"{tb.rstrip()}\n"
                f"hpcfit: aborting all {comm.size} rank(s); no complete output file was written{kept}.\n"
            )
        try:
            sys.stdout.flush()
            sys.stderr.write(message)
            sys.stderr.flush()
        except Exception:  # noqa: BLE001 - the abort below matters more than the message
            pass
        if comm.size > 1:
            # The launcher forwards our stderr asynchronously and tears everything down on MPI_Abort: give it a
            # moment to pass the message on, or the one line that says what went wrong can be lost.
            time.sleep(0.5)
            # Another rank may have left a temporary piece meanwhile (MPI_Abort kills it where it stands).
            _run_cleanups()
            comm.abort(EXIT_FATAL)
            os._exit(EXIT_FATAL)  # not reached: MPI_Abort does not return
    raise JobFailed(f"{type(cause).__name__} on {comm.describe()}{where}: {cause}", cause)


def _run_cleanups() -> None:
    for callback in list(_cleanups):
        try:
            callback()
        except Exception:  # noqa: BLE001 - best effort: the message and the abort matter more
            pass


def _kept_notes() -> str:
    notes = []
    for describe in list(_notes):
        try:
            note = describe()
        except Exception:  # noqa: BLE001
            note = None
        if note:
            notes.append(note)
    return "".join(f"; {note}" for note in notes)
