"""Rank 0's plan of a calibrate run, from the config and the frames' headers only (no pixel is read).

Steps: expand ``inputs`` and scan every header (``hpcfit.calibrate.kernels.frames``): the survey, shared by the
ranks in a run (``hpcfit.calibrate.survey``, handed in as a :class:`Survey`) or made here (:func:`survey_here`);
apply the classification policy; check the trim/overscan sections and the frame shapes; group the usable calibration
frames by (kind, night[, filter]); drop groups below ``combine.min_frames``; choose for every science frame its
bias, dark and flat (same night, else nearest in time, or a ready master file); keep only the groups that serve
somebody (directly, or as the bias/dark subtracted from a dark or flat group); batch the science frames into work
items.

Problems of the user's making are reported with their key path (exit 2, no output): inputs matching nothing, no
science or bias frames, darks or science frames without the exposure keyword, flats of a filter no science frame
uses, shapes that disagree, bad sections, master files of the wrong shape, a bad frame under ``on_bad_frame:
fail``. Individual bad frames under ``on_bad_frame: skip`` become :class:`Rejection` rows (``/rejected``).
"""

from __future__ import annotations

import datetime as dt
import os
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from hpcfit.calibrate import inputs as I
from hpcfit.calibrate.kernels import frames as F
from hpcfit.calibrate.kernels.fitsforms import PLAIN
from hpcfit.calibrate.kernels.reading import parse_section
from hpcfit.runtime.checkpoint import parts_directory

KINDS = ("bias", "dark", "flat")
Report = Callable[..., None]
# Below this many files the header scan runs in one thread; above, a few threads overlap the file-system latency
# (opens and first reads dominate on network file systems; parsing is cheap).
_THREADED_SCAN_MIN = 64
_SCAN_THREADS = 8


@dataclass(frozen=True)
class Rejection:
    """A frame that was not used, and why (a row of ``/rejected``)."""

    name: str
    path: str
    kind: str
    stage: str  # "scan" (header), "plan" (no master), "combine" (pixels of a calibration frame), "calibrate"
    reason: str


@dataclass
class Group:
    """One master to build from frames, or to load from a ready file."""

    kind: str
    night: dt.date | None
    filter: str | None
    frames: list[int] = field(default_factory=list)  # indices into CalibPlan.frames, by DATE-OBS
    file: str | None = None  # ready master file (then ``frames`` is empty)
    file_exptime: float | None = None  # ready dark only: exposure the file holds (None: it is a rate, ADU/s)
    bias: int = -1  # index (into CalibPlan.groups) of the bias master subtracted to build this one
    dark: int = -1  # index of the dark master subtracted (flats)
    slot: int = -1  # position in the output stack /masters/<kind>

    @property
    def label(self) -> str:
        where = f"file {os.path.basename(self.file)}" if self.file else f"night {self.night or 'unknown'}"
        return f"{self.kind} ({where}{f', filter {self.filter}' if self.filter else ''})"


@dataclass
class ScienceEntry:
    """One science frame to calibrate."""

    frame: int  # index into CalibPlan.frames
    set: int  # index into CalibPlan.sets
    notes: str  # which masters serve it and why
    fits_name: str | None = None
    gain: float | None = None  # e-/ADU (uncertainty only)
    read_noise: float | None = None  # e-


@dataclass
class CalibPlan:
    """Everything every rank needs; small and picklable (frames carry only header facts)."""

    frames: list[F.Frame]
    groups: list[Group]
    sets: list[tuple[int, int, int]]  # (bias, dark, flat) group indices; -1: that step is not applied
    offsets: list[tuple[int, int, float]]  # (bias group, dark group, exposure time) precomputed per node
    science: list[ScienceEntry]
    rejected: list[Rejection]
    status: list[str]  # per frame: how it was used (the /frames inventory)
    raw_shape: tuple[int, int]
    shape: tuple[int, int]  # after trimming: the shape of every master and calibrated frame
    log: list[str] = field(default_factory=list)
    skipped: list[I.Skipped] = field(default_factory=list)  # files under the inputs that are not used (/skipped)
    n_files: int = 0  # files found under the inputs: len(frames) + len(skipped)

    def inputs_line(self) -> str:
        return I.summary_line(self.n_files, len(self.frames), self.skipped)

    def kind_groups(self, kind: str) -> list[int]:
        return [i for i, g in enumerate(self.groups) if g.kind == kind]

    def batches(self, size: int) -> list[tuple[int, int]]:
        """Runs [a, b) of consecutive science entries sharing master set and exposure time, at most ``size``."""
        out: list[tuple[int, int]] = []
        a = 0
        for b in range(1, len(self.science) + 1):
            end = b == len(self.science)
            if end or b - a >= size or self._batch_key(b) != self._batch_key(a):
                out.append((a, b))
                a = b
        return out

    def _batch_key(self, i: int) -> tuple[int, float | None]:
        entry = self.science[i]
        return entry.set, self.frames[entry.frame].exptime


