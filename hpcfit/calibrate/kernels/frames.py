"""Header-only scan of raw CCD frames: discovery, classification, night, filter, exposure, and master selection.

Only the primary header blocks of each file are read (never the pixels), so rank 0 can plan thousands of frames
quickly, or the path list can be split over ranks and the :class:`Frame` records gathered (they are small and
picklable). A file that cannot be used (unreadable, no END card, truncated data, wrong NAXIS, unknown type, missing
exposure time where it is needed) becomes a :class:`Frame` whose ``problems`` say why; scanning never raises for a
bad file, so the engine can apply its ``on_bad_frame`` policy and report every rejected frame.

Conventions:

- ``night`` = ``(DATE-OBS - night_offset_hours).date()`` (default 10 h, as the eloy reference), so an observing night
  that crosses midnight UTC stays one night.
- Grouping key = (kind, night, filter) where the filter only matters for flats and science frames; bias and dark
  groups ignore it (key filter ``None``) because their signal does not go through the filter.
- Master selection for a science frame: the group of the same night (and filter, for flats), else the group whose
  nearest frame is closest in time; the choice and its reason are recorded in :class:`MasterChoice`.
"""

from __future__ import annotations

import datetime as dt
import glob
import gzip
import math
import os
import re
import warnings
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np
from astropy.io import fits
from astropy.utils.exceptions import AstropyWarning

from hpcfit.calibrate.kernels.fitsforms import FITS_NAMES, NoImageError, file_form, locate_image
from hpcfit.calibrate.kernels.headercards import HeaderCards, parse_cards, wanted_keys

BLOCK = 2880  # FITS logical record size
FITS_EXTENSIONS = FITS_NAMES  # plain, gzip- and tile-compressed (see fitsforms)
_MAX_HEADER_BLOCKS = 2000  # ~5.7 MB of header cards: anything longer is not a sane CCD frame
LAYOUT_KEYS = ("BITPIX", "NAXIS", "BZERO", "BSCALE", "BLANK")  # and NAXISn: what image_layout reads
TIME_KEYS = ("TIME-OBS", "UT", "UTC-OBS", "UTSTART")  # the clock of a DATE-OBS without one (parse_date_obs)


class Kind(StrEnum):
    """What a raw frame is."""

    BIAS = "bias"
    DARK = "dark"
    FLAT = "flat"
    SCIENCE = "science"
    UNKNOWN = "unknown"


def _norm(text: str) -> str:
    """Lower-case, non-alphanumerics to single spaces: 'Flat_Field ' -> 'flat field'."""
    return " ".join(re.sub(r"[^0-9a-z]+", " ", text.lower()).split())


DEFAULT_IMAGETYP_MAP: dict[str, Kind] = {
    **dict.fromkeys(["bias", "bias frame", "bias image", "zero", "zero frame"], Kind.BIAS),
    **dict.fromkeys(["dark", "dark frame", "dark image", "dark current"], Kind.DARK),
    **dict.fromkeys(
        [
            "flat", "flat field", "flat frame", "flatfield", "flat image", "sky flat", "skyflat", "dome flat",
            "domeflat", "twilight flat", "twiflat",
        ],
        Kind.FLAT,
    ),
    **dict.fromkeys(
        ["light", "light frame", "light image", "object", "science", "sci", "science frame", "science image"],
        Kind.SCIENCE,
    ),
}

# Folder names compared after _norm with spaces removed ('Science Images' -> 'scienceimages').
DEFAULT_FOLDER_MAP: dict[str, Kind] = {
    **dict.fromkeys(["bias", "biases", "zero", "zeros", "biasframes"], Kind.BIAS),
    **dict.fromkeys(["dark", "darks", "darkframes"], Kind.DARK),
    **dict.fromkeys(["flat", "flats", "flatfield", "flatfields", "skyflats", "domeflats", "twilightflats"], Kind.FLAT),
    **dict.fromkeys(
        ["science", "scienceimages", "scienceframes", "light", "lights", "lightframes", "object", "objects"],
        Kind.SCIENCE,
    ),
}


