"""``python rank_probe.py ARGS``: run the ``hpcfit`` command (as ``python -m hpcfit ARGS``), then print which MPI
rank of how many this process was and its exit code.

For MPI tests of runs that write no file (config errors): one line per rank proves that the launcher really
started the ranks, where a launcher ignoring ``-n`` would run one serial process. A fatal error aborts the job
before the line is printed, so use it only for runs that return.
"""

from __future__ import annotations

import os
import sys

from hpcfit.cli import entry


def world() -> tuple[int, int]:
    """(rank, size) of MPI_COMM_WORLD if this process initialised MPI, else (0, 1): a serial run."""
    mpi = sys.modules.get("mpi4py.MPI")
    if mpi is None or not mpi.Is_initialized() or mpi.Is_finalized():
        return 0, 1
    return mpi.COMM_WORLD.Get_rank(), mpi.COMM_WORLD.Get_size()


if __name__ == "__main__":
    sys.argv[0] = "hpcfit"
    code = entry()
    rank, size = world()
    sys.stdout.flush()
    # one write of the whole line, so that the launcher does not mix it with another rank's line
    os.write(sys.stdout.fileno(), f"rank-probe: rank {rank} of {size} exited with code {code}\n".encode())
    sys.exit(code)
