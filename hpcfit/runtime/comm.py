"""The communicator layer: one object passed explicitly to the engine and the jobs' collective steps.

``MPIComm`` wraps an mpi4py communicator when the process was launched by an MPI launcher (mpiexec, mpirun,
srun); ``SerialComm`` is a stand-in with the same methods for a plain ``python`` run, where every collective
is the identity. Science code never sees either: only the engine and the jobs' collective write steps do.
"""

from __future__ import annotations

import os
import socket
import time
from typing import Any, Sequence

import numpy as np

# Environment variables set by the common launchers (MPICH/Hydra, Open MPI, PMIx, Slurm's PMI2).
_LAUNCHER_VARS = ("PMI_RANK", "PMI_SIZE", "PMIX_RANK", "OMPI_COMM_WORLD_SIZE", "MPI_LOCALNRANKS")

_NAP_SECONDS = 0.0005
_REDUCE_OPS = {"sum", "max", "min", "land", "lor"}


def launched_under_mpi() -> bool:
    """True when an MPI launcher started this process (so mpi4py must be used)."""
    forced = os.environ.get("HPCFIT_MPI", "").lower()
    if forced in ("0", "off", "no", "false"):
        return False
    if forced in ("1", "on", "yes", "true"):
        return True
    return any(var in os.environ for var in _LAUNCHER_VARS)


def launcher_size() -> int:
    """The number of ranks the launcher says it started (1 when unknown)."""
    for var in ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "SLURM_NTASKS"):
        value = os.environ.get(var)
        if value and value.isdigit():
            return int(value)
    return 1


class Comm:
    """Interface shared by the MPI and serial communicators."""

    rank: int
    size: int

    @property
    def is_root(self) -> bool:
        return self.rank == 0

    @property
    def host(self) -> str:
        return socket.gethostname()

    @property
    def mpi(self) -> Any:
        """The underlying mpi4py communicator, or None in a serial run."""
        return None

    def describe(self) -> str:
        """'rank r of N on host' for messages."""
        return f"rank {self.rank} of {self.size} on {self.host}"

    # Collectives: subclasses implement them.
    def barrier(self) -> None: ...
    def idle_barrier(self) -> None: ...
    def bcast(self, obj: Any, root: int = 0) -> Any: ...
    def gather(self, obj: Any, root: int = 0) -> list[Any] | None: ...
    def allgather(self, obj: Any) -> list[Any]: ...
    def allreduce(self, value: Any, op: str = "sum") -> Any: ...
    def allreduce_array(self, array: np.ndarray, op: str = "sum") -> np.ndarray: ...
    def alltoallv(self, send: np.ndarray, send_counts: Sequence[int]) -> np.ndarray: ...
    def exscan_sum(self, value: int) -> int: ...
    def abort(self, code: int = 1) -> None: ...
    def dup(self) -> "Comm": ...
    def free(self) -> None: ...
    def thread_safe(self) -> bool:
        """True when a helper thread may make MPI calls while the main thread makes its own."""
        return True
    def split_shared(self) -> "Comm": ...


class SerialComm(Comm):
    """A one-rank communicator: collectives return their input."""

    rank = 0
    size = 1

    def barrier(self) -> None:
        return None

    def idle_barrier(self) -> None:
        return None

    def bcast(self, obj: Any, root: int = 0) -> Any:
        return obj

    def gather(self, obj: Any, root: int = 0) -> list[Any] | None:
        return [obj]

    def allgather(self, obj: Any) -> list[Any]:
        return [obj]

    def allreduce(self, value: Any, op: str = "sum") -> Any:
        _check_op(op)
        return value

    def allreduce_array(self, array: np.ndarray, op: str = "sum") -> np.ndarray:
        _check_op(op)
        return np.array(array, copy=True)

    def alltoallv(self, send: np.ndarray, send_counts: Sequence[int]) -> np.ndarray:
        return np.array(send, copy=True)

    def exscan_sum(self, value: int) -> int:
        return 0

    def abort(self, code: int = 1) -> None:
        os._exit(code)

    def dup(self) -> "SerialComm":
        return self

    def free(self) -> None:
        return None

    def split_shared(self) -> "SerialComm":
        return self


