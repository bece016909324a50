"""A small on-disk cache of derived tables: arrays that take a run's set-up time to compute but depend only on a few
inputs (the cosmology's distance table, filter curves read through optional packages, parsed DL07 templates, SSP
grids rebinned onto the model's grids).

Where: ``$HPCFIT_CACHE_DIR``, else ``$XDG_CACHE_HOME/hpcfit``, else ``~/.cache/hpcfit``; ``HPCFIT_CACHE_DIR=off``
turns the cache off (every table is then computed, as before). One entry is one ``<kind>-<hash>.npz`` file holding
pure arrays (never pickles: ``np.load(allow_pickle=False)``), keyed by a hash of every input that determines it —
the caller lists them (data files by path, size and modification time, parameters, library versions, the source
files of the code that computes the entry) and hpcfit's version is always added. A changed input gives another
key, so a stale entry is never read; entries are not deleted (they are small; delete the `.npz` files to reclaim
the space).

Many ranks and jobs may compute and write the same entry at once: each writes a file of its own name and renames
it into place (``os.replace`` is atomic on POSIX file systems, Lustre and GPFS included), so a reader sees a whole
entry or none. An unreadable, truncated or mismatched entry is recomputed (and rewritten); a cache directory that
cannot be written is ignored. Values read from the cache are bit-identical to the ones computed (npz stores the
arrays' bytes), so results do not depend on whether the cache was warm, cold or off.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import uuid
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from hpcfit._version import __version__

ENV_VAR = "HPCFIT_CACHE_DIR"
OFF_VALUES = ("off", "0", "none", "false", "no")
_KEY = "__key__"  # the full key, stored in the entry: a file renamed by hand or a hash prefix clash is a miss
_FORMAT = 1       # bump when the layout of entries changes

Arrays = dict[str, np.ndarray]


def cache_directory() -> Path | None:
    """The cache directory (not created here), or None when the cache is off."""
    setting = os.environ.get(ENV_VAR, "").strip()
    if setting.lower() in OFF_VALUES:
        return None
    if setting:
        return Path(setting).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "hpcfit"


def file_signature(path: str | os.PathLike[str]) -> tuple[str, int, int]:
    """(absolute path, size, modification time in ns): changes when the file is replaced or edited."""
    resolved = Path(path).resolve()
    stat = resolved.stat()
    return str(resolved), stat.st_size, stat.st_mtime_ns


@functools.lru_cache(maxsize=64)
def code_signature(*sources: str) -> tuple[tuple[str, int, int], ...]:
    """``file_signature`` of the source files whose code computes an entry (pass their ``__file__``): an edited
    or reinstalled hpcfit module gives new keys even when the version number stays the same (development)."""
    return tuple(file_signature(source) for source in sources)


@functools.lru_cache(maxsize=32)
def package_version(distribution: str) -> str | None:
    """The installed version of ``distribution`` (from its metadata, without importing it), None if absent: a key
    input for tables an optional package computes or ships."""
    from importlib import metadata

    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def entry_key(kind: str, inputs: Any) -> str:
    """The hex digest of ``kind``, ``inputs`` (nested tuples/lists/dicts of str, numbers, bools, None, bytes and
    numpy arrays), hpcfit's version and the entry format."""
    digest = hashlib.sha256()
    _feed(digest, (kind, _FORMAT, __version__, inputs))
    return digest.hexdigest()


def _feed(digest: Any, value: Any) -> None:
    """Hash ``value`` with its type, so that 1, 1.0, '1' and (1,) give different keys."""
    if isinstance(value, np.ndarray):
        array = np.ascontiguousarray(value)
        digest.update(f"ndarray:{array.dtype.str}:{array.shape}:".encode())
        digest.update(array.tobytes())
    elif isinstance(value, (tuple, list)):
        digest.update(f"{type(value).__name__}:{len(value)}(".encode())
        for item in value:
            _feed(digest, item)
        digest.update(b")")
    elif isinstance(value, Mapping):
        digest.update(f"dict:{len(value)}(".encode())
        for name in sorted(value, key=str):
            _feed(digest, str(name))
            _feed(digest, value[name])
        digest.update(b")")
    elif isinstance(value, bytes):
        digest.update(b"bytes:%d:" % len(value) + value)
    elif value is None or isinstance(value, (str, bool, int, float, np.generic)):
        digest.update(f"{type(value).__name__}:{value!r};".encode())
    else:
        raise TypeError(f"disk cache key: cannot hash a {type(value).__name__} ({value!r}); pass its defining data")


def entry_path(kind: str, inputs: Any) -> Path | None:
    """Where the entry of (kind, inputs) lives (None when the cache is off)."""
    directory = cache_directory()
    return None if directory is None else directory / f"{kind}-{entry_key(kind, inputs)[:32]}.npz"


def load(kind: str, inputs: Any) -> Arrays | None:
    """The stored arrays of (kind, inputs), or None: cache off, no entry, or an entry that cannot be read whole or
    was stored under another key."""
    path = entry_path(kind, inputs)
    if path is None:
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            if _KEY not in data.files or str(data[_KEY]) != entry_key(kind, inputs):
                return None
            return {name: data[name] for name in data.files if name != _KEY}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None  # missing, truncated or corrupt: the caller recomputes (and store() replaces it)


def store(kind: str, inputs: Any, arrays: Mapping[str, np.ndarray]) -> Path | None:
    """Write the entry of (kind, inputs) atomically; returns its path, or None when the cache is off or cannot be
    written (a read-only or full file system is not an error: the run just goes without)."""
    path = entry_path(kind, inputs)
    if path is None:
        return None
    if _KEY in arrays:
        raise ValueError(f"disk cache: '{_KEY}' is a reserved array name")
    objects = [name for name, array in arrays.items() if np.asarray(array).dtype.hasobject]
    if objects:  # they would be pickled, and pickles are never read back (allow_pickle=False)
        raise TypeError(f"disk cache: arrays {objects} hold Python objects; only plain data can be cached")
    temp = path.with_name(f".{path.stem}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(temp, "wb") as handle:
            np.savez(handle, **{_KEY: np.array(entry_key(kind, inputs))}, **arrays)
        os.replace(temp, path)
    except OSError:
        with contextlib.suppress(OSError):
            temp.unlink(missing_ok=True)
        return None
    return path


def cached(kind: str, inputs: Any, compute: Callable[[], Mapping[str, np.ndarray]]) -> Arrays:
    """The arrays of (kind, inputs): read from the cache, or computed by ``compute()`` and stored."""
    found = load(kind, inputs)
    if found is not None:
        return found
    arrays = {name: np.asarray(value) for name, value in compute().items()}
    store(kind, inputs, arrays)
    return arrays


__all__ = ["ENV_VAR", "OFF_VALUES", "cache_directory", "file_signature", "code_signature", "package_version",
           "entry_key", "entry_path", "load", "store", "cached"]
