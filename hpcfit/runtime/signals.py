"""Graceful stop on SIGTERM / SIGUSR1 (time limits, preemption, `scancel --signal`, SLURM's --signal=B:USR1@T).

The handler only sets a flag: the scheduler stops handing out work at the next item boundary, every completed
item is already in the checkpoint, and the run exits with ``EXIT_INTERRUPTED`` without writing an output file;
``--resume`` (automatic after a SLURM requeue) continues from there. If the process has not exited within
``grace`` seconds of the signal (e.g. a rank stuck in a long item while the others wait), or on a second signal,
it exits at once.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time

EXIT_INTERRUPTED = 3

stop_requested = threading.Event()
_received: list[int] = []


def install(grace: float = 300.0) -> None:
    """Install the handlers (main thread only)."""

    def handler(signum: int, frame: object) -> None:
        if stop_requested.is_set():
            os._exit(128 + signum)
        _received.append(signum)
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

    for sig in (signal.SIGTERM, signal.SIGUSR1):
        signal.signal(sig, handler)


def received_name() -> str:
    return signal.Signals(_received[0]).name if _received else ""
