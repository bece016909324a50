"""Test helper run under mpiexec: each rank writes interleaved pieces of a few datasets through OutputFile."""

import sys

import h5py
import numpy as np

from hpcfit.cubefit.boxes import flat_range_boxes
from hpcfit.io.h5out import OutputFile
from hpcfit.runtime.comm import world_comm

comm = world_comm()
path = sys.argv[1]
shape = (7, 9)
transfer = sys.argv[2] if len(sys.argv) > 2 else "auto"
out = OutputFile(path, comm, transfer=transfer)
out.create_dataset("maps/value", shape, "f8", attrs={"unit": "m / s"}, chunks=(4, 4), fillvalue=np.nan)
out.create_dataset("table", (50, 3), "i4")
out.create_dataset("maps/tiles", (6, 8), "f4")
out.write_small("names", np.array(["alpha", "beta", "gamma"]))
pieces = []
# uneven, interleaved flat ranges of the map: rank r takes every size-th range (some ranks get more pieces)
ranges = [(0, 5), (5, 23), (23, 24), (24, 40), (40, 63)]
for k, (a, b) in enumerate(ranges):
    if k % comm.size == comm.rank:
        values = np.arange(a, b, dtype=float) * 1.5
        for box, lo, hi in flat_range_boxes(shape, a, b):
            pieces.append(("maps/value", box, values[lo - a:hi - a].reshape([s.stop - s.start for s in box])))
# column tiles side by side: a rank's tiles interleave in the file's row-major order (merged element by element)
tiles = np.arange(48, dtype="f4").reshape(6, 8)
for c in range(comm.rank, 8, comm.size):
    for r in (slice(0, 3), slice(3, 6)):
        pieces.append(("maps/tiles", (r, slice(c, c + 1)), tiles[r, c:c + 1]))
rows = np.array_split(np.arange(50), comm.size)[comm.rank]
if rows.size:
    pieces.append(("table", (slice(int(rows[0]), int(rows[-1]) + 1),), np.stack([rows, rows * 2, rows * 3], 1)))
out.write(pieces)
out.set_attrs("/", {"answer": 42, "mode_seen": out.mode})
final = out.commit()
if comm.is_root:
    print("MODE", out.mode, "H5PY_MPI", h5py.get_config().mpi, "RANKS", comm.size)