@dataclass(frozen=True)
class ScanOptions:
    """How to read and classify frame headers (mirrors the ``inputs`` part of the calibrate config)."""

    classify_by: Literal["header", "folder"] = "header"
    imagetyp_map: Mapping[str, str] | None = None  # merged over DEFAULT_IMAGETYP_MAP (keys normalised)
    folder_map: Mapping[str, str] | None = None  # merged over DEFAULT_FOLDER_MAP
    night_offset_hours: float = 10.0
    exptime_keys: tuple[str, ...] = ("EXPTIME", "EXPOSURE")  # first one present wins
    filter_key: str = "FILTER"
    date_key: str = "DATE-OBS"
    imagetyp_key: str = "IMAGETYP"
    extra_keys: tuple[str, ...] = ()  # e.g. ("GAIN", "RDNOISE"): copied into Frame.extra when present

    def __post_init__(self) -> None:
        if self.classify_by not in ("header", "folder"):
            raise ValueError(f"classify_by must be 'header' or 'folder', not {self.classify_by!r}")
        if isinstance(self.exptime_keys, str):
            object.__setattr__(self, "exptime_keys", (self.exptime_keys,))
        for name in ("imagetyp_map", "folder_map"):
            mapping = getattr(self, name)
            for kind in (mapping or {}).values():
                Kind(kind)  # raises ValueError naming the bad kind

    def _cached(self, name: str, build: Callable[[], Any]) -> Any:
        """``build()`` once per options object: the scan asks for these maps once per file."""
        if name not in self.__dict__:
            object.__setattr__(self, name, build())  # frozen: the cache is no field (not compared, not hashed)
        return self.__dict__[name]

    def imagetyp_kinds(self) -> dict[str, Kind]:
        return dict(self.imagetyp_lookup())

    def folder_kinds(self) -> dict[str, Kind]:
        return dict(self.folder_lookup())

    def imagetyp_lookup(self) -> Mapping[str, Kind]:
        """:meth:`imagetyp_kinds`, built once (do not modify)."""
        return self._cached("_imagetyp_kinds", lambda: {
            **DEFAULT_IMAGETYP_MAP, **{_norm(k): Kind(v) for k, v in (self.imagetyp_map or {}).items()}})

    def folder_lookup(self) -> Mapping[str, Kind]:
        """:meth:`folder_kinds`, built once (do not modify)."""
        return self._cached("_folder_kinds", lambda: {
            **DEFAULT_FOLDER_MAP, **{_norm(k).replace(" ", ""): Kind(v) for k, v in (self.folder_map or {}).items()}})

    def header_keys(self) -> frozenset[str] | None:
        """The header cards :func:`read_frame` looks at (``headercards.wanted_keys``: None when one is not a
        standard keyword, and astropy reads every card)."""
        return self._cached("_header_keys", lambda: wanted_keys(
            (*LAYOUT_KEYS, self.imagetyp_key, self.date_key, *TIME_KEYS, *self.exptime_keys, self.filter_key,
             *self.extra_keys)))


@dataclass(frozen=True)
class ImageLayout:
    """Where and how the image sits in its file: enough to read any band of rows with one ``pread`` (plain files),
    or to find it for astropy (``compression``: ``gzip`` or ``tile``, read through ``fitsforms.open_section``)."""

    path: str
    data_offset: int  # bytes from the start of the file to the first pixel
    bitpix: int
    shape: tuple[int, int]  # (ny, nx) = (NAXIS2, NAXIS1)
    bzero: float = 0.0
    bscale: float = 1.0
    blank: int | None = None  # integer images only: raw value meaning "no data"
    hdu: int = 0  # index of the image HDU in the file
    compression: str | None = None  # None (plain: read by pread at data_offset), "gzip" or "tile"

    @property
    def dtype(self) -> np.dtype:
        """The on-disk (big-endian) pixel type."""
        return np.dtype({8: "u1", 16: ">i2", 32: ">i4", 64: ">i8", -32: ">f4", -64: ">f8"}[self.bitpix])

    @property
    def data_bytes(self) -> int:
        return abs(self.bitpix) // 8 * self.shape[0] * self.shape[1]


