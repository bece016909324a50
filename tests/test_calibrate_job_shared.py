"""Node-shared arrays (hpcfit.runtime.shared_array): one copy per node that every rank of the node sees, completed
across (pretend) nodes row band by row band; a plain array in a serial run."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from launch import HANG_GUARD_SECONDS, REPO, find_mpiexec

from hpcfit.calibrate.kernels.reading import row_bands
from hpcfit.runtime.comm import SerialComm
from hpcfit.runtime.shared_array import NodeShared

SCRIPT = """\
import json, sys
import numpy as np
from hpcfit.calibrate.kernels.reading import row_bands
from hpcfit.runtime.comm import world_comm
from hpcfit.runtime.shared_array import NodeShared

comm = world_comm()
shared = NodeShared(comm, ranks_per_node=2)
a = shared.array((11, 5), np.float64, fill=np.nan)
marker = shared.array((1,), np.int64, fill=-1)
node_rank = shared.node.Get_rank()
if node_rank == 1:
    marker[0] = comm.rank  # written by the node's second rank only
shared.sync()
seen = int(marker[0])
bands = row_bands(11, comm.size)
r0, r1 = bands[comm.rank]
a[r0:r1] = np.arange(r0 * 5, r1 * 5).reshape(-1, 5)
shared.assemble_rows(a, bands)
ok = bool(np.array_equal(a, np.arange(55.0).reshape(11, 5)))
report = comm.gather({"rank": comm.rank, "node": shared.node_of_rank[comm.rank], "seen": seen, "ok": ok})
shared.free()
if comm.rank == 0:
    print("RESULT " + json.dumps(report))
"""


def test_serial_is_a_plain_array():
    shared = NodeShared(SerialComm())
    a = shared.array((4, 3), np.float32, fill=2.0)
    assert isinstance(a, np.ndarray) and a.dtype == np.float32 and np.all(a == 2.0)
    a[1:3] = 7.0
    shared.assemble_rows(a, row_bands(4, 1))
    assert a[1, 0] == 7.0 and shared.n_nodes == 1
    shared.free()


@pytest.mark.mpi
def test_one_copy_per_node_and_assembly_across_nodes(tmp_path):
    launcher = find_mpiexec()
    if launcher is None:
        pytest.skip("no mpiexec on PATH")
    (tmp_path / "shared.py").write_text(SCRIPT)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run([launcher, "-n", "4", sys.executable, "shared.py"], check=False, cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=HANG_GUARD_SECONDS)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(next(line for line in proc.stdout.splitlines() if line.startswith("RESULT "))[7:])
    assert [r["rank"] for r in report] == [0, 1, 2, 3], report  # really 4 ranks
    assert [r["node"] for r in report] == [0, 0, 1, 1]
    # every rank sees the value written by its node's second rank: the memory is shared within the node ...
    assert [r["seen"] for r in report] == [1, 1, 3, 3]
    # ... and each node's copy received the other node's rows
    assert all(r["ok"] for r in report)
