"""Deliver SIGUSR1 twice from another process, a few microseconds apart, TRIALS times (argv[1]).

`scancel --full` reaches every rank twice (directly and relayed by srun); the second delivery can land while the
first handler is still running. A handler that takes a lock deadlocks then, so this script hangs instead of
printing "ok" (tests/test_signals.py runs it under a hang guard). Each trial re-installs the handlers.
"""

import os
import signal
import sys
import time

from hpcfit.runtime import signals

trials = int(sys.argv[1])
parent = os.getpid()
for trial in range(trials):
    signals.install(grace=600)
    child = os.fork()
    if child == 0:
        os.kill(parent, signal.SIGUSR1)
        end = time.perf_counter() + (trial % 40) * 5e-6  # sweep the gap across the handler's running time
        while time.perf_counter() < end:
            pass
        os.kill(parent, signal.SIGUSR1)
        os._exit(0)
    while not signals.stop_requested.is_set():
        pass
    os.waitpid(child, 0)
    for _ in range(1000):  # a relayed delivery may still be handled here
        pass
    assert signals.received_name() == "SIGUSR1"
    signals.restore()
print("ok", trials)
