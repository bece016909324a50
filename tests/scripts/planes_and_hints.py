"""Helper of tests/test_mpi_hints.py: an OutputFile with MPI-IO hints and an early dataset of planes written by
every rank on its own (write_plane), read back across ranks (read_plane), shortened (shrink).

    [mpiexec -n N] python planes_and_hints.py OUTPUT HINTS_JSON
"""

import json
import sys

import numpy as np

from hpcfit.io.h5out import OutputFile
from hpcfit.runtime.comm import world_comm

path, hints = sys.argv[1], json.loads(sys.argv[2])
comm = world_comm()
out = OutputFile(path, comm, hints=hints)
got = {}
if out.mode == "mpio":
    _, info = out.h5.id.get_access_plist().get_fapl_mpio()
    got = {key: info.Get(key) for key in hints}
out.create_dataset("planes", (5, 3, 4), "f4", early=True, attrs={"unit": "adu"})
for index in range(comm.size - 1 - comm.rank, 5, comm.size):  # the last rank writes plane 0: out of rank order
    out.write_plane("planes", index, np.arange(12, dtype=np.float32).reshape(3, 4) + 100 * index)
comm.barrier()
seen = out.read_plane("planes", (comm.rank + 1) % 5, np.empty((3, 4), np.float32))  # another rank's plane
out.shrink("planes", 4)
out.commit()
report = comm.gather({"rank": comm.rank, "mode": out.mode, "hints": got, "seen": float(seen[0, 0])})
if comm.rank == 0:
    print("RESULT " + json.dumps(report))
