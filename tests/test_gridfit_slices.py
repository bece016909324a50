"""gridfit without a serial rank 0: the catalogue read in row slices (FITS, ECSV), one per rank, and the FITS
results table written by every rank at once.

* the shares of ``catalog_rows`` cover every row once, in order, for any number of shares (more than rows too),
  and hold the values a whole read gives;
* runs on 1, 2 and 3 ranks give the same datasets and byte-identical results tables, for FITS and ECSV catalogues;
* a bad value in a rank's slice ends the run in set-up (exit 1) naming the rank, the file, the column and the
  row; ``hpcfit validate`` (one process) still reads every value (exit 2); ids duplicated across slices are found;
* FITS text ids are text (they were written as "b'gal...'");
* ``fits_parts`` pieces make the bytes of astropy's own table, whatever the cut.
"""

from __future__ import annotations

import filecmp
import re
from pathlib import Path

import numpy as np
import pytest
from astropy.table import Table

from gridfit_helpers import write_config, write_inputs
from h5compare import assert_same_datasets, datasets
from hpcfit.gridfit.catalog import BandSpec, read_catalog
from hpcfit.gridfit.catalog_rows import read_layout, read_share, share_bounds, sliceable
from hpcfit.gridfit.results_table import FITS_BLOCK, fits_parts, write_table
from hpcfit.io.rank_bytes import padding, write_in_rank_order
from hpcfit.runtime.comm import SerialComm
from launch import hpcfit

N_GALAXIES = 30
BAD_ROW, BAD_COLUMN = 25, "box100_err"  # in the last rank's slice on 2 and 3 ranks


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("gridfit_slices")
    table = write_inputs(directory, n_galaxies=N_GALAXIES)["table"]
    table.write(directory / "catalog.fits")
    bad = table.copy()
    bad[BAD_COLUMN][BAD_ROW] = -1.0
    bad.write(directory / "bad.ecsv")
    bad.write(directory / "bad.fits")
    dup = table.copy()
    dup["id"][N_GALAXIES - 1] = dup["id"][0]  # first and last row: different slices on 2 ranks
    dup.write(directory / "dup.fits")
    for name in ("catalog", "bad", "dup"):
        for fmt in ("ecsv", "fits"):
            if (directory / f"{name}.{fmt}").exists():
                write_config(directory, f"{name}_{fmt}.yaml", f"{name}_{fmt}.h5", catalog=f"{name}.{fmt}",
                             extra="run:\n  progress: none\n  overwrite: true\n")
    return directory


# -- the shares --------------------------------------------------------------------------------------------------


def _ecsv_with_comments(directory: Path) -> Path:
    """An ECSV catalogue with a blank and a comment line among its data lines (the reader skips both)."""
    path = directory / "commented.ecsv"
    lines = (directory / "catalog.ecsv").read_text().splitlines()
    names = next(i for i, line in enumerate(lines) if not line.startswith("#"))
    lines.insert(names + 4, "")
    lines.insert(names + 9, "# a comment among the rows")
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("name", ["catalog.fits", "catalog.ecsv", "commented.ecsv"])
def test_shares_cover_every_row_once_for_any_count(workdir, name):
    path = _ecsv_with_comments(workdir) if name == "commented.ecsv" else workdir / name
    whole = Table.read(path)
    layout = read_layout(path, sliceable(path, None))
    assert layout.n_rows == len(whole) == N_GALAXIES
    assert layout.empty.colnames == whole.colnames and len(layout.empty) == 0
    for parts in (1, 2, 3, 7, N_GALAXIES, N_GALAXIES + 5, 64):
        shares = [read_share(layout, k, parts) for k in range(parts)]
        assert sum(len(s) for s in shares) == N_GALAXIES, parts
        ids = np.concatenate([np.asarray(s["id"]).astype(str) for s in shares])
        assert list(ids) == [str(v) for v in whole["id"]], parts
        flux = np.concatenate([np.ma.filled(np.ma.asarray(s["box70_flux"]), np.nan) for s in shares])
        np.testing.assert_array_equal(flux, np.ma.filled(np.ma.asarray(whole["box70_flux"]), np.nan))
        assert all(s["box70_flux"].unit == whole["box70_flux"].unit for s in shares)


