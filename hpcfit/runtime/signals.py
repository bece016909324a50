"""Graceful stop on SIGTERM / SIGUSR1 (time limits, preemption, `scancel --signal`, SLURM's --signal=B:USR1@T).

While work items run, the handler only sets a flag: the scheduler stops handing out work at the next item
boundary, every completed item is already in the checkpoint, and the run exits with ``EXIT_INTERRUPTED`` without
writing an output file; ``--resume`` (automatic after a SLURM requeue) continues from there. If the process has
not exited within ``grace`` seconds of the signal (a rank stuck in a long item while the others wait), or on a
second signal, it exits at once. The same signal arriving twice within a moment counts once: `scancel --full`
reaches each rank directly and through srun.

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

stop_requested = threading.Event()
_received: list[tuple[int, float]] = []
_previous: dict[int, object] = {}


def install(grace: float = 300.0) -> None:
    """Install the handlers (main thread only); ``restore`` undoes it."""
    stop_requested.clear()
    _received.clear()
    for sig in _SIGNALS:
        _previous.setdefault(sig, signal.getsignal(sig))

    def handler(signum: int, frame: object) -> None:
        now = time.monotonic()
        if stop_requested.is_set():
            first_signal, first_time = _received[0]
            if signum == first_signal and now - first_time < _DUPLICATE_SECONDS:
                return  # the same delivery, relayed
            os._exit(128 + signum)
        _received.append((signum, now))
        stop_requested.set()
        try:
            sys.stderr.write(f"hpcfit: received {signal.Signals(signum).name}: stopping after the current work "
                             "item(s); completed items are checkpointed\n")
            sys.stderr.flush()
        except Exception:  # noqa: BLE001 - never fail inside a signal handler
            pass

        def watchdog() -> None:
            time.sleep(grace)
            os._exit(128 + signum)

        threading.Thread(target=watchdog, daemon=True).start()

    for sig in _SIGNALS:
        signal.signal(sig, handler)


def work_finished() -> None:
    """From now on a stop signal is ignored (the results are complete; only writing remains)."""
    for sig in _SIGNALS:
        signal.signal(sig, _ignore)


def restore() -> None:
    """Put back the handlers that were installed before ``install``."""
    for sig, handler in _previous.items():
        signal.signal(sig, handler)
    _previous.clear()


def ignore_at_exit() -> None:
    """Ignore stop signals for the rest of the process (called by the command line just before it exits)."""
    for sig in _SIGNALS:
        signal.signal(sig, signal.SIG_IGN)


def _ignore(signum: int, frame: object) -> None:
    """A Python-level 'ignore': unlike SIG_IGN it is not inherited by child processes."""


def received_name() -> str:
    return signal.Signals(_received[0][0]).name if _received else ""