@dataclass(frozen=True)
class Frame:
    """One raw frame as planned from its header. ``problems`` non-empty means the frame cannot be used."""

    path: str
    kind: Kind
    night: dt.date | None = None
    filter: str | None = None
    exptime: float | None = None
    shape: tuple[int, int] | None = None  # (ny, nx)
    date_obs: dt.datetime | None = None  # naive, as written in the header (UTC by FITS convention)
    imagetyp: str | None = None
    folder_kind: Kind | None = None
    layout: ImageLayout | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    problems: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()  # informational, e.g. header and folder disagree
    skip: bool = False  # not a frame to use at all (no image data, a frame type calibrate does not use): the
    # problems say why; listed in /skipped rather than /rejected

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def name(self) -> str:
        return os.path.basename(self.path)


class GroupKey(NamedTuple):
    kind: Kind
    night: dt.date | None
    filter: str | None


@dataclass(frozen=True)
class MasterChoice:
    """Which group of frames makes the master of ``kind`` for one science frame, and why."""

    kind: Kind
    key: GroupKey | None  # None: no usable group (reason says why)
    reason: str


class CorruptFrameError(ValueError):
    """The file's header cannot be parsed or does not describe a readable primary image."""


# ----------------------------------------------------------------------------------------------------------- discovery
def find_frames(inputs: Sequence[str | os.PathLike] | str | os.PathLike,
                extensions: Sequence[str] = FITS_EXTENSIONS) -> list[Path]:
    """Expand directories (recursively) and glob patterns into a sorted, de-duplicated list of FITS files (plain,
    ``.gz`` and ``.fz``: see ``fitsforms``).

    Raises FileNotFoundError naming ``inputs[i]`` when an input matches no file, so the engine can report the
    config key. The other files an input holds are left out here; ``hpcfit.calibrate.inputs`` lists them.
    """
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    exts = tuple(e.lower() for e in extensions)
    found: dict[str, Path] = {}
    for i, item in enumerate(inputs):
        matched = [p for p in candidate_files(item) if p.name.lower().endswith(exts)]
        if not matched:
            raise FileNotFoundError(f"inputs[{i}]: {os.fspath(item)!r} matches no FITS file ({', '.join(exts)})")
        for p in matched:
            found.setdefault(os.path.abspath(p), p)
    return [found[k] for k in sorted(found)]


def candidate_files(item: str | os.PathLike) -> list[Path]:
    """Every file an input names: a directory's files (recursively), a glob's matches (directories among them
    searched recursively), or the file itself."""
    text = os.path.expanduser(os.fspath(item))
    if os.path.isdir(text):
        return files_under(Path(text))
    if glob.has_magic(text):
        candidates: list[Path] = []
        for match in sorted(glob.glob(text, recursive=True)):
            p = Path(match)
            candidates.extend(files_under(p) if p.is_dir() else [p])
        return candidates
    return [Path(text)] if os.path.isfile(text) else []


def files_under(directory: Path) -> list[Path]:
    """The files under ``directory``, recursively: what ``[p for p in directory.rglob("*") if p.is_file()]`` gives
    (symbolic links to files included, links to directories not followed, unreadable directories left out), from
    the directory entries' types alone: no ``stat`` per file (but per symbolic link), which on a network file
    system is one metadata round trip per file saved while rank 0 lists thousands of frames."""
    found: list[Path] = []
    try:
        with os.scandir(directory) as listing:
            entries = list(listing)
    except PermissionError:
        return found
    for entry in entries:
        if entry.is_dir(follow_symlinks=False):
            found.extend(files_under(directory / entry.name))
        elif entry.is_file():
            found.append(directory / entry.name)
    return found