# ------------------------------------------------------------------------------------------------------- scanning
def scan_options(c: Any) -> F.ScanOptions:
    extra = tuple(v for v in (c.gain, c.read_noise) if isinstance(v, str))
    return F.ScanOptions(classify_by=c.classify_by, imagetyp_map=dict(c.imagetyp), folder_map=dict(c.folders),
                         night_offset_hours=c.night_offset_hours, exptime_keys=tuple(c.exptime_key),
                         filter_key=c.filter_key, date_key=c.date_key, imagetyp_key=c.imagetyp_key,
                         extra_keys=extra)


def find_inputs(c: Any, report: Report) -> tuple[list[Path], list[I.Skipped]]:
    """Every input expanded: (FITS files, other files skipped); each input that matches no FITS file is reported
    at its own key."""
    return I.find_inputs(c.inputs, report)


class UnreadableHeader(RuntimeError):
    """Reading a frame's header failed in a way the scan does not turn into a bad frame (e.g. astropy refusing a
    card the plan needs): the message names the file."""


def scan(paths: Sequence[str | Path], options: F.ScanOptions) -> list[F.Frame]:
    """Headers of every path, in order (threads overlap the I/O latency of many files)."""
    if len(paths) < _THREADED_SCAN_MIN:
        return [_read_frame(p, options) for p in paths]
    with ThreadPoolExecutor(_SCAN_THREADS) as pool:
        return list(pool.map(lambda p: _read_frame(p, options), paths, chunksize=16))


def _read_frame(path: str | Path, options: F.ScanOptions) -> F.Frame:
    try:
        return F.read_frame(path, options)
    except Exception as exc:  # read_frame records every bad file it knows as a problem: this is something else
        raise UnreadableHeader(f"{os.fspath(path)}: {type(exc).__name__}: {exc}") from exc


@dataclass
class Survey:
    """What the plan needs from the files: every file under the inputs found (rank 0), the headers of the FITS
    files read (shared by the ranks in a run: ``hpcfit.calibrate.survey``; by this process in :func:`survey_here`).
    """

    frames: list[F.Frame]  # one per FITS file, in find_inputs' order
    skipped: list[I.Skipped]  # the other files under the inputs
    reports: list[tuple[Any, ...]] = field(default_factory=list)  # find_inputs' problems: report(*args) each


def list_inputs(c: Any) -> tuple[list[str], list[I.Skipped], list[tuple[Any, ...]]]:
    """(FITS files to scan, other files skipped, the problems to report) of the config's inputs."""
    reports: list[tuple[Any, ...]] = []
    paths, skipped = find_inputs(c, lambda *args: reports.append(args))
    return [os.fspath(p) for p in paths], skipped, reports


def survey_here(c: Any) -> Survey:
    """The survey in this process alone (a plan made outside the engine, e.g. ``Job.plan`` called directly)."""
    paths, skipped, reports = list_inputs(c)
    return Survey(scan(paths, scan_options(c)), skipped, reports)


