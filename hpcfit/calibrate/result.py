"""Reading a calibrate output file: masters and calibrated science frames as astropy ``CCDData``
(``hpcfit.open(path)`` returns a :class:`CalibrateResult`).

``.masters``: name -> CCDData (``bias``, ``dark`` in adu / s, ``flat``; ``flat[1]`` & c. when there are several
groups, each with its night, filter and frame count in ``meta``). ``.science``: a sequence of the calibrated frames,
each read from the file only when indexed (by position or by frame name), with its 1-sigma ``StdDevUncertainty``
(when the run propagated it), its bad-pixel mask (the pixels stored as NaN) and the frame's name, file, exposure
time, date and the masters applied in ``meta``. ``.frames`` is the inventory table of every input file.
"""

from __future__ import annotations

from typing import Any, Iterator, Sequence

import numpy as np

from hpcfit.io.result import JobResult, decoded, unit_of

KINDS = ("bias", "dark", "flat")
_META_NAMES = {"names": "name", "paths": "path"}
_SCIENCE_META = ("names", "paths", "exptime", "date_obs", "night", "filter", "master_set", "masters_used")


def _scalar(value: Any) -> Any:
    """A table cell as a Python value (bytes decoded)."""
    value = value.item() if hasattr(value, "item") else value
    return value.decode() if isinstance(value, bytes) else value


def _ccd(data: np.ndarray, unit: str, *, sigma: np.ndarray | None = None, meta: dict[str, Any]) -> Any:
    from astropy.nddata import CCDData, StdDevUncertainty

    mask = ~np.isfinite(data)
    return CCDData(data, unit=unit or "", mask=mask,
                   uncertainty=StdDevUncertainty(sigma) if sigma is not None else None, meta=meta)


class ScienceFrames(Sequence):
    """The calibrated science frames, read one at a time: ``frames[0]``, ``frames["m13_001.fits"]``,
    ``for ccd in frames``."""

    def __init__(self, result: "CalibrateResult"):
        self._result = result
        with result.h5() as h5:
            self.meta = {key: decoded(h5[f"science/{key}"][()]) for key in _SCIENCE_META if f"science/{key}" in h5}
            self.unit = unit_of(h5["science/images"])
            self.has_uncertainty = "science/uncertainty" in h5
        self.names = [str(n) for n in self.meta.get("names", [])]

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, key: int | str) -> Any:  # type: ignore[override]
        if isinstance(key, str):
            if key not in self.names:
                raise KeyError(f"{self._result.path}: no science frame '{key}' (frames: {', '.join(self.names)})")
            key = self.names.index(key)
        if isinstance(key, slice):
            return [self[i] for i in range(*key.indices(len(self)))]
        index = range(len(self))[key]  # negative indices, and IndexError past the end
        with self._result.h5() as h5:
            data = h5["science/images"][index]
            sigma = h5["science/uncertainty"][index] if self.has_uncertainty else None
        meta = {_META_NAMES.get(k, k): _scalar(v[index]) for k, v in self.meta.items()}
        return _ccd(data, self.unit, sigma=sigma, meta=meta)

    def __iter__(self) -> Iterator[Any]:
        return (self[i] for i in range(len(self)))

    def __repr__(self) -> str:
        return f"<{len(self)} calibrated science frame(s) of {self._result.path.name}>"


class CalibrateResult(JobResult):
    """A calibrate output file: ``masters``, ``science``, ``frames``, ``rejected``, ``bad_pixels``."""

    job = "calibrate"

    @property
    def masters(self) -> dict[str, Any]:
        """name -> CCDData of every master: ``bias``/``dark``/``flat``, or ``flat[0]``, ``flat[1]``, ... when a
        kind has several groups (by night and filter; ``meta`` says which)."""
        out: dict[str, Any] = {}
        with self.h5() as h5:
            for kind in KINDS:
                dset = h5[f"masters/{kind}"]
                groups = h5[f"masters/{kind}_groups"][()] if f"masters/{kind}_groups" in h5 else None
                for i in range(dset.shape[0]):
                    meta: dict[str, Any] = {"kind": kind}
                    if groups is not None and i < len(groups):
                        meta.update({name: _scalar(groups[name][i]) for name in groups.dtype.names})
                    name = kind if dset.shape[0] == 1 else f"{kind}[{i}]"
                    out[name] = _ccd(dset[i], unit_of(dset), meta=meta)
        return out

    @property
    def science(self) -> ScienceFrames:
        """The calibrated science frames (CCDData, each read when indexed)."""
        return ScienceFrames(self)

    @property
    def bad_pixels(self) -> np.ndarray:
        """(sets, ny, nx) bool: the bad pixels of each combination of masters (``/masters/sets``)."""
        return self.read("masters/bad_pixels").astype(bool)

    def _table(self, name: str) -> Any:
        from astropy.table import Table

        rows = self.read(name)
        table = Table(rows)
        for column in table.colnames:
            if table[column].dtype.kind == "S":
                table[column] = np.char.decode(table[column], "utf-8")
        return table

    @property
    def frames(self) -> Any:
        """Every input file with its kind, night, filter, exposure, status and notes (an astropy Table)."""
        return self._table("frames")

    @property
    def rejected(self) -> Any:
        """The files left out, with the stage and the reason (an astropy Table)."""
        return self._table("rejected")


RESULT = CalibrateResult