class MPIComm(Comm):
    """A communicator backed by mpi4py."""

    def __init__(self, mpi_comm: Any):
        from mpi4py import MPI

        self._MPI = MPI
        self._comm = mpi_comm
        self.rank = mpi_comm.Get_rank()
        self.size = mpi_comm.Get_size()
        self._ops = {"sum": MPI.SUM, "max": MPI.MAX, "min": MPI.MIN, "land": MPI.LAND, "lor": MPI.LOR}

    @property
    def mpi(self) -> Any:
        return self._comm

    def barrier(self) -> None:
        self._comm.Barrier()

    def bcast(self, obj: Any, root: int = 0) -> Any:
        return self._comm.bcast(obj, root=root)

    def gather(self, obj: Any, root: int = 0) -> list[Any] | None:
        return self._comm.gather(obj, root=root)

    def allgather(self, obj: Any) -> list[Any]:
        return self._comm.allgather(obj)

    def allreduce(self, value: Any, op: str = "sum") -> Any:
        _check_op(op)
        return self._comm.allreduce(value, op=self._ops[op])

    def allreduce_array(self, array: np.ndarray, op: str = "sum") -> np.ndarray:
        _check_op(op)
        send = np.ascontiguousarray(array)
        recv = np.empty_like(send)
        self._comm.Allreduce(send, recv, op=self._ops[op])
        return recv

    def alltoallv(self, send: np.ndarray, send_counts: Sequence[int]) -> np.ndarray:
        """Exchange rows of a 2-D (or 1-D) array: ``send_counts[r]`` leading rows go to rank r, in order."""
        send = np.ascontiguousarray(send)
        row_items = int(np.prod(send.shape[1:], dtype=np.int64)) if send.ndim > 1 else 1
        counts = np.asarray(send_counts, dtype=np.int64)
        recv_counts = np.empty_like(counts)
        self._comm.Alltoall(counts, recv_counts)
        recv = np.empty((int(recv_counts.sum()),) + send.shape[1:], dtype=send.dtype)
        mpi_type = self._MPI.BYTE
        itemsize = send.dtype.itemsize * row_items
        sc, rc = counts * itemsize, recv_counts * itemsize
        sd = np.concatenate([[0], np.cumsum(sc)[:-1]])
        rd = np.concatenate([[0], np.cumsum(rc)[:-1]])
        if max(sc.max(initial=0), rc.max(initial=0), sd.max(initial=0), rd.max(initial=0)) >= 2**31:
            raise ValueError("alltoallv message above 2 GiB: exchange in smaller rounds")
        self._comm.Alltoallv([send.view(np.uint8).reshape(-1), (sc, sd), mpi_type],
                             [recv.view(np.uint8).reshape(-1), (rc, rd), mpi_type])
        return recv

    def exscan_sum(self, value: int) -> int:
        result = self._comm.exscan(int(value), op=self._MPI.SUM)
        return 0 if result is None else int(result)

    def abort(self, code: int = 1) -> None:
        self._comm.Abort(code)

    def dup(self) -> "MPIComm":
        return MPIComm(self._comm.Dup())

    def free(self) -> None:
        self._comm.Free()

    def thread_safe(self) -> bool:
        return self._MPI.Query_thread() >= self._MPI.THREAD_MULTIPLE

    def idle_barrier(self) -> None:
        """A barrier that sleeps while waiting (used where ranks may wait long, e.g. for the slowest rank)."""
        request = self._comm.Ibarrier()
        while not request.Test():
            time.sleep(_NAP_SECONDS)

    def split_shared(self) -> "MPIComm":
        return MPIComm(self._comm.Split_type(self._MPI.COMM_TYPE_SHARED))


def _check_op(op: str) -> None:
    if op not in _REDUCE_OPS:
        raise ValueError(f"unknown reduction '{op}' (allowed: {', '.join(sorted(_REDUCE_OPS))})")


class MPIUnavailableError(RuntimeError):
    """Launched by an MPI launcher with several ranks but mpi4py cannot be imported."""


def world_comm() -> Comm:
    """The communicator of the whole run: MPI when launched under MPI, serial otherwise."""
    if not launched_under_mpi():
        return SerialComm()
    try:
        from mpi4py import MPI
    except ImportError as exc:
        if launcher_size() > 1:
            raise MPIUnavailableError(
                f"started by an MPI launcher with {launcher_size()} ranks, but mpi4py cannot be imported "
                f"({exc}); every rank would run the whole job. Install mpi4py (make setup) or run without mpiexec."
            ) from exc
        return SerialComm()
    return MPIComm(MPI.COMM_WORLD)