# -------------------------------------------------------------------------------------------------------- planning
def make_plan(cfg: Any, report: Report, survey: Survey | None = None) -> CalibPlan | None:
    """The plan from the survey of the inputs (None: made here, see :func:`survey_here`), or None when problems
    were reported (the engine then exits with code 2)."""
    reported: list[Any] = []

    def note(*args: Any) -> None:  # every problem before the master assignment is reported, then planning stops
        reported.append(args)
        report(*args)

    c = cfg.calibrate
    if survey is None:
        survey = survey_here(c)
    for args in survey.reports:
        note(*args)
    if not survey.frames:
        return None
    options = scan_options(c)
    frames, not_frames = I.split_skipped(survey.frames)
    skipped = sorted(survey.skipped + not_frames, key=lambda s: s.path)
    frames = _apply_mismatch_policy(frames, c.on_mismatch, options)
    n_scanned = len(frames)

    science_shapes = Counter(f.shape for f in frames if f.ok and f.kind == F.Kind.SCIENCE)
    if not science_shapes:
        kinds = Counter(str(f.kind) for f in frames)
        note("calibrate.inputs", f"no usable science frames among the {n_scanned} frames found "
                                 f"({', '.join(f'{n} {k}' for k, n in sorted(kinds.items()))}"
                                 f"{'; ' if kinds and skipped else ''}"
                                 f"{f'{len(skipped)} other file(s) skipped' if skipped else ''})")
        return None
    raw_shape = science_shapes.most_common(1)[0][0]
    if not _check_sections(c, raw_shape, note):
        return None
    ys, xs = parse_section(c.trim, raw_shape) if c.trim else (slice(0, raw_shape[0]), slice(0, raw_shape[1]))
    shape = (ys.stop - ys.start, xs.stop - xs.start)
    frames = _check_kind_shapes(frames, raw_shape, note)

    files = _ready_files(c, raw_shape, shape, note)
    _check_exposures(frames, c, files, note)
    log: list[str] = []
    for kind in KINDS:
        ignored = [f for f in frames if f.ok and f.kind == kind]
        if files.get(kind) and ignored:
            log.append(f"{len(ignored)} {kind} frame(s) in the inputs are not used: masters.{kind} is given")

    rejected = [Rejection(f.name, f.path, str(f.kind), "scan", "; ".join(f.problems)) for f in frames if not f.ok]
    if rejected and c.on_bad_frame == "fail":
        for r in rejected:
            note("calibrate.on_bad_frame", f"{r.path}: {r.reason} (on_bad_frame: fail; use skip to leave bad "
                                           "frames out and list them in /rejected)")
        return None

    usable = [f for f in frames if f.ok]
    flat_frames_by_filter = Counter(f.filter for f in usable if f.kind == F.Kind.FLAT and not files.get("flat"))
    science_filters = {f.filter for f in usable if f.kind == F.Kind.SCIENCE}
    for filt, n in sorted(flat_frames_by_filter.items(), key=lambda kv: str(kv[0])):
        if filt not in science_filters:
            note("calibrate.inputs", f"{n} flat frame(s) with {c.filter_key} = {filt!r} but no science frame uses "
                                     f"that filter (science filters: {_names(science_filters)}); remove them from "
                                     "the inputs or check the filter keyword")
    flat_files = files.get("flat") or {}
    for filt in flat_files:
        if filt is not None and filt not in science_filters:
            note(("calibrate", "masters", "flat", filt), f"no science frame uses filter {filt!r} (science "
                                                         f"filters: {_names(science_filters)})")

    groups, index_of = _eligible_groups(frames, c.combine.min_frames, files, log)
    for kind in KINDS:
        if kind in c.require and not files.get(kind) and not any(k.kind == kind for k in index_of):
            have = sum(1 for f in usable if f.kind == kind)
            hint = (f"only {have} usable frame(s), fewer than combine.min_frames = {c.combine.min_frames}"
                    if have else f"none among the {n_scanned} frames found")
            note("calibrate.inputs" if have == 0 else "calibrate.combine.min_frames",
                 f"no {kind} frames found to build a master {kind} ({hint}); give a ready master as "
                 f"masters.{kind}, or leave '{kind}' out of calibrate.require to skip that step")
    if any(k.kind == "dark" for k in index_of) and not files.get("bias") and \
            not any(k.kind == "bias" for k in index_of):
        note("calibrate.inputs", "dark frames need a master bias to become dark-current rates, and there is none")
    if reported:
        return None
    plan = _assign(cfg, frames, groups, index_of, files, rejected, log, report, raw_shape, shape)
    if plan is not None:
        plan.skipped, plan.n_files = skipped, len(frames) + len(skipped)
    return plan


