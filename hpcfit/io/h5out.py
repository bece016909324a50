"""The run's one HDF5 output file, written collectively with parallel HDF5 or by a correct serial fallback.

Modes, chosen automatically:

* ``mpio``   several ranks and h5py built with MPI: every rank opens the file with the ``mpio`` driver; metadata
             operations (create dataset, attributes) are made by all ranks with identical arguments; each rank
             writes its own pieces. Large writes use collective transfers (ranks with fewer pieces take part with
             empty selections, since a collective transfer needs everyone); small ones are written independently,
             which avoids a synchronisation per piece (``transfer``: auto | collective | independent). A rank's
             pieces of one dataset go as one write of the union of their hyperslabs where they can
             (``hpcfit.io.piece_union``): one MPI-IO call per dataset, not one per piece.
* ``serial`` several ranks but h5py without MPI: rank 0 makes the metadata; data is written rank after rank,
             each opening the file in turn (memory stays per rank: nothing is gathered on one rank).
* ``single`` one rank: plain h5py.

Planes written during the work (``create_dataset(..., early=True)``, then ``write_plane``/``read_plane`` from any
rank at any time, no collective call): a job that writes its results straight into the final file while its items
run (calibrate's science frames) creates such a dataset with one chunk per plane, allocated at creation and never
filled. In ``mpio`` mode a plane is one independent HDF5 write; in ``serial`` mode — where only rank 0 has the file
open through HDF5 — each rank writes the plane's bytes at its chunk's address with ``pwrite`` (the addresses are
fixed at creation, the chunks unfiltered: the bytes are exactly what HDF5 would have written); in ``single`` mode a
plain HDF5 write. Either way each byte is written once.

MPI-IO hints (``hints``, see ``hpcfit.io.mpi_hints``) are passed to the ``mpio`` file as an ``MPI.Info``.

The file is written as ``<name>.incomplete`` and renamed to its final name only by ``commit()``, after every rank
has finished, so a crash never leaves a file that looks finished. A fatal error removes the incomplete file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import h5py
import numpy as np

from hpcfit.io.dims import FileFinish, finish_file
from hpcfit.io.piece_union import PieceUnion, merge_pieces
from hpcfit.runtime.comm import Comm
from hpcfit.runtime.errors import on_fatal

Selection = tuple[slice, ...]
Piece = tuple[str, Selection, np.ndarray]
Entry = tuple[Selection, np.ndarray] | PieceUnion  # a piece, or a rank's pieces of one dataset merged

INCOMPLETE_SUFFIX = ".incomplete"
_MAX_PIECE_BYTES = 1 << 30
_COLLECTIVE_MIN_BYTES = 64 << 20  # "auto": collective transfers for writes of at least this size in total  # MPI-IO transfers above 2 GiB fail in HDF5 1.10: split well below


def parallel_hdf5_available() -> bool:
    """True when h5py was built against a parallel HDF5 (and can use the mpio driver)."""
    if os.environ.get("HPCFIT_SERIAL_HDF5", "") not in ("", "0"):
        return False
    return bool(h5py.get_config().mpi)


def incomplete_path(final: str | Path) -> Path:
    final = Path(final)
    return final.with_name(final.name + INCOMPLETE_SUFFIX)


class OutputFile:
    """One output file per run; every method is collective (all ranks call it, same arguments)."""

    def __init__(self, path: str | Path, comm: Comm, *, mode: str | None = None, transfer: str = "auto",
                 hints: dict[str, str] | None = None, merge: bool = True):
        self.comm = comm
        self.transfer = transfer
        self.merge = merge  # a rank's pieces of one dataset as one union write (False: one write per piece)
        self.hints = dict(hints or {})
        self._planes: dict[str, tuple[np.ndarray, np.dtype]] = {}  # serial mode: chunk addresses of plane datasets
        self._fd: int | None = None
        self.final = Path(path)
        self.temp = incomplete_path(self.final)
        if mode is None:
            mode = "single" if comm.size == 1 else ("mpio" if parallel_hdf5_available() and comm.mpi is not None else "serial")
        self.mode = mode
        if comm.is_root:
            self.final.parent.mkdir(parents=True, exist_ok=True)
            if self.temp.exists():
                self.temp.unlink()
        comm.barrier()
        self.h5: h5py.File | None
        if mode == "mpio":
            from hpcfit.io.mpi_hints import mpi_info

            self.h5 = h5py.File(self.temp, "w", driver="mpio", comm=comm.mpi, info=mpi_info(self.hints))
        else:
            self.h5 = h5py.File(self.temp, "w") if comm.is_root else None
        self.finish = FileFinish()
        self._unregister = on_fatal(self._remove_incomplete)

    # -- metadata -----------------------------------------------------------------------------------------------
    def create_dataset(self, name: str, shape: Sequence[int], dtype: Any, *, attrs: dict[str, Any] | None = None,
                       chunks: Sequence[int] | bool | None = None, fillvalue: Any = None, early: bool = False) -> None:
        """Create a dataset (collective).

        Without a ``fillvalue`` the dataset is not pre-filled (``fill_time='never'``): parallel HDF5 allocates
        datasets at creation and would otherwise write every byte twice, once as fill and once as data, so the
        job must write every element. Give a ``fillvalue`` for datasets that may be left partly unwritten.

        ``early=True``: a dataset of planes (one chunk per index of the first axis, little-endian, allocated now,
        never filled) for ``write_plane``/``read_plane`` from any rank during the work; it may be shortened with
        ``shrink``."""
        shape = tuple(int(s) for s in shape)
        dcpl = None
        if early:
            dtype = np.dtype(dtype).newbyteorder("<")
            chunks = (1,) + shape[1:] if all(shape) else None
            dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
            dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)
        if chunks is not None and chunks is not True:
            chunks = tuple(max(1, min(int(c), s)) for c, s in zip(chunks, shape)) if all(shape) else None
        if self.h5 is not None:
            dset = self.h5.create_dataset(name, shape=shape, dtype=dtype, chunks=chunks, fillvalue=fillvalue,
                                          fill_time="never" if fillvalue is None else "ifset", dcpl=dcpl,
                                          maxshape=shape if early and chunks else None)
            for key, value in (attrs or {}).items():
                dset.attrs[key] = _attr_value(value)
        if early and self.mode == "serial":
            self._planes[name] = self.comm.bcast(_plane_addresses(dset) if self.comm.is_root else None)

    def write_small(self, name: str, data: Any, *, attrs: dict[str, Any] | None = None) -> None:
        """Create a dataset holding rank 0's ``data`` (small arrays: names, axes, tables). Collective."""
        data = self.comm.bcast(np.asarray(data) if self.comm.is_root else None)
        if data.dtype.kind == "U":
            # Fixed-length UTF-8 bytes: parallel HDF5 cannot write variable-length strings collectively.
            data = np.char.encode(data, "utf-8") if data.size else data.astype("S1")
        if self.h5 is not None:
            dset = self.h5.create_dataset(name, data=data)
            for key, value in (attrs or {}).items():
                dset.attrs[key] = _attr_value(value)

    def set_attrs(self, path: str, attrs: dict[str, Any]) -> None:
        """Set attributes on a group or dataset (rank 0's values are used on every rank). Collective."""
        attrs = self.comm.bcast(attrs if self.comm.is_root else None)
        if self.h5 is not None:
            target = self.h5.require_group(path) if path not in self.h5 else self.h5[path]
            for key, value in attrs.items():
                target.attrs[key] = _attr_value(value)

    def name_dimensions(self, dataset: str, names: Sequence[str], coords: dict[str, Any] | None = None) -> None:
        """Name the axes of ``dataset`` (one name per axis; ``coords``: values of some of the dimensions; the
        others have none), for netCDF readers such as xarray. Applied to the complete file by ``commit`` (``hpcfit.io.dims``).
        A dimension name means one length throughout the file. Collective (same arguments on every rank)."""
        self.finish.name_dimensions(dataset, names, coords)

    def link(self, new: str, existing: str) -> None:
        """Make ``new`` a second name (an HDF5 hard link) of the dataset ``existing``, by ``commit``. Collective."""
        self.finish.link(new, existing)

    def require_group(self, path: str) -> None:
        if self.h5 is not None:
            self.h5.require_group(path)

    # -- data ---------------------------------------------------------------------------------------------------
    def write(self, pieces: Iterable[Piece]) -> None:
        """Write this rank's pieces (dataset name, selection, array). Collective: every rank calls it."""
        local: dict[str, list[tuple[Selection, np.ndarray]]] = {}
        for name, selection, array in pieces:
            for sel, part in _split_piece(_normalise(selection), np.asarray(array)):
                local.setdefault(name, []).append((sel, part))
        if self.mode == "mpio":
            self._write_collective(local)
        elif self.mode == "serial":
            self._write_in_turn(local)
        else:
            self._write_direct(self.h5, local)

    def _write_collective(self, local: dict[str, list[tuple[Selection, np.ndarray]]]) -> None:
        merged = {name: self._merged(self.h5[name], items) for name, items in local.items()}
        counts = self.comm.allgather({name: (len(entries), sum(_entry_bytes(e) for e in entries))
                                      for name, entries in merged.items()})
        names = sorted(set().union(*counts))
        for name in names:
            dset = self.h5[name]
            rounds = max(c.get(name, (0, 0))[0] for c in counts)
            total = sum(c.get(name, (0, 0))[1] for c in counts)
            mine = merged.get(name, [])
            if not _use_collective(self.transfer, total, self.comm.size):
                for entry in mine:
                    _write_entry(dset, entry)
                continue
            with dset.collective:
                for r in range(rounds):
                    if r < len(mine):
                        _write_entry(dset, mine[r])
                    else:
                        _write_nothing(dset)

    def _write_in_turn(self, local: dict[str, list[tuple[Selection, np.ndarray]]]) -> None:
        if self.comm.is_root:
            self.h5.close()
        for turn in range(self.comm.size):
            if turn == self.comm.rank and local:
                with _unbuffered(self.temp) as h5:
                    self._write_direct(h5, local)
            self.comm.barrier()
        if self.comm.is_root:
            self.h5 = h5py.File(self.temp, "r+")

    def _write_direct(self, h5: h5py.File, local: dict[str, list[tuple[Selection, np.ndarray]]]) -> None:
        for name, items in local.items():
            dset = h5[name]
            for entry in self._merged(dset, items):
                _write_entry(dset, entry)

    def _merged(self, dset: h5py.Dataset, items: list[tuple[Selection, np.ndarray]]) -> list[Entry]:
        """A rank's pieces of one dataset as one union write where they can be merged (``hpcfit.io.piece_union``):
        one MPI-IO call (one collective round) per dataset instead of one per piece."""
        return merge_pieces(dset.shape, dset.dtype, items) if self.merge else items

    # -- planes written during the work (not collective) --------------------------------------------------------
    def write_plane(self, name: str, index: int, array: np.ndarray) -> None:
        """Write plane ``index`` of an ``early`` dataset from this rank alone (any time; not collective)."""
        if self.mode == "serial":
            offsets, dtype = self._planes[name]
            data = np.ascontiguousarray(array, dtype=dtype)
            _pwrite_all(self._file_descriptor(), memoryview(data.reshape(-1)).cast("B"), int(offsets[index]))
            return
        dset = self.h5[name]
        _write_plane_h5(dset, index, np.ascontiguousarray(array, dtype=dset.dtype))

    def read_plane(self, name: str, index: int, out: np.ndarray) -> np.ndarray:
        """Read plane ``index`` of an ``early`` dataset into ``out`` (this rank alone; not collective)."""
        if self.mode == "serial":
            offsets, dtype = self._planes[name]
            view = out.view(dtype) if out.dtype == dtype else np.empty(out.shape, dtype)
            buf = memoryview(view.reshape(-1)).cast("B")
            got = os.preadv(self._file_descriptor(), [buf], int(offsets[index]))
            if got != buf.nbytes:
                raise OSError(f"{self.temp}: short read of plane {index} of {name}")
            if view is not out:
                out[...] = view
            return out
        self.h5[name].read_direct(out, np.s_[index], np.s_[...])
        return out

    def shrink(self, name: str, length: int) -> None:
        """Cut an ``early`` dataset to its first ``length`` planes (collective)."""
        if self.mode == "serial":
            self.comm.barrier()  # every rank's pwrite is done before HDF5 touches the dataset
        if self.h5 is not None:
            self.h5[name].resize(int(length), axis=0)

    def _file_descriptor(self) -> int:
        if self._fd is None:
            self._fd = os.open(self.temp, os.O_RDWR)
        return self._fd

    # -- completion ---------------------------------------------------------------------------------------------
    def commit(self) -> Path:
        """Close the file on every rank and give it its final name. Collective."""
        def finish_and_rename() -> None:
            finish_file(self.temp, self.finish)
            os.replace(self.temp, self.final)

        self._close_everywhere(then_on_root=finish_and_rename)
        return self.final

    def discard(self) -> None:
        """Close and remove the incomplete file (collective): a run that stopped before writing everything."""
        self._close_everywhere(then_on_root=self._remove_incomplete)

    def _close_everywhere(self, then_on_root: Callable[[], None]) -> None:
        """Close the file on every rank, let rank 0 alone act on the closed file, and wait for it. Collective."""
        self._close_descriptor()
        if self.h5 is not None:
            self.h5.close()
            self.h5 = None
        self.comm.barrier()
        if self.comm.is_root:
            then_on_root()
        self.comm.barrier()
        self._unregister()

    def abandon(self) -> None:
        """Close and remove the incomplete file on this rank alone (a serial run's failure: no rank to wait for;
        with several ranks ``errors.fatal`` does this before aborting)."""
        self._close_descriptor()
        if self.h5 is not None:
            try:
                self.h5.close()
            except Exception:  # noqa: BLE001 - removing the file matters more
                pass
            self.h5 = None
        self._remove_incomplete()
        self._unregister()

    def _close_descriptor(self) -> None:
        if self._fd is not None:
            os.fsync(self._fd)
            os.close(self._fd)
            self._fd = None

    def _remove_incomplete(self) -> None:
        try:
            self.temp.unlink()
        except OSError:
            pass