def test_share_bounds_sizes_differ_by_at_most_one():
    for n, parts in ((10, 3), (2, 5), (0, 4), (100_000, 64)):
        bounds = share_bounds(n, parts)
        assert bounds[0] == 0 and bounds[-1] == n and len(bounds) == parts + 1
        sizes = np.diff(bounds)
        assert sizes.min() >= 0 and sizes.max() - sizes.min() <= 1


def test_only_fits_and_ecsv_are_sliced():
    assert sliceable("a.fits", None) == "fits" and sliceable("a.dat", "fits") == "fits"
    assert sliceable("a.ecsv", None) == "ecsv" and sliceable("a.txt", "ascii.ecsv") == "ecsv"
    assert sliceable("a.csv", None) is None and sliceable("a.xml", "votable") is None
    assert sliceable("a.fits.gz", None) is None


def test_a_slice_names_the_file_rows_of_a_bad_value(workdir):
    layout = read_layout(workdir / "bad.fits", "fits")
    share = read_share(layout, 2, 3)  # rows 20-29
    bands = [BandSpec("b", "box100_flux", BAD_COLUMN)]
    with pytest.raises(ValueError, match=rf"bad\.fits: column '{BAD_COLUMN}': errors must be positive: 1 row "
                                         rf"\(ids: gal000{BAD_ROW}; file rows: {BAD_ROW}\)"):
        read_catalog(share, bands, distance_column="distance", source_name=str(workdir / "bad.fits"),
                     row_offset=20)
    # the layout alone (no values) passes: the bad value is only seen where its row is read
    read_catalog(layout.empty, bands, distance_column="distance")


def test_fits_text_ids_are_text_not_bytes_reprs(workdir):
    bands = [BandSpec("b", "box100_flux", "box100_err")]
    fits_ids = read_catalog(workdir / "catalog.fits", bands, distance_column="distance").ids
    ecsv_ids = read_catalog(workdir / "catalog.ecsv", bands, distance_column="distance").ids
    assert fits_ids.dtype.kind == "U" and list(fits_ids) == list(ecsv_ids)
    assert fits_ids[0] == "gal00000"


# -- the FITS results table in pieces ----------------------------------------------------------------------------


def _table_inputs(n: int):
    rng = np.random.default_rng(5)
    ids = np.array([f"gal{i:05d}" for i in range(n)])
    columns = {"n_bands": (rng.integers(0, 7, n).astype(np.int32), ""),
               "best.model_index": (rng.integers(-1, 99, n), ""),
               "best.temperature": (rng.random(n), "K"), "bayes.log_dust_mass": (rng.random(n), "dex(solMass)"),
               "best.flux": (rng.random(n), "mJy")}
    return ids, columns


@pytest.mark.parametrize("cuts", [[0, 41], [0, 13, 27, 41], [0, 0, 41, 41], [0, 1, 2, 40, 41]])
def test_fits_pieces_make_astropys_table_byte_for_byte(tmp_path, cuts):
    ids, columns = _table_inputs(41)
    reference = write_table(tmp_path / "whole.fits", ids, columns).read_bytes()
    parts = [fits_parts(ids[a:b], {k: (v[a:b], u) for k, (v, u) in columns.items()}, 41)
             for a, b in zip(cuts, cuts[1:])]
    body = parts[0][0] + b"".join(rows for _, rows in parts)
    assert body + padding(len(body), FITS_BLOCK) == reference
    assert [p.name for p in tmp_path.iterdir()] == ["whole.fits"]  # no temporary file left


def test_rank_bytes_on_one_process_writes_and_renames(tmp_path):
    target = tmp_path / "t.bin"
    target.write_bytes(b"old")
    write_in_rank_order(SerialComm(), target, b"abc", head=b"H", pad_to=8, pad_byte=b"-")
    assert target.read_bytes() == b"Habc----"
    assert [p.name for p in tmp_path.iterdir()] == ["t.bin"]


# -- runs on 1, 2 and 3 ranks ------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["fits", "ecsv"])
def test_same_outputs_and_results_table_on_1_2_3_ranks(workdir, fmt):
    outputs = []
    for n in (1, 2, 3):
        result = hpcfit(["run", f"catalog_{fmt}.yaml", "--set", f"output=ranks{n}_{fmt}.h5"], n=n, cwd=workdir)
        assert result.returncode == 0, result.output
        outputs.append(workdir / f"ranks{n}_{fmt}.h5")
    for other in outputs[1:]:
        assert_same_datasets(outputs[0], other)
        assert filecmp.cmp(outputs[0].with_name(outputs[0].stem + "_results.fits"),
                           other.with_name(other.stem + "_results.fits"), shallow=False)
    ids = datasets(outputs[0])["ids"]
    assert ids[0] == b"gal00000"  # text ids, from either format
    table = Table.read(outputs[0].with_name(outputs[0].stem + "_results.fits"))
    assert list(table["id"][:2]) == ["gal00000", "gal00001"]
    assert not [p for p in workdir.iterdir() if p.name.endswith(".tmp")]