def _names(values: Any) -> str:
    return ", ".join(repr(v) for v in sorted(values, key=str)) or "none"


def _apply_mismatch_policy(frames: list[F.Frame], policy: str, options: F.ScanOptions) -> list[F.Frame]:
    if policy != "reject":
        return frames
    out = []
    for f in frames:
        hkind = F.header_kind(f.imagetyp, options)
        if f.ok and hkind is not None and f.folder_kind is not None and hkind != f.folder_kind:
            why = (f"misfiled: {options.imagetyp_key} = {f.imagetyp!r} says {hkind} but it is in folder "
                   f"{Path(f.path).parent.name!r} ({f.folder_kind}); on_mismatch: reject")
            f = replace(f, problems=(*f.problems, why))
        out.append(f)
    return out


def _check_sections(c: Any, raw_shape: tuple[int, int], report: Report) -> bool:
    ok = True
    for key in ("trim", "overscan"):
        text = c.get(key)
        if text is None:
            continue
        try:
            parse_section(text, raw_shape)
        except ValueError as exc:
            report(f"calibrate.{key}", f"{exc} (frames are {raw_shape[1]} x {raw_shape[0]}: NAXIS1 x NAXIS2)")
            ok = False
    if ok and c.overscan:
        ys, xs = parse_section(c.trim, raw_shape) if c.trim else (slice(0, raw_shape[0]), slice(0, raw_shape[1]))
        oys, oxs = parse_section(c.overscan, raw_shape)
        if oys.stop - oys.start >= oxs.stop - oxs.start:
            if not (oys.start <= ys.start and ys.stop <= oys.stop):
                report("calibrate.overscan", f"overscan columns {c.overscan} must span every image row "
                                             f"{ys.start + 1}..{ys.stop} (one level per row)")
                ok = False
        elif not (oxs.start <= xs.start and xs.stop <= oxs.stop):
            report("calibrate.overscan", f"overscan rows {c.overscan} must span every image column "
                                         f"{xs.start + 1}..{xs.stop} (one level per column)")
            ok = False
    return ok


def _check_kind_shapes(frames: list[F.Frame], raw_shape: tuple[int, int], report: Report) -> list[F.Frame]:
    """Frames of another shape are bad frames; a whole kind in another shape is a config error."""
    checked = F.check_shapes(frames, raw_shape)
    for kind in KINDS:
        before = [f for f in frames if f.ok and f.kind == kind]
        after = [f for f in checked if f.ok and f.kind == kind]
        if before and not after:
            shapes = sorted({f.shape for f in before})
            report("calibrate.inputs", f"shapes disagree: every {kind} frame is {_shape_text(shapes)} but the science "
                                       f"frames are {_shape_text([raw_shape])} (NAXIS2 x NAXIS1)")
    return checked


def _shape_text(shapes: Sequence[tuple[int, int]]) -> str:
    return " or ".join(f"{s[0]} x {s[1]}" for s in shapes)


def _ready_files(c: Any, raw_shape: tuple[int, int], shape: tuple[int, int], report: Report
                 ) -> dict[str, Any]:
    """{kind: path} for ready masters ({filter: path} for flats; key None = every filter), shapes checked."""
    from hpcfit.calibrate.kernels.reading import MasterFileError, master_file_shape

    m = c.masters
    out: dict[str, Any] = {}
    entries: list[tuple[tuple[Any, ...], str, str, str | None]] = []
    for kind in KINDS:
        value = m.get(kind)
        if value is None:
            continue
        if isinstance(value, dict):
            entries += [(("calibrate", "masters", kind, filt), kind, path, filt) for filt, path in value.items()]
        else:
            entries.append((("calibrate", "masters", kind), kind, value, None))
    for key, kind, path, filt in entries:
        try:
            got = master_file_shape(path)
        except MasterFileError as exc:
            report(key, str(exc))
            continue
        if got not in (raw_shape, shape):
            want = _shape_text([raw_shape]) + (f" (or {_shape_text([shape])} after trim)" if shape != raw_shape else "")
            report(key, f"shapes disagree: the master is {_shape_text([got])}, the science frames are {want}")
            continue
        if kind == "flat":
            out.setdefault("flat", {})[filt] = path
        else:
            out[kind] = path
    if m.dark_exptime is not None and not m.get("dark"):
        report("calibrate.masters.dark_exptime", "only meaningful with masters.dark (a ready master dark file)")
    return out