def _use_collective(transfer: str, total_bytes: int, size: int) -> bool:
    """Collective (two-phase) transfers pay off for large writes on parallel file systems; for small ones the
    extra synchronisation costs more than it saves, so ``auto`` writes them independently."""
    if transfer == "auto":
        return total_bytes >= _COLLECTIVE_MIN_BYTES
    return transfer == "collective"


def _normalise(selection: Any) -> Selection:
    if not isinstance(selection, tuple):
        selection = (selection,)
    out = []
    for s in selection:
        if isinstance(s, (int, np.integer)):
            out.append(slice(int(s), int(s) + 1))
        elif isinstance(s, slice) and s.step in (None, 1) and s.start is not None and s.stop is not None:
            out.append(slice(int(s.start), int(s.stop)))
        else:
            raise ValueError(f"output selections must be explicit slices or integers, got {s!r}")
    return tuple(out)


def _split_piece(sel: Selection, array: np.ndarray) -> list[tuple[Selection, np.ndarray]]:
    """Check a piece against its selection (trailing dataset axes may be left out of the selection) and
    split pieces too large for one MPI-IO transfer along their first axis."""
    shape = tuple(s.stop - s.start for s in sel)
    if array.shape[:len(shape)] != shape:
        if array.size != int(np.prod(shape)):
            raise ValueError(f"piece of shape {array.shape} does not fill selection of shape {shape}")
        array = array.reshape(shape)
    if array.nbytes <= _MAX_PIECE_BYTES or shape[0] <= 1:
        return [(sel, array)]
    rows = max(1, int(_MAX_PIECE_BYTES // max(array[0].nbytes, 1)))
    first = sel[0]
    return [((slice(first.start + r, first.start + min(r + rows, shape[0])),) + sel[1:], array[r:r + rows])
            for r in range(0, shape[0], rows)]


def _entry_bytes(entry: Entry) -> int:
    return entry.values.nbytes if isinstance(entry, PieceUnion) else entry[1].nbytes


def _write_entry(dset: h5py.Dataset, entry: Entry) -> None:
    if isinstance(entry, PieceUnion):
        entry.write(dset)
    else:
        _write_selection(dset, *entry)


def _write_selection(dset: h5py.Dataset, sel: Selection, array: np.ndarray) -> None:
    full = sel + tuple(slice(0, n) for n in dset.shape[len(sel):])
    array = np.ascontiguousarray(array, dtype=dset.dtype if dset.dtype.kind != "O" else None)
    if array.size == 0:
        _write_nothing(dset)
        return
    dset[full] = array.reshape(tuple(s.stop - s.start for s in full))


def _write_nothing(dset: h5py.Dataset) -> None:
    """Take part in a collective write with an empty selection (h5py skips empty writes itself)."""
    file_space = dset.id.get_space()
    file_space.select_none()
    mem_space = h5py.h5s.create_simple((1,))
    mem_space.select_none()
    dset.id.write(mem_space, file_space, np.zeros(1, dtype=dset.dtype), dxpl=dset._dxpl)


def _plane_addresses(dset: h5py.Dataset) -> tuple[np.ndarray, np.dtype]:
    """File offsets of every plane's chunk of an early-allocated dataset, and its on-disk type."""
    dset.file.flush()
    offsets = np.empty(dset.shape[0] if dset.shape else 0, np.int64)
    for i in range(dset.id.get_num_chunks()):
        info = dset.id.get_chunk_info(i)
        offsets[info.chunk_offset[0]] = info.byte_offset
    return offsets, dset.dtype


def _pwrite_all(fd: int, data: memoryview, offset: int) -> None:
    done = 0
    while done < data.nbytes:
        done += os.pwrite(fd, data[done:], offset + done)


def _write_plane_h5(dset: h5py.Dataset, index: int, array: np.ndarray) -> None:
    file_space = dset.id.get_space()
    file_space.select_hyperslab((index,) + (0,) * (len(dset.shape) - 1), (1,) + dset.shape[1:])
    mem_space = h5py.h5s.create_simple((1,) + dset.shape[1:])
    dset.id.write(mem_space, file_space, array.reshape((1,) + dset.shape[1:]))  # default dxpl: independent


def _attr_value(value: Any) -> Any:
    if value is None:
        return "None"
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, str) for v in value):
        return np.array(value, dtype=h5py.string_dtype())
    if isinstance(value, (dict,)):
        import json

        return json.dumps(value, default=str)
    return value


def _unbuffered(path: Path) -> h5py.File:
    """The file opened for writing with HDF5's sieve buffer off: each raw-data write reaches the OS at once, so a
    full disk fails the write that hit it (one clear error) instead of the file's close, whose failure h5py can
    only report as a traceback from a destructor. The writes here are whole pieces, not worth buffering."""
    fapl = h5py.h5p.create(h5py.h5p.FILE_ACCESS)
    fapl.set_fclose_degree(h5py.h5f.CLOSE_STRONG)  # what h5py.File asks for (every object closes with the file)
    fapl.set_sieve_buf_size(0)
    return h5py.File(h5py.h5f.open(os.fsencode(path), h5py.h5f.ACC_RDWR, fapl=fapl))
