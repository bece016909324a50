"""File-system traffic of this process, from ``/proc/self/io`` (Linux), for the output's provenance.

Two pairs of counters, and which one is the honest measure of what a job asks of the file system:

* ``rchar`` / ``wchar``: bytes handed to ``read``/``pread``/``write``/``pwrite`` (and their vector forms) by this
  process, whether the kernel then found them in its page cache or not. MPI-IO (ROMIO's POSIX drivers) and HDF5
  go through these calls, so they count every byte hpcfit asks of the file system — the figure that costs on a
  parallel file system, where a client's page cache rarely saves a round trip to the servers. They also count
  bytes through pipes and sockets (log lines on stderr; MPI between nodes over TCP: not MPI shared memory, which
  does not use system calls) and **not** pages touched through a memory map. hpcfit reads its frames with
  ``pread`` so that they are counted.
* ``read_bytes`` / ``write_bytes``: bytes the process caused the block layer to fetch or to be written back —
  0 for a read served from the page cache, and 0 on file systems without a block device (tmpfs, NFS, Lustre
  clients), so they describe the local disk's cache state more than the job's demand.

``io_read_bytes`` / ``io_written_bytes`` are therefore rchar/wchar; the storage counters are recorded beside them.
Where the OS has no ``/proc/self/io`` every figure is NaN and ``io_note`` says why.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

PROC_IO = "/proc/self/io"
COUNTERS = ("rchar", "wchar", "read_bytes", "write_bytes")


@dataclass(frozen=True)
class IoSnapshot:
    """The counters at one moment (NaN where the OS does not have them)."""

    rchar: float
    wchar: float
    read_bytes: float
    write_bytes: float

    @property
    def available(self) -> bool:
        return not math.isnan(self.rchar)

    def __sub__(self, earlier: "IoSnapshot") -> "IoSnapshot":
        return IoSnapshot(*(getattr(self, c) - getattr(earlier, c) for c in COUNTERS))

    def __add__(self, other: "IoSnapshot") -> "IoSnapshot":
        return IoSnapshot(*(getattr(self, c) + getattr(other, c) for c in COUNTERS))


ZERO = IoSnapshot(0.0, 0.0, 0.0, 0.0)
MISSING = IoSnapshot(math.nan, math.nan, math.nan, math.nan)
NOTE = ("rchar/wchar of /proc/self/io: bytes asked of the kernel by read/write system calls (page-cache hits "
        "included; pipes too, memory-mapped pages not); storage: read_bytes/write_bytes (page-cache misses and "
        "writeback only)")
NOTE_MISSING = "/proc/self/io is not available on this OS: file-system traffic not measured (NaN)"


def snapshot(path: str = PROC_IO) -> IoSnapshot:
    """The process's counters now; all NaN where the file does not exist or cannot be parsed."""
    try:
        with open(path) as fh:
            values = dict(line.split(":", 1) for line in fh if ":" in line)
        return IoSnapshot(*(float(int(values[c])) for c in COUNTERS))
    except (OSError, KeyError, ValueError):
        return MISSING


def traffic_attrs(deltas: list[IoSnapshot], prefix: str = "io") -> dict[str, object]:
    """Attributes for one stretch of a run: ``<prefix>_read_bytes`` / ``_written_bytes`` (rchar / wchar summed
    over ranks), the per-rank arrays, and the storage counters' sums. ``deltas``: one per rank."""
    def total(name: str) -> float:
        values = [getattr(d, name) for d in deltas]
        return math.nan if any(math.isnan(v) for v in values) else float(sum(values))

    def per_rank(name: str) -> list[float]:
        return [getattr(d, name) for d in deltas]

    return {
        f"{prefix}_read_bytes": total("rchar"),
        f"{prefix}_written_bytes": total("wchar"),
        f"{prefix}_read_bytes_per_rank": per_rank("rchar"),
        f"{prefix}_written_bytes_per_rank": per_rank("wchar"),
        f"{prefix}_storage_read_bytes": total("read_bytes"),
        f"{prefix}_storage_written_bytes": total("write_bytes"),
    }


def note(deltas: list[IoSnapshot]) -> str:
    return NOTE if all(d.available for d in deltas) else NOTE_MISSING