# ------------------------------------------------------------------------------------------------------ header reading
def read_primary_header(path: str | os.PathLike) -> tuple[fits.Header, int]:
    """Read only the primary header blocks; return the header and the byte offset of the data that follows.

    Raises CorruptFrameError (unparseable or no END card) or OSError (unreadable file).
    """
    raw = read_header_blocks(path)
    return astropy_header(raw), len(raw)


def read_header_blocks(path: str | os.PathLike) -> bytes:
    """The primary header's 2880-byte blocks, up to the one holding the END card (a gzip stream is decompressed
    only that far). Raises CorruptFrameError (not FITS, no END card) or OSError (unreadable file)."""
    chunks = []
    with (gzip.open(path, "rb") if file_form(path) == "gzip" else open(path, "rb")) as fh:
        for _ in range(_MAX_HEADER_BLOCKS):
            block = fh.read(BLOCK)
            if len(block) < BLOCK:
                what = "empty file" if not chunks and not block else "header ends before its END card"
                raise CorruptFrameError(f"not a FITS file: {what}")
            if not chunks and not block.startswith(b"SIMPLE  ="):
                raise CorruptFrameError("not a FITS file: does not start with SIMPLE")
            chunks.append(block)
            # END is a card of its own: it starts at a multiple of 80 bytes
            if any(block[i:i + 8] == b"END     " for i in range(0, BLOCK, 80)):
                break
        else:
            raise CorruptFrameError(f"no END card in the first {_MAX_HEADER_BLOCKS} header blocks")
    return b"".join(chunks)


