"""``hpcfit inspect FILE``: a readable summary of an output file.

Shows the provenance (job, when, where, how many ranks, software versions), every group and dataset with its
shape, type and unit, and counts that tell whether the run went well (fit status codes, NaNs in parameter maps,
rejected frames), without loading large datasets into memory at once.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

_STATUS_NAMES = {0: "converged", 1: "converged with warning", 2: "failed"}
_PROVENANCE_ORDER = ("job", "hpcfit_version", "start_time", "end_time", "wall_seconds", "n_ranks", "hosts",
                     "output_mode", "command_line", "config_path", "python_version", "numpy_version",
                     "astropy_version", "scipy_version", "h5py_version", "hdf5_version", "h5py_parallel",
                     "mpi4py_version", "mpi_library")
_BLOCK = 1 << 22  # elements read at a time when counting


def inspect_file(path: str | Path, *, show_config: bool = False) -> str:
    """Return the summary text of an hpcfit output file."""
    path = Path(path)
    lines = [f"{path}  ({path.stat().st_size / 1e6:.1f} MB)"]
    with h5py.File(path, "r") as h5:
        attrs = dict(h5.attrs)
        lines.append("provenance:")
        for key in _PROVENANCE_ORDER:
            if key in attrs:
                lines.append(f"  {key:16s} {_text(attrs[key])}")
        extra = sorted(k for k in attrs if k not in _PROVENANCE_ORDER and k not in ("config",))
        for key in extra:
            lines.append(f"  {key:16s} {_text(attrs[key])}")
        if show_config and "config" in attrs:
            lines.append("config:")
            lines.extend("  " + line for line in _text(attrs["config"]).splitlines())
        lines.append("contents:")
        h5.visititems(lambda name, obj: lines.extend(_describe(name, obj)))
        if "status" in h5 and isinstance(h5["status"], h5py.Dataset):
            lines.append("fit status:")
            counts = _value_counts(h5["status"])
            total = sum(counts.values())
            for code, count in sorted(counts.items()):
                name = _STATUS_NAMES.get(code, f"code {code}")
                lines.append(f"  {code} {name:24s} {count:>10,} ({100 * count / max(total, 1):.1f}%)")
    return "\n".join(lines)


def _describe(name: str, obj: h5py.HLObject) -> list[str]:
    depth = name.count("/")
    indent = "  " * (depth + 1)
    leaf = name.rsplit("/", 1)[-1]
    if isinstance(obj, h5py.Group):
        return [f"{indent}{leaf}/"]
    if _text(obj.attrs.get("CLASS", "")) == "DIMENSION_SCALE":
        # a named dimension (hpcfit.io.dims): its length, and no NaN count (a pure dimension has no values)
        return [f"{indent}{leaf:24s} {obj.shape[0]:>20}  (dimension)"]
    unit = obj.attrs.get("unit")
    unit_text = f"  [{_text(unit)}]" if unit is not None and _text(unit) not in ("", "None") else ""
    extra = ""
    if obj.dtype.kind == "f" and obj.size:
        n_nan = _count_nan(obj)
        if n_nan:
            extra = f"  ({n_nan:,} NaN)"
    shape = " x ".join(str(s) for s in obj.shape) or "scalar"
    return [f"{indent}{leaf:24s} {shape:>20s}  {obj.dtype}{unit_text}{extra}"]


def _count_nan(dset: h5py.Dataset) -> int:
    flat_rows = dset.shape[0] if dset.ndim else 1
    row = int(np.prod(dset.shape[1:])) if dset.ndim > 1 else 1
    step = max(1, _BLOCK // max(row, 1))
    total = 0
    for start in range(0, flat_rows, step):
        block = dset[start:start + step] if dset.ndim else dset[()]
        total += int(np.count_nonzero(np.isnan(block)))
    return total


def _value_counts(dset: h5py.Dataset) -> dict[int, int]:
    counts: dict[int, int] = {}
    flat = dset[()].ravel() if dset.size <= _BLOCK else None
    blocks = [flat] if flat is not None else (dset[s:s + 1024].ravel() for s in range(0, dset.shape[0], 1024))
    for block in blocks:
        values, n = np.unique(block, return_counts=True)
        for v, c in zip(values.tolist(), n.tolist()):
            counts[int(v)] = counts.get(int(v), 0) + int(c)
    return counts


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.ndarray):
        return ", ".join(_text(v) for v in value.tolist())
    return str(value)