def test_ecsv_results_table_same_on_1_and_3_ranks(workdir):
    tables = []
    for n in (1, 3):
        out = f"table{n}.h5"
        result = hpcfit(["run", "catalog_fits.yaml", "--set", f"output={out}", "--set",
                         "gridfit.fit.results_table=ecsv"], n=n, cwd=workdir)
        assert result.returncode == 0, result.output
        tables.append(workdir / f"table{n}_results.ecsv")
    assert filecmp.cmp(*tables, shallow=False)


@pytest.mark.parametrize("fmt", ["fits", "ecsv"])
def test_bad_value_in_another_ranks_slice_ends_setup_naming_rank_file_column_row(workdir, fmt):
    result = hpcfit(["run", f"bad_{fmt}.yaml"], n=2, cwd=workdir)
    assert result.returncode == 1, result.output
    assert re.search(rf"FATAL on rank 1 of 2 .*while processing setup: CatalogError: \S*bad\.{fmt}: column "
                     rf"'{BAD_COLUMN}': errors must be positive: 1 row \(ids: gal000{BAD_ROW}; file rows: {BAD_ROW}\)",
                     result.output), result.output
    assert not (workdir / f"bad_{fmt}.h5").exists()


@pytest.mark.parametrize("fmt", ["fits", "ecsv"])
@pytest.mark.parametrize("n", [None, 2])
def test_validate_still_reads_every_value(workdir, fmt, n):
    """One process or under mpiexec: validate has no set-up to leave the values to."""
    result = hpcfit(["validate", f"bad_{fmt}.yaml"], n=n, cwd=workdir)
    assert result.returncode == 2, result.output
    assert f"column '{BAD_COLUMN}': errors must be positive: 1 row (ids: gal000{BAD_ROW})" in result.output


def test_ids_duplicated_across_slices_are_found(workdir):
    result = hpcfit(["run", "dup_fits.yaml"], n=2, cwd=workdir)
    assert result.returncode == 1, result.output
    assert re.search(r"dup\.fits: column 'id': duplicate ids: gal00000", result.output), result.output


def test_zero_rows_check_everything_but_values_with_a_redshift_column():
    """The layout check and an empty share (P > rows) run the reader on no rows, redshifts and flags included."""
    empty = Table({"id": np.array([], "U3"), "z": np.array([]), "f": np.array([]), "e": np.array([]),
                   "flag": np.array([], "U3")})
    bands = [BandSpec("b", "f", "e", upper_limit_column="flag")]
    cat = read_catalog(empty, bands, redshift_column="z", cosmology="Planck18")
    assert cat.n_galaxies == 0 and cat.distance_mpc.shape == (0,)
    with pytest.raises(ValueError, match="unknown cosmology 'Nope'"):
        read_catalog(empty, bands, redshift_column="z", cosmology="Nope")
    with pytest.raises(ValueError, match="column 'e1': column not found"):
        read_catalog(empty, [BandSpec("b", "f", "e1")], redshift_column="z")


def test_more_ranks_than_rows(workdir):
    """3 ranks, 2 galaxies: one rank reads an empty share and writes no row of the table (but its padding)."""
    Table.read(workdir / "catalog.ecsv")[:2].write(workdir / "two.ecsv", overwrite=True)
    write_config(workdir, "two.yaml", "two.h5", catalog="two.ecsv", extra="run:\n  progress: none\n  overwrite: true\n")
    outputs = []
    for n in (1, 3):
        result = hpcfit(["run", "two.yaml", "--set", f"output=two{n}.h5"], n=n, cwd=workdir)
        assert result.returncode == 0, result.output
        outputs.append(workdir / f"two{n}.h5")
    assert_same_datasets(*outputs)
    assert filecmp.cmp(workdir / "two1_results.fits", workdir / "two3_results.fits", shallow=False)
