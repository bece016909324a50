"""Every file under calibrate's inputs accounted for: the frames to plan, and the files not used, with why.

A file under an input (a directory searched recursively, or a glob's matches) is either a frame, which the plan
then uses or rejects (``/rejected``), or it is *skipped* — listed in ``/skipped`` with the reason, counted in the
log, ``validate --plan`` and the run summary:

- ``not FITS``: its name is none of the forms calibrate reads (``fitsforms.FITS_NAMES``: ``.fits``, ``.fit``,
  ``.fts``, their ``.gz``, and ``.fz``);
- ``no image data``: a FITS file with no image HDU holding pixels (tables only, headers only);
- a frame type calibrate does not use: IMAGETYP (and folder) match no bias, dark, flat or science spelling
  (``IMAGETYP 'focus' ...``; ``calibrate.imagetyp`` maps more spellings).

Files that should be frames but cannot be read (not FITS inside although named so, truncated, wrong shape, ...) are
bad frames: ``/rejected``, under ``on_bad_frame``.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from hpcfit.calibrate.kernels import frames as F
from hpcfit.calibrate.kernels.fitsforms import FITS_NAMES, file_form

Report = Callable[..., None]


@dataclass(frozen=True)
class Skipped:
    """A file under the inputs that is not used, and why (a row of ``/skipped``)."""

    name: str
    path: str
    reason: str

    @property
    def category(self) -> str:
        """The reason's leading words, to count skipped files by kind in one log line."""
        if self.reason.startswith("unclassifiable"):
            return "frame type not used"
        return self.reason.split(":")[0].split(" (")[0]


NOT_FITS = f"not FITS: the name ends in none of {', '.join(FITS_NAMES)}"


def find_inputs(inputs: Sequence[str], report: Report) -> tuple[list[Path], list[Skipped]]:
    """(FITS files to scan, sorted and de-duplicated; the other files found, skipped). Each input that holds no
    FITS file is reported at its own key ``calibrate.inputs.<i>``."""
    found: dict[str, Path] = {}
    others: dict[str, Path] = {}
    for i, item in enumerate(inputs):
        files = F.candidate_files(item)
        fits_files = [p for p in files if file_form(p) is not None]
        if not fits_files:
            also = f"; it holds {len(files)} other file(s)" if files else ""
            report(f"calibrate.inputs.{i}", f"'{item}' matches no FITS file ({', '.join(FITS_NAMES)}; directories "
                                            f"are searched recursively){also}")
        for p in fits_files:
            found.setdefault(os.path.abspath(p), p)
        for p in files:
            if file_form(p) is None:
                others.setdefault(os.path.abspath(p), p)
    skipped = [Skipped(others[k].name, str(others[k]), NOT_FITS) for k in sorted(others) if k not in found]
    return [found[k] for k in sorted(found)], skipped


def split_skipped(frames: Sequence[F.Frame]) -> tuple[list[F.Frame], list[Skipped]]:
    """(frames to plan, files that are no frame to use: no image data, a frame type calibrate does not use)."""
    keep = [f for f in frames if not f.skip]
    return keep, [Skipped(f.name, f.path, "; ".join(f.problems)) for f in frames if f.skip]


def summary_line(n_files: int, n_frames: int, skipped: Sequence[Skipped]) -> str:
    """``12 file(s) under the inputs: 10 frame(s), 2 skipped (1 not FITS, 1 no image data)``."""
    counts = Counter(s.category for s in skipped)
    detail = f" ({', '.join(f'{n} {what}' for what, n in sorted(counts.items()))})" if skipped else ""
    return f"{n_files} file(s) under the inputs: {n_frames} frame(s), {len(skipped)} skipped{detail}"


def skipped_lines(skipped: Sequence[Skipped]) -> list[str]:
    return [f"skipped {s.path}: {s.reason}" for s in skipped]


SKIPPED_COLUMNS = [("name", "S"), ("path", "S"), ("reason", "S")]  # /skipped: text columns like /rejected's


def skipped_rows(skipped: Sequence[Skipped]) -> list[tuple[str, str, str]]:
    """The rows of ``/skipped`` (written by the job with ``output.table``, as ``/rejected``)."""
    return [(s.name, s.path, s.reason) for s in skipped]
