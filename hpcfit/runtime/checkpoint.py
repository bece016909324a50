"""Checkpoints of completed work items: what makes resume, job-array slices and merge possible.

Each completed item's result is saved as its own file, written to a temporary name and renamed, as soon as the
item finishes (so "flushing the checkpoint" is continuous: a kill loses at most the items in progress and, with
``run.checkpoint_async``, the few finished ones its writer thread has not saved yet: ``checkpoint_writer``). The files
of one run — or of one slice of a job array — live in a directory beside the output::

    <output>.parts/slice-003-of-008/manifest.json      fingerprint of the config and plan, the slice's items
    <output>.parts/slice-003-of-008/item-000042.pkl    one per completed item
    <output>.parts/slice-003-of-008/COMPLETE           written when every item of the slice is done

A resumed run skips the items found here; a merge loads every slice's items (the items of a staged plan's earlier
stages, which every slice computes, from the first slice) and runs the job's normal write step, so the final file is the same as a single uninterrupted run. The fingerprint (a hash of the job's config,
without the ``run`` section, and of the plan) guards against resuming or merging with a changed config.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

from hpcfit._version import __version__

_SLICE_DIR = re.compile(r"^slice-(\d+)-of-(\d+)$")
_ITEM_FILE = re.compile(r"^item-(\d+)\.pkl$")


def parts_directory(output: str | Path) -> Path:
    output = Path(output)
    return output.with_name(output.name + ".parts")


def slice_items(n_items: int, k: int, n: int) -> range:
    """Item indices of slice k of n: contiguous blocks (so redshift bands / tiles stay together)."""
    return range(k * n_items // n, (k + 1) * n_items // n)


def fingerprint(job: str, cfg: dict[str, Any], plan_items: Iterable[Any], stages: list[int] | None = None) -> str:
    """A hash of what determines the results: the job's keys (of `run` only `blas_threads`), the work items and,
    for a plan of several stages, their item counts (a single-stage plan hashes as it always did)."""
    relevant = {key: value for key, value in cfg.items() if key != "run"}
    items = [(item.index, item.label, item.size) for item in plan_items]
    described: dict[str, Any] = {"job": job, "config": relevant, "items": items}
    if stages and len(stages) > 1:
        described["stages"] = list(stages)
    threads = (cfg.get("run") or {}).get("blas_threads", 1)
    if threads != 1:
        # The BLAS thread count changes the last bits of the results: slices and resumes must share it. Only a
        # value other than the default is hashed, so checkpoints written before the option existed stay valid.
        described["blas_threads"] = threads
    text = json.dumps(described, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


class CheckpointMismatch(Exception):
    """The checkpoint on disk was written for another config or plan."""


@dataclass
class SliceStore:
    """The checkpoint directory of one slice."""

    directory: Path
    k: int
    n: int

    @classmethod
    def for_slice(cls, output: str | Path, k: int, n: int) -> "SliceStore":
        return cls(parts_directory(output) / f"slice-{k:03d}-of-{n:03d}", k, n)

    @property
    def manifest_path(self) -> Path:
        return self.directory / "manifest.json"

    # -- rank 0 -------------------------------------------------------------------------------------------------
    def start(self, print_fn: Any, *, job: str, fingerprint_value: str, items: list[int], resume: bool) -> set[int]:
        """Prepare the directory for a run of this slice; return the items already done (when resuming)."""
        if self.directory.exists() and not resume:
            done = self.completed()
            if done:
                print_fn(f"removing the checkpoint of an earlier run ({len(done)} items in {self.directory}); "
                         "use --resume to continue it instead")
            shutil.rmtree(self.directory)
        done: set[int] = set()
        if self.directory.exists():
            self.remove_temporary()  # left by a run that was killed mid-write
            manifest = self.read_manifest()
            if manifest.get("fingerprint") != fingerprint_value:
                raise CheckpointMismatch(
                    f"the checkpoint in {self.directory} was written for a different config or plan "
                    f"(fingerprint {manifest.get('fingerprint')} != {fingerprint_value}): refusing to resume. "
                    "Run without --resume to start again, or restore the config it was written with.")
            done = self.completed() & set(items)
        self.directory.mkdir(parents=True, exist_ok=True)
        _write_json(self.manifest_path, {"job": job, "fingerprint": fingerprint_value, "slice": [self.k, self.n],
                                         "items": items, "hpcfit_version": __version__})
        (self.directory / "COMPLETE").unlink(missing_ok=True)
        return done

    def read_manifest(self) -> dict[str, Any]:
        try:
            return json.loads(self.manifest_path.read_text())
        except (OSError, ValueError):
            return {}

    def completed(self) -> set[int]:
        if not self.directory.is_dir():
            return set()
        return {int(m.group(1)) for p in self.directory.iterdir() if (m := _ITEM_FILE.match(p.name))}

    def mark_complete(self) -> None:
        (self.directory / "COMPLETE").write_text("all items of this slice are done\n")

    def is_complete(self) -> bool:
        return (self.directory / "COMPLETE").exists()

    # -- any rank -----------------------------------------------------------------------------------------------
    def item_path(self, index: int) -> Path:
        return self.directory / f"item-{index:06d}.pkl"

    def save(self, index: int, result: Any, before_rename: Callable[[], None] | None = None) -> None:
        """Write one item's result atomically: a temporary file, fsync, rename (``before_rename`` runs between
        the last two: the fault-injection point of ``hpcfit.runtime.checkpoint_writer``). Any thread may call it,
        for distinct items."""
        path = self.item_path(index)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            with open(tmp, "wb") as handle:
                pickle.dump(result, handle, protocol=pickle.HIGHEST_PROTOCOL)
                handle.flush()
                os.fsync(handle.fileno())
            if before_rename is not None:
                before_rename()
            os.replace(tmp, path)
        except BaseException as exc:
            tmp.unlink(missing_ok=True)  # a full disk must not be left fuller by a piece nobody will read
            if isinstance(exc, OSError) and exc.filename is None:
                # write() and fsync() do not name the file: the message should (``errors.fatal``)
                raise OSError(exc.errno, exc.strerror, str(path)) from exc
            raise

    def remove_temporary(self) -> None:
        """Remove the temporary pieces of checkpoints being written (``.item-*.pkl.<pid>.tmp``), e.g. those of a
        rank that MPI_Abort ended in the middle of a write."""
        for piece in self.directory.glob(".*.tmp"):
            piece.unlink(missing_ok=True)

    def describe_kept(self) -> str | None:
        """What a failed run leaves for ``--resume``: the completed items in this directory."""
        done = len(self.completed())
        if not done:
            return None
        return f"{done} completed item(s) kept in {self.directory} for --resume"

    def load(self, index: int) -> Any:
        return load_item(self.directory, index)


def load_item(directory: Path, index: int) -> Any:
    """The saved result of one item."""
    with open(directory / f"item-{index:06d}.pkl", "rb") as handle:
        return pickle.load(handle)


def find_slices(output: str | Path) -> list[SliceStore]:
    """Every slice directory beside an output, sorted."""
    base = parts_directory(output)
    if not base.is_dir():
        return []
    stores = []
    for path in sorted(base.iterdir()):
        m = _SLICE_DIR.match(path.name)
        if m and path.is_dir():
            stores.append(SliceStore(path, int(m.group(1)), int(m.group(2))))
    return stores


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_text(json.dumps(data, indent=1))
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
