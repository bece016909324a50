"""Run one hpcfit job with phase timers: ``[mpiexec -n P] python bench/scaling/timed_run.py TIMINGS_DIR JOB CONFIG
[hpcfit run options...]``.

The same as ``hpcfit run CONFIG ...``, plus ``TIMINGS_DIR/rank-RRR.json`` per rank (see ``instrument``), including
the seconds from the interpreter's start of this script to the end of the run (``script_seconds``) and the
time spent importing (``import_seconds``), so that start-up costs can be told apart from the engine's own wall time.
"""

from __future__ import annotations

import sys
import time

T_START = time.perf_counter()

from pathlib import Path  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))


def main(argv: list[str]) -> int:
    timings, job, config, *rest = argv
    from hpcfit.process import configure_process

    configure_process()  # as the ``hpcfit`` command does first (hpcfit.cli.entry)
    import instrument
    from hpcfit import cli
    from hpcfit.runtime.comm import world_comm

    instrument.install(job)
    comm = world_comm()
    import_seconds = time.perf_counter() - T_START
    code = cli.main(["run", config, *rest])
    instrument.dump(timings, comm.rank, comm.size, {"code": code, "import_seconds": import_seconds,
                                                    "script_seconds": time.perf_counter() - T_START,
                                                    "process_cpu_seconds": time.process_time()})
    return code


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
