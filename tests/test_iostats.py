"""hpcfit.runtime.iostats: /proc/self/io parsed, deltas and sums over ranks, NaN with a note where the OS has none,
and bytes read with pread (the frames) counted."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest

from hpcfit.runtime import iostats

PROC_IO = """rchar: 1000
wchar: 200
syscr: 7
syscw: 3
read_bytes: 4096
write_bytes: 8192
cancelled_write_bytes: 0
"""


def test_parse_delta_and_sum(tmp_path):
    path = tmp_path / "io"
    path.write_text(PROC_IO)
    a = iostats.snapshot(str(path))
    assert (a.rchar, a.wchar, a.read_bytes, a.write_bytes) == (1000, 200, 4096, 8192) and a.available
    path.write_text(PROC_IO.replace("rchar: 1000", "rchar: 5000").replace("wchar: 200", "wchar: 260"))
    d = iostats.snapshot(str(path)) - a
    assert (d.rchar, d.wchar, d.read_bytes) == (4000, 60, 0)
    attrs = iostats.traffic_attrs([d, d + d])
    assert attrs["io_read_bytes"] == 12000 and attrs["io_written_bytes"] == 180
    assert list(attrs["io_read_bytes_per_rank"]) == [4000, 8000] and attrs["io_storage_read_bytes"] == 0
    assert "rchar/wchar" in iostats.note([d])


def test_missing_counters_are_nan_with_a_note(tmp_path):
    gone = iostats.snapshot(str(tmp_path / "nothing"))
    assert not gone.available and math.isnan(gone.rchar)
    (tmp_path / "bad").write_text("rchar: lots\n")
    assert not iostats.snapshot(str(tmp_path / "bad")).available
    attrs = iostats.traffic_attrs([iostats.ZERO, gone], prefix="io_science")
    assert math.isnan(attrs["io_science_read_bytes"]) and math.isnan(attrs["io_science_written_bytes"])
    assert "not available" in iostats.note([iostats.ZERO, gone])


def test_frame_reads_are_counted(tmp_path):
    """Frames are read with pread, which rchar counts (a memory map's page faults would not be)."""
    if not iostats.snapshot().available:
        pytest.skip("no /proc/self/io on this OS")
    from hpcfit.calibrate.kernels.reading import read_image
    from hpcfit.calibrate.kernels.synthetic import write_raw_frame

    path = write_raw_frame(tmp_path / "f.fits", np.full((256, 300), 1234.0), IMAGETYP="Light Frame")
    before = iostats.snapshot()
    image = read_image(str(path))
    read = (iostats.snapshot() - before).rchar
    assert image.shape == (256, 300) and float(image[5, 5]) == 1234.0
    assert 256 * 300 * 2 <= read <= 256 * 300 * 2 + 4 * 2880 + os.path.getsize(path) // 10
