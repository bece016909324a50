"""Node-shared read-mostly numpy arrays: one copy per node, written by row bands, read by every rank of the node.

Under MPI the run's communicator is split into nodes (``Split_type(COMM_TYPE_SHARED)``); for each array, rank 0 of
the node allocates an MPI shared-memory window (``Win.Allocate_shared``) and the other ranks of the node query its
address, so all of them see the same memory as a numpy array: no copy per rank, none per task. In a serial run
(``comm.mpi is None``) the array is a plain numpy array.

Usage pattern (every call is collective over the run's communicator, same arguments on every rank)::

    shared = NodeShared(comm)
    master = shared.array((ny, nx), np.float32)   # same shape and dtype on every rank
    master[r0:r1] = my_rows                        # each rank fills its own row band ...
    shared.assemble_rows(master, bands)            # ... then every node's copy receives the other nodes' rows
    ...                                            # read-only use by every rank of the node
    shared.free()                                  # release the windows (collective)

Testing aid: ``HPCFIT_RANKS_PER_NODE=k`` (or ``ranks_per_node=k``) groups consecutive ranks k by k into pretend
nodes, each with its own copy, so the cross-node assembly runs on a single machine.

Writes become visible to the other ranks of the node at :meth:`NodeShared.sync` (a memory barrier plus a node
barrier, the MPI "unified memory model" recipe), which :meth:`assemble_rows` and :meth:`sync` both perform.
"""

from __future__ import annotations

import atexit
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from hpcfit.runtime.comm import Comm
from hpcfit.runtime.log import logger


