"""One file written by every rank at once: rank 0's head, then each rank's bytes in rank order, then padding.

Used for files whose rows every rank already holds in its final encoding (gridfit's FITS results table): rank r's
bytes go at ``len(head) + sum of the lengths of ranks < r`` (an exclusive scan), in one collective MPI-IO write
(``Write_at_all``: safe on any file system, NFS included, where plain ``pwrite`` from several nodes is not), so
nothing is gathered on one rank. The last rank appends the padding (``pad_to``, ``pad_byte``), so every byte of
the file is written by someone (no reliance on what a file system fills a hole with).

The file is written under a temporary name in the target's directory and renamed (by rank 0, after every rank
closed it) only when complete: a reader never sees a partial file, and a failed run leaves none.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

import numpy as np


def temporary_name(path: Path) -> Path:
    """A unique hidden name beside ``path`` (same directory: the final rename stays within one file system)."""
    return path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")


def padding(total: int, pad_to: int, pad_byte: bytes = b"\0") -> bytes:
    """The bytes that bring ``total`` up to a multiple of ``pad_to``."""
    return pad_byte * (-total % pad_to)


def write_in_rank_order(comm: Any, path: str | Path, data: bytes, *, head: bytes = b"", pad_to: int = 1,
                        pad_byte: bytes = b"\0") -> Path:
    """Collective: ``head`` (rank 0's; ignored elsewhere), every rank's ``data`` in rank order, padding; under a
    temporary name renamed to ``path`` when complete. Returns ``path``."""
    from hpcfit.runtime.errors import on_fatal

    path = Path(path)
    if comm.size == 1 or comm.mpi is None:
        body = head + data
        tmp = temporary_name(path)
        remove = on_fatal(lambda: tmp.unlink(missing_ok=True))
        try:
            with open(tmp, "wb") as f:
                f.write(body + padding(len(body), pad_to, pad_byte))
            os.replace(tmp, path)
        finally:
            remove()
        return path
    from mpi4py import MPI

    tmp = Path(comm.bcast(str(temporary_name(path)) if comm.is_root else None))
    head = head if comm.is_root else b""
    mine = len(head) + len(data)
    before = comm.exscan_sum(mine)
    total = comm.allreduce(mine, "sum")
    buffer = head + data
    if comm.rank == comm.size - 1:
        buffer += padding(total, pad_to, pad_byte)
    remove = on_fatal(lambda: tmp.unlink(missing_ok=True)) if comm.is_root else None
    try:
        fh = MPI.File.Open(comm.mpi, str(tmp), MPI.MODE_WRONLY | MPI.MODE_CREATE)
        try:
            fh.Write_at_all(before, np.frombuffer(buffer, dtype=np.uint8) if buffer else np.empty(0, np.uint8))
        finally:
            fh.Close()
        if comm.is_root:
            os.replace(tmp, path)
        comm.barrier()  # the final name exists on every rank's return
    finally:
        if remove is not None:
            remove()
    return path