def _check_exposures(frames: list[F.Frame], c: Any, files: dict[str, Any], report: Report) -> None:
    keys = "/".join(c.exptime_key)
    for kind, needed in (("dark", not files.get("dark")), ("science", True)):
        of_kind = [f for f in frames if f.kind == kind and f.layout is not None]
        if needed and of_kind and all(f.exptime is None for f in of_kind):
            report("calibrate.exptime_key", f"none of the {len(of_kind)} {kind} frames has an exposure time "
                                            f"({keys}): " + ("the dark current rate (ADU/s) needs it" if kind == "dark"
                                                             else "scaling the dark current needs it")
                   + "; set calibrate.exptime_key to the camera's keyword")


def _eligible_groups(frames: list[F.Frame], min_frames: int, files: dict[str, Any], log: list[str]
                     ) -> tuple[dict[F.GroupKey, list[F.Frame]], dict[F.GroupKey, list[int]]]:
    """Groups of usable calibration frames with at least ``min_frames`` members (kinds without a ready file)."""
    position = {f.path: i for i, f in enumerate(frames)}
    groups = F.group_frames(f for f in frames if f.kind in KINDS and not files.get(str(f.kind)))
    eligible: dict[F.GroupKey, list[F.Frame]] = {}
    for key, members in groups.items():
        if len(members) < min_frames:
            log.append(f"{key.kind} frames of night {key.night}{f' filter {key.filter}' if key.filter else ''}: "
                       f"{len(members)} < combine.min_frames = {min_frames}, not used")
            continue
        eligible[key] = members
    return eligible, {k: [position[f.path] for f in v] for k, v in eligible.items()}


