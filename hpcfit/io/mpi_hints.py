"""MPI-IO hints for the output file (``run.mpi_info``): checked, defaulted on Lustre, turned into an ``MPI.Info``.

Hints are strings handed to ``MPI_File_open`` through the HDF5 ``mpio`` driver (``h5py.File(..., driver="mpio",
comm=..., info=...)``). The layout hints (``striping_factor``, ``striping_unit``) take effect only when the file is
created, which is always the case here (the output is written as a new ``<name>.incomplete``), and only with an
MPI-IO driver for Lustre (ROMIO's ``ad_lustre``, OMPIO's ``fs/lustre``); elsewhere they are ignored. See
docs/cluster.md.

``run.mpi_info: auto`` (the default) gives no hints, except on Lustre, where a file of one stripe (Lustre's
default) would make one storage target the bottleneck of every job: there ``striping_unit = 4 MiB`` and
``striping_factor = min(ranks, max(16, ceil(size / 512 MiB)), 64)``, with ``size`` the job's estimate of its
output (``Job.estimate_output_bytes``): 16 storage targets for files up to 8 GiB, one more per 512 MiB beyond, at
most 64 — in the spirit of the sites' guidance of more stripes for larger shared files (NERSC: 8 for 1–10 GB,
24 for 10–100 GB, 72 above), never more stripes than ranks writing. A mapping is used as given (no defaults added);
``none`` passes no hints anywhere.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

# name -> what its value must be: "count" (integer >= 1), "bytes" (integer >= 1), "switch", or "text"
KNOWN_HINTS: dict[str, str] = {
    "striping_factor": "count", "striping_unit": "bytes", "start_iodevice": "count",
    "cb_nodes": "count", "cb_buffer_size": "bytes", "cb_config_list": "text",
    "ind_rd_buffer_size": "bytes", "ind_wr_buffer_size": "bytes",
    "romio_cb_write": "switch", "romio_cb_read": "switch", "romio_ds_write": "switch", "romio_ds_read": "switch",
    "romio_no_indep_rw": "bool", "romio_lustre_co_ratio": "count", "romio_lustre_coll_threshold": "bytes",
    "collective_buffering": "bool", "access_style": "text",
}
SWITCH = ("enable", "disable", "automatic")
BOOL = ("true", "false")
LUSTRE_MIN_STRIPES = 16  # what auto asks for (at most one per rank) whatever the size
LUSTRE_MAX_STRIPES = 64
LUSTRE_BYTES_PER_STRIPE = 512 << 20  # beyond 16 stripes, one more per this many bytes of output
LUSTRE_STRIPE_UNIT = 4 << 20


def check_hints(hints: dict[str, Any], report: Callable[[str, str, Any], None], key: str = "run.mpi_info") -> None:
    """Report bad hints: names must be MPI-IO hint names (lower-case words); values strings or integers; known
    hints get their own check (``striping_factor: 0``, ``romio_cb_write: maybe`` are errors)."""
    for name, value in hints.items():
        where = f"{key}.{name}"
        if not isinstance(name, str) or not name.replace("_", "").isalnum() or name != name.lower():
            report(where, f"'{name}' is not an MPI-IO hint name (lower-case letters, digits and '_')",
                   sorted(KNOWN_HINTS))
            continue
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            report(where, f"must be a string or an integer, not {type(value).__name__} {value!r}", None)
            continue
        kind = KNOWN_HINTS.get(name)
        text = str(value).strip().lower()
        if kind in ("count", "bytes"):
            if not text.isdigit() or int(text) < 1:
                report(where, f"must be an integer >= 1{' (bytes)' if kind == 'bytes' else ''}, not {value!r}", None)
        elif kind == "switch" and text not in SWITCH:
            report(where, f"must be one of {', '.join(SWITCH)}, not {value!r}", list(SWITCH))
        elif kind == "bool" and text not in BOOL:
            report(where, f"must be true or false, not {value!r}", list(BOOL))


def file_system_type(path: str | Path, mounts: str = "/proc/mounts") -> str:
    """The type of the file system holding ``path`` (from /proc/mounts: longest mount point above it), or ''."""
    target = os.path.realpath(path)
    best, kind = "", ""
    try:
        with open(mounts) as fh:
            for line in fh:
                parts = line.split()
                if len(parts) < 3:
                    continue
                mount = parts[1].replace("\\040", " ")
                inside = target == mount or target.startswith(mount.rstrip("/") + "/")
                if inside and len(mount) > len(best):
                    best, kind = mount, parts[2]
    except OSError:
        return ""
    return kind


def lustre_stripes(ranks: int, expected_bytes: int | None = None) -> int:
    """The stripe count ``auto`` asks for on Lustre: min(ranks, max(16, ceil(bytes / 512 MiB)), 64)."""
    by_size = -(-int(expected_bytes or 0) // LUSTRE_BYTES_PER_STRIPE)
    return max(1, min(ranks, max(LUSTRE_MIN_STRIPES, min(by_size, LUSTRE_MAX_STRIPES))))


def resolve_hints(setting: Any, output: str | Path, ranks: int,
                  expected_bytes: int | None = None) -> tuple[dict[str, str], str]:
    """(hints to pass, where they came from) for ``run.mpi_info``: a mapping as given, ``none``, or ``auto``
    (``expected_bytes``: the job's estimate of its output size, which sets the stripe count on Lustre)."""
    if isinstance(setting, dict):
        return {k: str(v) for k, v in setting.items()}, "run.mpi_info"
    if setting == "none" or setting is None:
        return {}, "none (run.mpi_info: none)"
    folder = Path(output).resolve().parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    fs_type = file_system_type(folder)
    if fs_type == "lustre":
        return ({"striping_factor": str(lustre_stripes(ranks, expected_bytes)),
                 "striping_unit": str(LUSTRE_STRIPE_UNIT)}, "auto: Lustre default")
    return {}, f"auto: none ({fs_type or 'unknown'} file system)"


def mpi_info(hints: dict[str, str]) -> Any:
    """An ``MPI.Info`` holding ``hints`` (``MPI.INFO_NULL`` for none)."""
    from mpi4py import MPI

    if not hints:
        return MPI.INFO_NULL
    info = MPI.Info.Create()
    for name, value in hints.items():
        info.Set(name, str(value))
    return info