def astropy_header(raw: bytes) -> fits.Header:
    """Every card of the header blocks ``raw``, as astropy reads them. Raises CorruptFrameError."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", AstropyWarning)
            return fits.Header.fromstring(raw.decode("ascii", errors="replace"))
    except Exception as exc:  # astropy raises several types for malformed cards
        raise CorruptFrameError(f"unparseable header: {exc}") from exc


def image_layout(path: str | os.PathLike, header: fits.Header, data_offset: int, *, hdu: int = 0,
                 compression: str | None = None) -> ImageLayout:
    """Describe the image from its header (the primary's unless ``hdu`` says otherwise); raises CorruptFrameError
    when it is not a 2-D image."""
    bitpix = header.get("BITPIX")
    if bitpix not in (8, 16, 32, 64, -32, -64):
        raise CorruptFrameError(f"invalid BITPIX {bitpix!r}")
    naxis = header.get("NAXIS", 0)
    dims = [header.get(f"NAXIS{i}") for i in range(1, (naxis or 0) + 1)]
    if any(not isinstance(d, int) or d < 0 for d in dims):
        raise CorruptFrameError(f"invalid NAXISn values {dims}")
    # A 3-D cube with one plane is still one image (some cameras write NAXIS3 = 1)
    while len(dims) > 2 and dims[-1] == 1:
        dims.pop()
    if len(dims) != 2 or 0 in dims:
        hint = " (image in an extension HDU or compressed file?)" if naxis == 0 else ""
        raise CorruptFrameError(f"primary HDU is not a 2-D image: NAXIS={naxis}, dims={dims}{hint}")
    blank = header.get("BLANK") if bitpix > 0 else None
    try:
        bzero, bscale = float(header.get("BZERO", 0.0)), float(header.get("BSCALE", 1.0))
    except (TypeError, ValueError) as exc:
        raise CorruptFrameError(f"invalid BZERO/BSCALE: {exc}") from exc
    return ImageLayout(
        path=os.fspath(path), data_offset=data_offset, bitpix=bitpix, shape=(dims[1], dims[0]),
        bzero=bzero, bscale=bscale, blank=int(blank) if isinstance(blank, int) else None, hdu=hdu,
        compression=compression,
    )


def open_image(path: str | os.PathLike, keys: frozenset[str] | None = None
               ) -> tuple[fits.Header | HeaderCards, ImageLayout, int]:
    """(image header, layout, bytes the file must hold at least, 0: unknown) of any form calibrate reads.

    Plain and gzip files are read by their primary header blocks alone (fast); astropy is asked (headers only) for
    a file whose primary HDU has no data and for tile-compressed files. With ``keys`` (``headercards.wanted_keys``
    of the cards the caller will look at, the layout's included), a plain header of the common form gives only
    those cards (``headercards``: the same values, a third of the time); anything else is read by astropy as
    without. Raises NoImageError (no image data), CorruptFrameError or OSError.
    """
    form = file_form(path)
    if form != "tile":
        raw = read_header_blocks(path)
        header = (parse_cards(raw, keys) if keys is not None else None) or astropy_header(raw)
        offset = len(raw)
        if header.get("NAXIS", 0) != 0 or form is None:
            layout = image_layout(path, header, offset, compression="gzip" if form == "gzip" else None)
            # A gzip stream's length says nothing about the data it holds: a short one fails when read
            return header, layout, 0 if form == "gzip" else layout.data_offset + layout.data_bytes
    try:
        found = locate_image(path)
    except NoImageError:
        raise
    except (ValueError, TypeError, KeyError, IndexError, EOFError) as exc:  # astropy's ways of refusing a file
        raise CorruptFrameError(f"unreadable {form} FITS: {exc}") from exc
    compression = "tile" if found.compressed else ("gzip" if form == "gzip" else None)
    layout = image_layout(path, found.header, found.data_loc, hdu=found.hdu, compression=compression)
    # A gzip stream's length says nothing about the data it holds: a short one fails when read (stage calibrate)
    needed = 0 if form == "gzip" else (found.data_loc + (found.data_span if found.compressed else layout.data_bytes))
    return found.header, layout, needed


def read_image_header(path: str | os.PathLike) -> fits.Header:
    """The header of a file's image (the primary header, or the image HDU's of a compressed file)."""
    return open_image(path)[0]


def parse_date_obs(header: fits.Header, key: str = "DATE-OBS") -> dt.datetime | None:
    """Parse the observation start: ISO 'YYYY-MM-DD[Thh:mm:ss[.s]]', with TIME-OBS/UT when the date has no time,
    or the old 'DD/MM/YY' form. Returns a naive datetime, or None when absent/unparseable."""
    value = header.get(key)
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip().rstrip("Z")
    old = re.fullmatch(r"(\d\d)/(\d\d)/(\d\d)", text)
    if old:
        day, month, year = map(int, old.groups())
        text = f"{1900 + year:04d}-{month:02d}-{day:02d}"  # the DD/MM/YY form was only legal before 1999
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    if when.tzinfo is not None:
        when = when.astimezone(dt.UTC).replace(tzinfo=None)
    if "T" not in text:
        for time_key in TIME_KEYS:
            clock = header.get(time_key)
            if isinstance(clock, str):
                try:
                    t = dt.time.fromisoformat(clock.strip())
                except ValueError:
                    continue
                return dt.datetime.combine(when.date(), t)
    return when


def night_of(when: dt.datetime | None, offset_hours: float = 10.0) -> dt.date | None:
    """The observing night of an instant: its date after shifting back by ``offset_hours``."""
    return None if when is None else (when - dt.timedelta(hours=offset_hours)).date()


def folder_kind(path: str | os.PathLike, options: ScanOptions = ScanOptions()) -> Kind | None:
    """Kind implied by the name of the frame's parent directory, or None if the name means nothing."""
    name = _norm(Path(path).parent.name).replace(" ", "")
    return options.folder_lookup().get(name)


def header_kind(imagetyp: str | None, options: ScanOptions = ScanOptions()) -> Kind | None:
    """Kind implied by an IMAGETYP value, or None when absent or not a known spelling."""
    if not isinstance(imagetyp, str):
        return None
    return options.imagetyp_lookup().get(_norm(imagetyp))


def _exptime(header: fits.Header, keys: Sequence[str]) -> tuple[float | None, str | None]:
    for key in keys:
        if key in header:
            value = header[key]
            try:
                value = float(value)
            except (TypeError, ValueError):
                return None, f"{key} = {value!r} is not a number"
            if not math.isfinite(value) or value < 0:
                return None, f"{key} = {value} is not a valid exposure time"
            return value, None
    return None, None


def read_frame(path: str | os.PathLike, options: ScanOptions = ScanOptions()) -> Frame:
    """Plan one frame from its header. Never raises for a bad file: problems are recorded in the Frame."""
    path = os.fspath(path)
    fkind = folder_kind(path, options)
    try:
        header, layout, needed = open_image(path, options.header_keys())
    except NoImageError as exc:
        return Frame(path=path, kind=fkind or Kind.UNKNOWN, folder_kind=fkind, problems=(str(exc),), skip=True)
    except (OSError, EOFError, CorruptFrameError) as exc:
        return Frame(path=path, kind=fkind or Kind.UNKNOWN, folder_kind=fkind, problems=(f"corrupt: {exc}",))

    problems: list[str] = []
    notes: list[str] = []
    size = os.path.getsize(path)
    if size < needed:
        problems.append(f"truncated: file has {size} bytes, header declares {needed} (header + data)")

    imagetyp = header.get(options.imagetyp_key)
    imagetyp = imagetyp.strip() if isinstance(imagetyp, str) else None
    hkind = header_kind(imagetyp, options)
    first, second = (hkind, fkind) if options.classify_by == "header" else (fkind, hkind)
    kind = first or second or Kind.UNKNOWN
    if kind is Kind.UNKNOWN:
        problems.append(
            f"unclassifiable: {options.imagetyp_key}={imagetyp!r} and folder {Path(path).parent.name!r} "
            "match no known frame type: not used (calibrate.imagetyp maps more spellings)"
        )
    elif first is None:
        notes.append(f"classified as {kind} by {'folder' if options.classify_by == 'header' else 'header'} "
                     f"(the {options.classify_by} gives no type)")
    if hkind and fkind and hkind != fkind:
        notes.append(
            f"{options.imagetyp_key}={imagetyp!r} says {hkind} but folder {Path(path).parent.name!r} says {fkind}; "
            f"classified as {kind} (classify_by={options.classify_by})"
        )

    date_obs = parse_date_obs(header, options.date_key)
    if date_obs is None:
        notes.append(f"no usable {options.date_key} ({header.get(options.date_key)!r}): night unknown")
    exptime, exp_problem = _exptime(header, options.exptime_keys)
    if exp_problem:
        problems.append(exp_problem)
    elif exptime is None and kind in (Kind.DARK, Kind.SCIENCE):
        # a dark rate and its scaling both need the exposure time
        problems.append(f"no exposure time ({'/'.join(options.exptime_keys)}) in a {kind} frame")
    filt = header.get(options.filter_key)
    filt = str(filt).strip() if filt is not None and str(filt).strip() else None
    extra = {k: header[k] for k in options.extra_keys if k in header}
    return Frame(
        path=path, kind=kind, night=night_of(date_obs, options.night_offset_hours), filter=filt, exptime=exptime,
        shape=layout.shape, date_obs=date_obs, imagetyp=imagetyp, folder_kind=fkind, layout=layout, extra=extra,
        problems=tuple(problems), notes=tuple(notes), skip=kind is Kind.UNKNOWN and len(problems) == 1,
    )


def scan_frames(paths: Iterable[str | os.PathLike], options: ScanOptions = ScanOptions()) -> list[Frame]:
    """Plan every path (order kept). Pure function of the list: split it over ranks and gather to parallelise."""
    return [read_frame(p, options) for p in paths]


def check_shapes(frames: Sequence[Frame], expected: tuple[int, int] | None = None) -> list[Frame]:
    """Mark usable frames whose shape differs from ``expected`` (default: the most common shape of the usable
    science frames, else of all usable frames) as bad. Returns a new list in the same order."""
    if expected is None:
        usable = [f.shape for f in frames if f.ok and f.kind is Kind.SCIENCE] or [f.shape for f in frames if f.ok]
        if not usable:
            return list(frames)
        expected = Counter(usable).most_common(1)[0][0]
    return [
        replace(f, problems=f.problems + (f"shape {f.shape} differs from the expected {tuple(expected)}",))
        if f.ok and f.shape != tuple(expected) else f
        for f in frames
    ]


# ----------------------------------------------------------------------------------------------- grouping & selection
def group_key(frame: Frame) -> GroupKey:
    """(kind, night, filter); the filter is kept only for flats and science frames."""
    keep_filter = frame.kind in (Kind.FLAT, Kind.SCIENCE)
    return GroupKey(frame.kind, frame.night, frame.filter if keep_filter else None)


def group_frames(frames: Iterable[Frame]) -> dict[GroupKey, list[Frame]]:
    """Usable frames of known kind grouped by :func:`group_key`, each group sorted by DATE-OBS then path."""
    groups: dict[GroupKey, list[Frame]] = defaultdict(list)
    for f in frames:
        if f.ok and f.kind is not Kind.UNKNOWN:
            groups[group_key(f)].append(f)
    far_past = dt.datetime.min
    return {k: sorted(v, key=lambda f: (f.date_obs or far_past, f.path)) for k, v in sorted(
        groups.items(), key=lambda kv: (kv[0].kind, kv[0].night or dt.date.min, kv[0].filter or ""))}


def select_master(science: Frame, kind: Kind, groups: Mapping[GroupKey, Sequence[Frame]]) -> MasterChoice:
    """Choose the group of ``kind`` that serves ``science``: same night (and filter for flats), else nearest in
    time (smallest |DATE-OBS difference| to any frame of the group; ties go to the earlier night)."""
    kind = Kind(kind)
    want_filter = science.filter if kind is Kind.FLAT else None
    candidates = {k: v for k, v in groups.items() if k.kind is kind and k.filter == want_filter and v}
    what = f"{kind} frames" + (f" with filter {want_filter!r}" if kind is Kind.FLAT else "")
    if not candidates:
        return MasterChoice(kind, None, f"no usable {what}")
    same = GroupKey(kind, science.night, want_filter)
    if science.night is not None and same in candidates:
        return MasterChoice(kind, same, f"same night {science.night}")
    if science.date_obs is None:
        key = max(candidates, key=lambda k: (len(candidates[k]), -(k.night or dt.date.min).toordinal()))
        why = "the only" if len(candidates) == 1 else f"the largest of {len(candidates)}"
        return MasterChoice(kind, key, f"science frame has no DATE-OBS: {why} group of {what} (night {key.night})")

    def distance(key: GroupKey) -> tuple[float, dt.date]:
        gaps = [abs((f.date_obs - science.date_obs).total_seconds()) for f in candidates[key] if f.date_obs]
        return (min(gaps) if gaps else math.inf, key.night or dt.date.max)

    key = min(candidates, key=distance)
    gap = distance(key)[0]
    if not math.isfinite(gap):
        return MasterChoice(kind, key, f"no {what} with DATE-OBS; used night {key.night}")
    return MasterChoice(
        kind, key, f"no {what} on night {science.night}; nearest in time is night {key.night} "
                   f"({gap / 86400:.2f} d away)")


def assign_masters(
    frames: Iterable[Frame], kinds: Sequence[Kind | str] = (Kind.BIAS, Kind.DARK, Kind.FLAT)
) -> dict[str, dict[Kind, MasterChoice]]:
    """For every usable science frame (by path): the master group of each kind that serves it, with the reason."""
    frames = list(frames)
    groups = group_frames(frames)
    return {
        f.path: {Kind(k): select_master(f, Kind(k), groups) for k in kinds}
        for f in frames if f.ok and f.kind is Kind.SCIENCE
    }