def _assign(cfg: Any, frames: list[F.Frame], eligible: dict[F.GroupKey, list[F.Frame]],
            index_of: dict[F.GroupKey, list[int]], files: dict[str, Any], rejected: list[Rejection],
            log: list[str], report: Report, raw_shape: tuple[int, int], shape: tuple[int, int]) -> CalibPlan | None:
    c = cfg.calibrate
    groups: list[Group] = []
    by_key: dict[Any, int] = {}

    def choose(kind: str, reference: F.Frame) -> tuple[Any, str]:
        """(key of the master of ``kind`` serving ``reference``, or None; the reason)."""
        ready = files.get(kind)
        if kind == "flat" and ready:
            ready = ready.get(reference.filter, ready.get(None))
        if ready:
            return ("file", kind, ready, reference.filter if kind == "flat" else None), \
                f"ready master {os.path.basename(ready)}"
        choice = F.select_master(reference, F.Kind(kind), eligible)
        if choice.key is not None and c.masters.match == "same_night" and not choice.reason.startswith("same night"):
            return None, f"{choice.reason} (masters.match: same_night)"
        return choice.key, choice.reason

    def ensure(kind: str, key: Any) -> int:
        """Index of the group of ``key``, created on first use (only groups that serve somebody are built)."""
        if key is None:
            return -1
        if key not in by_key:
            by_key[key] = len(groups)
            if isinstance(key, F.GroupKey):
                groups.append(Group(kind, key.night, key.filter, list(index_of[key])))
            else:
                groups.append(Group(kind, None, key[3], file=key[2],
                                    file_exptime=c.masters.dark_exptime if kind == "dark" else None))
        return by_key[key]

    def group_for(kind: str, reference: F.Frame) -> tuple[int, str]:
        key, reason = choose(kind, reference)
        return ensure(kind, key), reason

    science: list[ScienceEntry] = []
    sets: dict[tuple[int, int, int], int] = {}
    missing: dict[tuple[str, str | None], list[str]] = {}
    order = sorted((i for i, f in enumerate(frames) if f.ok and f.kind == F.Kind.SCIENCE),
                   key=lambda i: (frames[i].date_obs or dt.datetime.min, frames[i].path))
    for i in order:
        f = frames[i]
        chosen, notes, lacking = {}, [], []
        for kind in KINDS:
            key, reason = choose(kind, f)
            chosen[kind] = key
            if key is not None:
                notes.append(f"{kind}: {reason}")
            elif kind in c.require:
                lacking.append(f"no {kind} master: {reason}")
            else:
                notes.append(f"{kind}: not applied ({reason})")
        if lacking:
            if c.masters.match == "same_night" and all("same_night" in m for m in lacking):
                rejected.append(Rejection(f.name, f.path, "science", "plan", "; ".join(lacking)))
            else:
                for kind in KINDS:
                    if chosen[kind] is None and kind in c.require:
                        missing.setdefault((kind, f.filter if kind == "flat" else None), []).append(f.name)
            continue
        key = tuple(ensure(kind, chosen[kind]) for kind in KINDS)
        sets.setdefault(key, len(sets))
        science.append(ScienceEntry(i, sets[key], "; ".join(notes)))
    for (kind, filt), names in missing.items():
        what = f"{kind} frames" + (f" with filter {filt!r}" if kind == "flat" else "")
        report("calibrate.inputs", f"no usable {what} for {len(names)} science frame(s) ({', '.join(names[:3])}"
                                   f"{', ...' if len(names) > 3 else ''}); give a ready master as masters.{kind} or "
                                   f"leave '{kind}' out of calibrate.require")
    if missing:
        return None
    if rejected and c.on_bad_frame == "fail":
        for r in rejected:
            report("calibrate.masters.match", f"{r.path}: {r.reason} (on_bad_frame: fail)")
        return None

    # The masters used to build the masters: each dark group's bias, each flat group's bias and dark (groups
    # appended meanwhile are bias or dark groups; the darks among them get their bias in the second loop).
    for index in range(len(groups)):
        g = groups[index]
        if g.file or g.kind == "bias":
            continue
        reference = frames[g.frames[len(g.frames) // 2]]
        g.bias, _ = group_for("bias", reference)
        if g.kind == "flat":
            g.dark, _ = group_for("dark", reference)
    for index in range(len(groups)):  # darks added for flats still need their bias
        g = groups[index]
        if g.kind == "dark" and not g.file and g.bias < 0:
            g.bias, _ = group_for("bias", frames[g.frames[len(g.frames) // 2]])
    if not _drop_flats_without_exposure(groups, frames, rejected, c, report):
        return None

    # Build order: bias, then dark, then flat (each needs the earlier kinds); slots number each kind's stack.
    order_groups = sorted(range(len(groups)), key=lambda i: (KINDS.index(groups[i].kind), i))
    remap = {old: new for new, old in enumerate(order_groups)}
    groups = [groups[i] for i in order_groups]
    for g in groups:
        g.bias = remap.get(g.bias, -1)
        g.dark = remap.get(g.dark, -1)
    for kind in KINDS:
        for slot, gi in enumerate(i for i, g in enumerate(groups) if g.kind == kind):
            groups[gi].slot = slot
    set_list = [(-1, -1, -1)] * len(sets)
    for (b, d, fl), s in sets.items():
        set_list[s] = (remap.get(b, -1), remap.get(d, -1), remap.get(fl, -1))

    offsets = sorted({(set_list[e.set][0], set_list[e.set][1], float(frames[e.frame].exptime))
                      for e in science if set_list[e.set][1] >= 0})
    plan = CalibPlan(frames, groups, set_list, offsets, science, rejected, [""] * len(frames), raw_shape, shape, log)
    _noise_and_names(plan, cfg, report)
    _fill_status(plan, files)
    return plan


def _drop_flats_without_exposure(groups: list[Group], frames: list[F.Frame], rejected: list[Rejection],
                                 c: Any, report: Report) -> bool:
    """Flats whose dark current must be subtracted need their exposure time; the others are rejected. False
    (reported) when a group is left with too few frames."""
    ok = True
    for g in groups:
        if g.kind != "flat" or g.file or g.dark < 0:
            continue
        keep = [i for i in g.frames if frames[i].exptime is not None]
        for i in g.frames:
            if frames[i].exptime is None:
                rejected.append(Rejection(frames[i].name, frames[i].path, "flat", "plan",
                                          f"no exposure time ({'/'.join(c.exptime_key)}): the dark current cannot "
                                          "be subtracted"))
        if len(keep) < c.combine.min_frames:
            report("calibrate.exptime_key", f"{len(g.frames) - len(keep)} of the {len(g.frames)} frames of the "
                                            f"{g.label} flats have no exposure time ({'/'.join(c.exptime_key)}), "
                                            "needed to subtract the dark current")
            ok = False
        g.frames = keep
    return ok


def fits_stem(name: str) -> str:
    """A frame's file name without its FITS suffix (``a.fits.fz`` -> ``a``): the FITS copy is ``<stem>.fits``."""
    stem = name[:-3] if name.lower().endswith((".fz", ".gz")) else name
    for suffix in PLAIN:
        if stem.lower().endswith(suffix):
            return stem[: len(stem) - len(suffix)]
    return stem if stem != name else os.path.splitext(name)[0]


def cosmic_rays_spec(c: Any) -> dict[str, Any] | None:
    """The ``cosmic_rays`` settings, or None when cleaning is off (null or ``none``)."""
    spec = c.get("cosmic_rays")
    return dict(spec) if isinstance(spec, dict) else None


def _noise_and_names(plan: CalibPlan, cfg: Any, report: Report) -> None:
    c = cfg.calibrate
    cosmics = cosmic_rays_spec(c)
    # The noise model serves the uncertainty, and L.A.Cosmic unless its settings give gain and readnoise
    if c.uncertainty or (cosmics is not None and not {"gain", "readnoise"} <= set(cosmics)):
        for key in ("gain", "read_noise"):
            spec = c[key]
            if not isinstance(spec, str):
                for e in plan.science:
                    setattr(e, key, float(spec))
                continue
            lacking = []
            for e in plan.science:
                value = plan.frames[e.frame].extra.get(spec)
                try:
                    value = float(value)
                    ok = value > 0 if key == "gain" else value >= 0
                except (TypeError, ValueError):
                    ok = False
                if ok:
                    setattr(e, key, value)
                else:
                    lacking.append(plan.frames[e.frame].name)
            if lacking:
                report(f"calibrate.{key}", f"header keyword {spec!r} is missing or invalid in {len(lacking)} science "
                                           f"frame(s) ({', '.join(lacking[:3])}{', ...' if len(lacking) > 3 else ''})"
                                           f"; give the {key.replace('_', ' ')} as a number "
                                           f"({'e-/ADU' if key == 'gain' else 'e-'})"
                                           + ("" if c.uncertainty else " (cosmic_rays needs it: or set "
                                              f"cosmic_rays.{'gain' if key == 'gain' else 'readnoise'})"))
    if c.fits_dir:
        taken: Counter[str] = Counter(plan.frames[e.frame].name for e in plan.science)
        existing = []
        for k, e in enumerate(plan.science):
            f = plan.frames[e.frame]
            stem = fits_stem(f.name)
            name = f"{stem}.fits" if taken[f.name] == 1 else f"{stem}_{k:05d}.fits"
            e.fits_name = name
            if os.path.exists(os.path.join(c.fits_dir, name)):
                existing.append(name)
        # Existing files are refused unless asked, except when this run continues an earlier one (slices, resume,
        # merge: its checkpoint directory exists and the files are its own).
        if existing and not cfg.run.overwrite and not parts_directory(cfg.output).exists():
            report("calibrate.fits_dir", f"{len(existing)} calibrated FITS file(s) already exist in {c.fits_dir} "
                                         f"({', '.join(existing[:3])}{', ...' if len(existing) > 3 else ''}); set "
                                         "run.overwrite: true to replace them")


def _fill_status(plan: CalibPlan, files: dict[str, Any]) -> None:
    for g in plan.groups:
        for i in g.frames:
            plan.status[i] = f"{g.kind} master {g.slot}"
    for e in plan.science:
        plan.status[e.frame] = "science"
    rejected = {r.path for r in plan.rejected}
    for i, f in enumerate(plan.frames):
        if f.path in rejected:
            plan.status[i] = "rejected"
        elif not plan.status[i]:
            plan.status[i] = (f"not used (masters.{f.kind} given)" if files.get(str(f.kind)) else
                              "not used (serves no science frame)")
