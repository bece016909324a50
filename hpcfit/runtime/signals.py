"""Graceful stop on SIGTERM / SIGUSR1 (time limits, preemption, `scancel --signal`, SLURM's --signal=B:USR1@T).

While work items run, the handler only sets a flag: the scheduler stops handing out work at the next item
boundary, every completed item is already in the checkpoint, and the run exits with ``EXIT_INTERRUPTED`` without
writing an output file; ``--resume`` (automatic after a SLURM requeue) continues from there. If the process has
not exited within ``grace`` seconds of the signal (a rank stuck in a long item while the others wait), or on a
second signal, it exits at once. The same signal arriving twice within a moment counts once: `scancel --full`
reaches each rank directly and through srun.

The handler takes no lock: Python runs handlers in the main thread between bytecodes, so a second delivery can
interrupt the first handler (or any main-thread code) while it holds a lock, and a handler that then waits for
that lock deadlocks the rank (it did, with a ``threading.Event``). The flag is a plain attribute, and the grace
watchdog is a thread started with the handlers, not from inside one.

Once the work is done (``work_finished``) the signals are ignored: the output is being written and the job is
about to end successfully, and dying then would throw away a finished run. ``restore`` puts back the handlers that
were there before (for callers that run jobs in-process); the command-line entry point ignores the signals for
the last moments of the process instead, since Python resets its own handlers to the default at shutdown.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time

EXIT_INTERRUPTED = 3
_DUPLICATE_SECONDS = 2.0
_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)

_WATCH_POLL_SECONDS = 1.0


class StopFlag:
    """A flag that signal handlers may set: unlike ``threading.Event`` it takes no lock (see the module doc)."""

    def __init__(self) -> None:
        self._set = False

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        self._set = True

    def clear(self) -> None:
        self._set = False


stop_requested = StopFlag()
_received: list[tuple[int, float]] = []
_previous: dict[int, object] = {}
_installation = [0]  # bumped by install/restore: a watchdog of an older installation retires


def install(grace: float = 300.0) -> None:
    """Install the handlers (main thread only); ``restore`` undoes it."""
    stop_requested.clear()
    _received.clear()
    for sig in _SIGNALS:
        _previous.setdefault(sig, signal.getsignal(sig))
    _installation[0] += 1
    threading.Thread(target=_watchdog, args=(grace, _installation[0]), name="hpcfit-stop-watchdog",
                     daemon=True).start()

    def handler(signum: int, frame: object) -> None:
        now = time.monotonic()
        if stop_requested.is_set():
            if not _received:
                return  # the first handler was interrupted before it could record its signal: the same delivery
            first_signal, first_time = _received[0]
            if signum == first_signal and now - first_time < _DUPLICATE_SECONDS:
                return  # the same delivery, relayed
            os._exit(128 + signum)
        stop_requested.set()
        _received.append((signum, now))
        try:
            sys.stderr.write(f"hpcfit: received {signal.Signals(signum).name}: stopping after the current work "
                             "item(s); completed items are checkpointed\n")
            sys.stderr.flush()
        except Exception:  # noqa: BLE001 - never fail inside a signal handler (a re-entrant write raises)
            pass

    for sig in _SIGNALS:
        signal.signal(sig, handler)


def _watchdog(grace: float, installation: int) -> None:
    """Exit the process ``grace`` seconds after a stop signal if it has not exited by itself."""
    while _installation[0] == installation and not _received:
        time.sleep(_WATCH_POLL_SECONDS)
    try:
        signum, when = _received[0]
    except IndexError:  # a new installation cleared it meanwhile
        return
    time.sleep(max(0.0, grace - (time.monotonic() - when)))
    if _installation[0] == installation:
        os._exit(128 + signum)


def work_finished() -> None:
    """From now on a stop signal is ignored (the results are complete; only writing remains)."""
    for sig in _SIGNALS:
        signal.signal(sig, _ignore)


def restore() -> None:
    """Put back the handlers that were installed before ``install``."""
    for sig, handler in _previous.items():
        signal.signal(sig, handler)
    _previous.clear()
    _installation[0] += 1


def ignore_at_exit() -> None:
    """Ignore stop signals for the rest of the process (called by the command line just before it exits)."""
    for sig in _SIGNALS:
        signal.signal(sig, signal.SIG_IGN)


def _ignore(signum: int, frame: object) -> None:
    """A Python-level 'ignore': unlike SIG_IGN it is not inherited by child processes."""


def received_name() -> str:
    return signal.Signals(_received[0][0]).name if _received else ""
