"""calibrate's survey (``Job.survey``): the headers of the raw files read by every rank before rank 0 plans.

Rank 0 lists the inputs (one directory listing, no ``stat`` per file: ``frames.files_under``) and broadcasts the
FITS paths; each rank reads the headers of a contiguous share of them (``planning.scan``: the few cards planning
needs, ``headercards``), and rank 0 gathers the frame records in path order. The plan made from them is the one a
single process makes (:func:`planning.survey_here`), for any rank count: the records are the same, only who reads
them changes. A file that cannot be read becomes a bad frame as before (its problems name it, and
``on_bad_frame: fail`` reports it with its key); anything else raised while reading a header names the file and
ends the job from whichever rank read it (the engine's ``survey`` stage).
"""

from __future__ import annotations

from typing import Any

from hpcfit.calibrate import planning
from hpcfit.calibrate.planning import Survey
from hpcfit.runtime.checkpoint import slice_items
from hpcfit.runtime.comm import Comm


def survey(cfg: Any, comm: Comm) -> Survey | None:
    """Every rank (collective): the survey on rank 0, None on the other ranks."""
    c = cfg.calibrate
    listing = planning.list_inputs(c) if comm.is_root else None
    paths: list[str] = comm.bcast(listing[0] if listing is not None else None)
    share = slice_items(len(paths), comm.rank, comm.size)
    # (through the module, so that the scaling study's timers on planning.scan see every rank's share)
    frames = planning.scan(paths[share.start:share.stop], planning.scan_options(c)) if len(share) else []
    parts = comm.gather(frames)
    if listing is None:
        return None
    return Survey([frame for part in parts for frame in part], listing[1], listing[2])
