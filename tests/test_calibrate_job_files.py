"""calibrate reads every form astropy reads and accounts for every file under its inputs: a night whose frames are
partly tile-compressed (.fz) and gzip-compressed (.gz) gives the same masters and calibrated frames as the plain
night; stray files (not FITS, no image data, a frame type calibrate does not use) are listed in /skipped, counted in
the log, the summary and ``validate --plan``; truncated frames, compressed or not, stay in /rejected."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
from astropy.io import fits
from launch import hpcfit

from hpcfit.calibrate.kernels import frames as F
from hpcfit.calibrate.kernels import reading as R
from hpcfit.calibrate.kernels.synthetic import make_night, write_raw_frame
from hpcfit.cli import main

SHAPE = (40, 56)
CONFIG = """\
job: calibrate
output: {output}
calibrate:
  inputs: [{inputs}]
  batch_frames: 2
"""


def to_fz(path: Path) -> Path:
    """Re-save a frame tile-compressed (lossless Rice for integers), the image in HDU 1; remove the plain file."""
    with fits.open(path) as hdul:
        data, header = hdul[0].data, hdul[0].header.copy()
    target = path.with_name(path.name + ".fz")
    fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(data, header=header)]).writeto(target)
    path.unlink()
    return target


def to_gz(path: Path) -> Path:
    target = path.with_name(path.name + ".gz")
    target.write_bytes(gzip.compress(path.read_bytes()))
    path.unlink()
    return target


@pytest.fixture(scope="module")
def nights(tmp_path_factory):
    """The same synthetic night twice: plain, and mixed (compressed frames of every kind plus stray files)."""
    root = tmp_path_factory.mktemp("files")
    truth = make_night(root / "plain", shape=SHAPE, n_science=4)
    shutil.copytree(root / "plain", root / "mixed")
    mixed = root / "mixed"
    sci = sorted((mixed / "ScienceImages").glob("*.fits"))
    to_fz(sci[0])
    to_gz(sci[1])
    to_fz(sorted((mixed / "Darks").glob("*.fits"))[0])
    to_gz(sorted((mixed / "Flats").glob("*.fits"))[1])
    to_gz(sorted((mixed / "Bias").glob("*.fits"))[2])
    # strays: not FITS, FITS without image data, a frame type calibrate does not use
    (mixed / "ScienceImages" / "README.txt").write_text("observing log\n")
    (mixed / "Flats" / ".DS_Store").write_bytes(b"\0\1")
    table = fits.BinTableHDU.from_columns([fits.Column("x", "E", array=np.arange(3.0))])
    fits.HDUList([fits.PrimaryHDU(), table]).writeto(mixed / "ScienceImages" / "catalog.fits")
    write_raw_frame(mixed / "focus" / "focus_001.fits", np.full(SHAPE, 1200.0), IMAGETYP="focus", EXPTIME=1.0,
                    DATE_OBS="2024-03-10T23:00:00")
    # truncated frames: a plain one (caught by the header scan) and a gzip one (caught when read)
    data = truth.paths["science"][2].read_bytes()
    (mixed / "ScienceImages" / "truncated.fits").write_bytes(data[: len(data) // 2])
    big = write_raw_frame(root / "big.fits", np.random.default_rng(1).uniform(0, 60000, SHAPE), IMAGETYP="Light Frame",
                          EXPTIME=30.0, FILTER="V", DATE_OBS="2024-03-11T01:00:00")
    packed = gzip.compress(big.read_bytes(), compresslevel=0)  # stored: the cut lands in the data, not the header
    (mixed / "ScienceImages" / "truncated.fits.gz").write_bytes(packed[: len(packed) * 2 // 3])
    return root, truth


def run(root: Path, inputs: str, output: str) -> int:
    config = root / f"{Path(output).stem}.yaml"
    config.write_text(CONFIG.format(output=output, inputs=inputs))
    return main(["run", str(config)])


@pytest.fixture(scope="module")
def runs(nights):
    root, _ = nights
    assert run(root, "plain", "plain.h5") == 0
    assert run(root, "mixed", "mixed.h5") == 0
    return root


def _rows(h5: h5py.File, name: str) -> dict[str, tuple[str, ...]]:
    return {r["name"].decode(): tuple(v.decode() for v in r.tolist()[1:]) for r in h5[name][()]}


def _stem(name: str) -> str:
    return name.split(".")[0]


def test_compressed_frames_read_like_the_plain_ones(nights):
    root, _ = nights
    for plain in sorted((root / "plain").rglob("*.fits")):
        relative = plain.relative_to(root / "plain")
        forms = [p for p in (root / "mixed" / relative.parent).glob(plain.name + "*") if p.name != plain.name]
        for other in forms:
            a, b = F.read_frame(plain), F.read_frame(other)
            assert b.ok and b.layout.compression in ("gzip", "tile") and b.kind == a.kind
            assert (b.exptime, b.date_obs, b.filter, b.shape) == (a.exptime, a.date_obs, a.filter, a.shape)
            np.testing.assert_array_equal(R.read_rows(b, 5, 17, trim="[2:50,1:40]"),
                                          R.read_rows(a, 5, 17, trim="[2:50,1:40]"))
            for overscan in ("[51:56,1:40]", "[1:56,36:40]"):  # columns beside, rows below: pread and section
                np.testing.assert_array_equal(
                    R.read_rows(b, 5, 17, trim="[2:50,1:30]", overscan=overscan),
                    R.read_rows(a, 5, 17, trim="[2:50,1:30]", overscan=overscan))


def test_mixed_night_calibrates_every_good_frame_identically(runs):
    with h5py.File(runs / "plain.h5") as p, h5py.File(runs / "mixed.h5") as m:
        plain_names = [_stem(n.decode()) for n in p["science/names"][()]]
        mixed_names = [_stem(n.decode()) for n in m["science/names"][()]]
        assert sorted(mixed_names) == sorted(plain_names) and len(plain_names) == 4
        for i, name in enumerate(mixed_names):
            np.testing.assert_array_equal(m["science/images"][i], p["science/images"][plain_names.index(name)])
        for kind in ("bias", "dark", "flat"):
            np.testing.assert_array_equal(m[f"masters/{kind}"][()], p[f"masters/{kind}"][()])
            assert len(m[f"masters/{kind}_frames"]) == len(p[f"masters/{kind}_frames"])
        assert len(p["skipped"]) == 0 and len(p["rejected"]) == 0


def test_science_traffic_counts_compressed_frames_as_their_files(runs):
    """io_science_raw_bytes: a plain frame's pixels, a compressed frame's whole file (what astropy reads, not the
    decompressed size); the bytes read through astropy are counted by /proc/self/io like the pread ones."""
    from hpcfit.runtime import iostats

    root = runs
    with h5py.File(root / "mixed.h5") as m, h5py.File(root / "plain.h5") as p:
        mixed, plain = dict(m["science"].attrs), dict(p["science"].attrs)
    sci = root / "mixed" / "ScienceImages"
    compressed = [q for q in sci.iterdir() if q.name.endswith((".fz", ".gz"))]  # truncated.fits.gz: planned too
    assert len(compressed) == 3
    pixels = SHAPE[0] * SHAPE[1] * 2  # uint16
    assert plain["io_science_raw_bytes"] == 4 * pixels
    assert mixed["io_science_raw_bytes"] == 2 * pixels + sum(q.stat().st_size for q in compressed)
    if iostats.snapshot().available:
        assert mixed["io_science_read_bytes"] >= mixed["io_science_raw_bytes"]


def test_every_file_is_accounted_for(runs, capsys):
    with h5py.File(runs / "mixed.h5") as h5:
        skipped = {name: row[1] for name, row in _rows(h5, "skipped").items()}
        rejected = _rows(h5, "rejected")
        frames = {r["name"].decode() for r in h5["frames"][()]}
    assert set(skipped) == {"README.txt", ".DS_Store", "catalog.fits", "focus_001.fits"}
    assert skipped["README.txt"].startswith("not FITS") and skipped[".DS_Store"].startswith("not FITS")
    assert skipped["catalog.fits"].startswith("no image data")
    assert "IMAGETYP='focus'" in skipped["focus_001.fits"] and "not used" in skipped["focus_001.fits"]
    assert set(rejected) == {"truncated.fits", "truncated.fits.gz"}
    assert rejected["truncated.fits"][2] == "scan" and "truncated" in rejected["truncated.fits"][3]
    assert rejected["truncated.fits.gz"][2] == "calibrate" and "gzip" in rejected["truncated.fits.gz"][3]
    n_files = sum(1 for p in (runs / "mixed").rglob("*") if p.is_file())
    assert len(frames) + len(skipped) == n_files  # nothing disappears
    # counted in the run's log and summary (run again to see this run's output: the fixture's went to capsys before)
    capsys.readouterr()
    assert run(runs, "mixed", "again.h5") == 0
    out = capsys.readouterr().out
    assert f"{n_files} file(s) under the inputs: {len(frames)} frame(s), 4 skipped (1 frame type not used, " \
           "1 no image data, 2 not FITS)" in out
    for name in skipped:
        assert f"skipped {runs / 'mixed'}" in out and name in out


def test_validate_plan_counts_the_skipped_files(runs):
    result = hpcfit(["validate", "--plan", "mixed.yaml", "--set", "run.overwrite=true"], cwd=runs)
    assert result.returncode == 0, result.output
    assert "4 skipped (1 frame type not used, 1 no image data, 2 not FITS)" in result.stdout
    assert "plan: 5 science frame(s) to calibrate, 1 frame(s) rejected while planning" in result.stdout


def test_only_stray_files_is_a_clear_error(tmp_path):
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "notes.txt").write_text("x")
    (tmp_path / "c.yaml").write_text(CONFIG.format(output="o.h5", inputs="raw"))
    result = hpcfit(["validate", "c.yaml"], cwd=tmp_path)
    assert result.returncode == 2
    assert "calibrate.inputs.0" in result.output and "matches no FITS file" in result.output
    assert ".fits.gz" in result.output and "1 other file(s)" in result.output


@pytest.mark.mpi
@pytest.mark.parametrize("serial_h5py", [False, True])
def test_mixed_night_same_file_on_two_ranks(runs, serial_h5py):
    """Compressed frames are decompressed by whichever rank calibrates them; the file is the serial run's."""
    out = f"mixed2_{int(serial_h5py)}.h5"
    (runs / f"mixed2_{int(serial_h5py)}.yaml").write_text(CONFIG.format(output=out, inputs="mixed"))
    result = hpcfit(["run", f"mixed2_{int(serial_h5py)}.yaml"], n=2, cwd=runs, serial_h5py=serial_h5py)
    assert result.returncode == 0, result.output
    with h5py.File(runs / "mixed.h5") as a, h5py.File(runs / out) as b:
        for name in ("science/images", "masters/flat", "skipped", "rejected", "frames"):
            np.testing.assert_array_equal(a[name][()], b[name][()])


def test_truncated_fz_is_caught_by_the_scan_and_copies_keep_the_stem(nights, tmp_path):
    from hpcfit.calibrate.planning import fits_stem

    root, truth = nights
    packed = to_fz(Path(shutil.copy(truth.paths["science"][0], tmp_path / "light.fits")))
    data = packed.read_bytes()
    short = tmp_path / "short.fits.fz"
    short.write_bytes(data[: len(data) - 2880])
    frame = F.read_frame(short)
    assert not frame.ok and not frame.skip and frame.problems[0].startswith("truncated")
    assert [fits_stem(n) for n in ("a.fits.fz", "b.FIT.gz", "c.fz", "d.fts", "e.fits")] == list("abcde")
