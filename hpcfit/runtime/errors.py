"""Errors and how a job ends on them.

Two kinds of failure end a run:

* ``ConfigError`` (and usage errors): detected on rank 0 before any work starts; reported once, every rank
  exits with code 2 (``EXIT_CONFIG``), no output file is created.
* anything unexpected during the work: the failing rank prints one message naming itself, the work item and
  the cause (plus the traceback), runs the registered clean-ups (e.g. removes the incomplete output file) and
  calls ``MPI_Abort`` so that no other rank waits forever in a collective.
"""

from __future__ import annotations

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


class JobFailed(SystemExit):
    """How ``fatal`` ends a one-process run: a ``SystemExit`` with code 1 for the command line, which also says
    what failed (``message``) and why (``cause``), so that ``hpcfit.run`` can raise an ordinary exception."""

    def __init__(self, message: str, cause: BaseException):
        super().__init__(EXIT_FATAL)
        self.message, self.cause = message, cause


_cleanups: list[Callable[[], None]] = []
_fatal_lock = threading.Lock()


def on_fatal(callback: Callable[[], None]) -> Callable[[], None]:
    """Register a clean-up to run (best effort) before a fatal abort; returns a function that unregisters it."""
    _cleanups.append(callback)

    def remove() -> None:
        if callback in _cleanups:
            _cleanups.remove(callback)

    return remove


def fatal(comm: Comm, exc: BaseException, *, item: str | None = None) -> NoReturn:
    """Report an unexpected failure on this rank and end the whole job now."""
    with _fatal_lock:  # the scheduler thread and the main thread may fail together: report once
        cause = exc.cause if isinstance(exc, WorkItemError) else exc
        item = item or (exc.item_label if isinstance(exc, WorkItemError) else None)
        where = f" while processing {item}" if item else ""
        tb = "".join(traceback.format_exception(type(cause), cause, cause.__traceback__))
        message = (
            f"hpcfit: FATAL on {comm.describe()}{where}: {type(cause).__name__}: {cause}\n"
            f"{tb.rstrip()}\n"
            f"hpcfit: aborting all {comm.size} rank(s); no complete output file was written.\n"
        )
        try:
            sys.stdout.flush()
            sys.stderr.write(message)
            sys.stderr.flush()
        except Exception:  # noqa: BLE001 - the abort below matters more than the message
            pass
        for callback in list(_cleanups):
            try:
                callback()
            except Exception:  # noqa: BLE001
                pass
        if comm.size > 1:
            # The launcher forwards our stderr asynchronously and tears everything down on MPI_Abort: give it a
            # moment to pass the message on, or the one line that says what went wrong can be lost.
            time.sleep(0.5)
            comm.abort(EXIT_FATAL)
            os._exit(EXIT_FATAL)  # not reached: MPI_Abort does not return
    raise JobFailed(f"{type(cause).__name__} on {comm.describe()}{where}: {cause}", cause)