class NodeShared:
    """Allocator of node-shared arrays for one communicator (see the module docstring).

    ``ranks_per_node`` (tests only; default from ``HPCFIT_RANKS_PER_NODE``) groups consecutive ranks into pretend
    nodes instead of asking MPI which ranks share memory, so the cross-node assembly can be exercised on one machine.
    """

    def __init__(self, comm: Comm, *, ranks_per_node: int | None = None):
        self.comm = comm
        self._windows: list[Any] = []
        self._arrays: list[np.ndarray] = []
        self.node: Any = None  # mpi4py communicator of this rank's node
        self.leaders: Any = None  # mpi4py communicator of the node leaders (None on other ranks)
        self.node_of_rank: list[int] = [0] * comm.size
        mpi = comm.mpi
        if mpi is None:
            return
        from mpi4py import MPI

        self._MPI = MPI
        if ranks_per_node is None and os.environ.get("HPCFIT_RANKS_PER_NODE", "").isdigit():
            ranks_per_node = int(os.environ["HPCFIT_RANKS_PER_NODE"]) or None
        if ranks_per_node:
            self.node = mpi.Split(color=comm.rank // ranks_per_node, key=comm.rank)
        else:
            self.node = mpi.Split_type(MPI.COMM_TYPE_SHARED, key=comm.rank)
        is_leader = self.node.Get_rank() == 0
        self.leaders = mpi.Split(color=0 if is_leader else MPI.UNDEFINED, key=comm.rank)
        if self.leaders == MPI.COMM_NULL:
            self.leaders = None
        # node index of every rank: the leaders number the nodes, then each node learns its number
        node_id = self.leaders.Get_rank() if self.leaders is not None else None
        node_id = self.node.bcast(node_id, root=0)
        self.node_of_rank = mpi.allgather(node_id)
        atexit.register(self._free_at_exit)

    @property
    def n_nodes(self) -> int:
        return max(self.node_of_rank) + 1

    # ------------------------------------------------------------------------------------------------ allocation
    def array(self, shape: Sequence[int], dtype: Any, *, fill: float | None = None) -> np.ndarray:
        """A new node-shared array (collective). ``fill`` sets every element (done by the node's rank 0)."""
        shape = tuple(int(s) for s in shape)
        dtype = np.dtype(dtype)
        if self.node is None:
            out = np.empty(shape, dtype)
            if fill is not None:
                out.fill(fill)
            return out
        MPI = self._MPI
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        mine = max(nbytes, 1) if self.node.Get_rank() == 0 else 0
        win = MPI.Win.Allocate_shared(mine, dtype.itemsize, comm=self.node)
        win.Lock_all(MPI.MODE_NOCHECK)  # one passive epoch for the window's life: Sync() orders loads/stores
        buffer, _ = win.Shared_query(0)
        out = np.ndarray(shape, dtype=dtype, buffer=memoryview(buffer)[:nbytes] if nbytes else None)
        if nbytes == 0:
            out = np.empty(shape, dtype)
        self._windows.append(win)
        self._arrays.append(out)
        if fill is not None and self.node.Get_rank() == 0:
            out.fill(fill)
        self.sync()
        return out

    def sync(self) -> None:
        """Make every rank's writes to the shared arrays visible to the other ranks of its node (collective)."""
        if self.node is None:
            return
        for win in self._windows:
            win.Sync()
        self.node.Barrier()
        for win in self._windows:
            win.Sync()

    # -------------------------------------------------------------------------------------------------- assembly
    def assemble_rows(self, array: np.ndarray, bands: Sequence[tuple[int, int]]) -> None:
        """Complete every node's copy of ``array`` after rank r filled rows ``bands[r]`` of its node's copy
        (collective). Within a node nothing moves; across nodes the leaders exchange their nodes' rows."""
        if self.node is None:
            return
        self.sync()
        if self.n_nodes > 1 and self.leaders is not None:
            self._exchange(array, bands)
        self.sync()

    def _exchange(self, array: np.ndarray, bands: Sequence[tuple[int, int]]) -> None:
        MPI = self._MPI
        row_bytes = int(np.prod(array.shape[1:], dtype=np.int64)) * array.dtype.itemsize
        by_node: list[list[int]] = [[] for _ in range(self.n_nodes)]
        for rank, node in enumerate(self.node_of_rank):
            by_node[node].append(rank)
        me = self.node_of_rank[self.comm.rank]
        send = np.concatenate([array[bands[r][0]:bands[r][1]].reshape(-1).view(np.uint8) for r in by_node[me]]) \
            if by_node[me] else np.empty(0, np.uint8)
        counts = np.array([sum(bands[r][1] - bands[r][0] for r in ranks) * row_bytes for ranks in by_node],
                          dtype=np.int64)
        if counts.max(initial=0) >= 2**31:
            raise ValueError("a node's share of a shared array exceeds 2 GiB: split it before assembling")
        displs = np.concatenate([[0], np.cumsum(counts)[:-1]])
        recv = np.empty(int(counts.sum()), np.uint8)
        self.leaders.Allgatherv([send, MPI.BYTE], [recv, (counts, displs), MPI.BYTE])
        for node, ranks in enumerate(by_node):
            if node == me:
                continue
            offset = int(displs[node])
            for r in ranks:
                a, b = bands[r]
                size = (b - a) * row_bytes
                array[a:b] = recv[offset:offset + size].view(array.dtype).reshape((b - a,) + array.shape[1:])
                offset += size

    # ------------------------------------------------------------------------------------------------- release
    def free(self) -> None:
        """Release every window and the node communicators (collective). The arrays must not be used after."""
        if self.node is None:
            return
        self.node.Barrier()
        for win in self._windows:
            win.Unlock_all()
            win.Free()
        self._windows.clear()
        self._arrays.clear()
        if self.leaders is not None:
            self.leaders.Free()
        self.node.Free()
        self.node = None
        self.leaders = None

    def _free_at_exit(self) -> None:
        # Normal interpreter exit before free() (e.g. a run that stopped early): release the windows before
        # mpi4py finalises MPI, which runs after this handler (atexit is last in, first out).
        if self.node is not None and self._windows:
            try:
                self.free()
            except Exception as exc:  # noqa: BLE001 - best effort at exit
                logger.warning(f"could not free the node-shared windows at exit: {exc}")
