"""gridfit's costs that were rank 0's before the catalogue was read in slices, measured per galaxy, into one JSON:

    python bench/scaling/gridfit_rank0.py [bench/scaling/gridfit_rank0.json] [--galaxies 20000] [--repeat 3]

For the scaling study's synthetic catalogue written as ECSV and as FITS, at G and G/4 galaxies (so that a fixed
part and a per-galaxy part can be told apart, ``a + b·G``), in CPU seconds (``time.process_time``: the machine is
shared, and time-sharing stretches wall time):

* ``layout``: what rank 0 reads in ``plan`` on several ranks (``catalog_rows.read_layout``: the FITS headers; the
  ECSV header lines and a count of the data lines) and the checks on the zero-row table;
* ``slice``: reading one share of the rows and validating it (``read_share`` + ``read_catalog``), per galaxy of
  the share (measured on the whole file as one share, and on a quarter as one of 4 shares);
* ``whole``: the earlier rank-0 read (``read_catalog`` of the file), for comparison;
* ``table_fits``: encoding a rank's rows of the FITS results table (``results_table.fits_parts``);
* ``gather_bytes_per_galaxy``: the arrays the Allgatherv moves per galaxy.

``fit.py`` reads this file (``report.py`` passes it on); without it the model falls back to the whole-read figures
of ``gridfit_components.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))
sys.path.insert(0, str(HERE))

import inputs  # noqa: E402
from gridfit_components import best_cpu  # noqa: E402


def line(sizes: tuple[int, int], seconds: tuple[float, float]) -> dict[str, float]:
    """a + b·G through two measurements (a and b clamped at 0: noise can make them negative)."""
    (g1, g2), (t1, t2) = sizes, seconds
    b = max((t2 - t1) / (g2 - g1), 0.0)
    return {"a": max(t1 - b * g1, 0.0), "b": b}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", nargs="?", type=Path, default=HERE / "gridfit_rank0.json")
    parser.add_argument("--galaxies", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)

    from astropy.table import Table

    from hpcfit.gridfit.catalog import BandSpec, read_catalog
    from hpcfit.gridfit.catalog_rows import read_layout, read_share
    from hpcfit.gridfit.results_table import fits_parts, result_columns

    sizes = (args.galaxies // 4, args.galaxies)
    result: dict = {"galaxies": list(sizes), "layout": {}, "slice": {}, "slice_quarter_share": {}, "whole": {}}
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        files = {}
        for g in sizes:
            ecsv, filters = inputs._gridfit_catalogue(directory, g)
            fits = directory / f"catalogue_{g}.fits"
            Table.read(ecsv).write(fits)
            files[g] = {"ecsv": ecsv, "fits": fits}
        bands = [BandSpec(n, f"{n}_flux", f"{n}_err", str(p)) for n, p in filters.items()]
        options = {"distance_column": "distance"}
        for kind in ("ecsv", "fits"):
            layout_s, slice_s, whole_s = [], [], []
            for g in sizes:
                path = files[g][kind]

                def layout_check(path=path):
                    layout = read_layout(path, kind)
                    read_catalog(layout.empty, bands, **options, source_name=str(path))
                    return layout

                layout_s.append(best_cpu(layout_check, args.repeat))
                layout = layout_check()
                slice_s.append(best_cpu(lambda layout=layout: read_catalog(
                    read_share(layout, 0, 1), bands, **options, source_name=str(layout.path), row_offset=0),
                    args.repeat))
                whole_s.append(best_cpu(lambda path=path: read_catalog(path, bands, **options), args.repeat))
            result["layout"][kind] = line(sizes, tuple(layout_s))
            result["slice"][kind] = line(sizes, tuple(slice_s))
            result["whole"][kind] = line(sizes, tuple(whole_s))
            quarter = best_cpu(lambda layout=layout: read_catalog(read_share(layout, 1, 4), bands, **options,
                                                                 source_name=str(layout.path), row_offset=0),
                               args.repeat)
            result["slice_quarter_share"][kind] = quarter / (sizes[1] / 4)
        cat = read_catalog(files[sizes[1]]["fits"], bands, **options)
        _, arrays = cat.to_arrays()
        result["gather_bytes_per_galaxy"] = sum(a.nbytes for a in arrays.values()) / sizes[1]
        table = []
        rng = np.random.default_rng(0)
        for g in sizes:
            n_b = cat.n_bands
            columns = result_columns(
                n_bands=np.full(g, n_b, np.int32), n_upper=np.zeros(g, np.int32),
                model_index=rng.integers(0, 10_000, g), chi2=rng.random(g), reduced_chi2=rng.random(g),
                param_names=("temperature", "beta"), param_units=("K", ""), params=rng.random((g, 2)),
                dust_mass=rng.random(g), dust_luminosity=rng.random(g), band_names=cat.band_names,
                model_flux=rng.random((g, n_b)),
                bayes={q: (rng.random(g), rng.random(g), unit) for q, unit in
                       (("temperature", "K"), ("beta", ""), ("dust_mass", "solMass"),
                        ("log_dust_mass", "dex(solMass)"))})
            ids = np.asarray(cat.ids[:g])
            table.append(best_cpu(lambda ids=ids, columns=columns, g=g: fits_parts(ids, columns, g), args.repeat))
        result["table_fits"] = line(sizes, tuple(table))
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
