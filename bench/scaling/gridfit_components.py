"""gridfit's serial (rank-0) costs that the scaling runs do not separate well, per galaxy, into one JSON file:

    python bench/scaling/gridfit_components.py [bench/scaling/gridfit_components.json] [--galaxies 20000] [--repeat 3]

* ``read_catalog`` of the scaling study's synthetic catalogue written as ECSV and as FITS (CPU seconds per galaxy:
  rank 0 parses the catalogue once, in ``plan``);
* the results table (``<output>_results.fits``, rank 0, after a Gatherv of the per-galaxy results) per galaxy;
* the owners' fold of the partial records (``partials.fold_rows``), per galaxy and model chunk;
* the broadcast payload of the parsed catalogue (bytes per galaxy) and the partial-record row of the exchange
  (bytes per galaxy and model chunk).

CPU time (``time.process_time``) is what the model uses: the machine is shared, and time-sharing stretches wall time.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))
sys.path.insert(0, str(HERE))

import inputs  # noqa: E402


def best_cpu(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.process_time()
        fn()
        times.append(time.process_time() - t0)
    return min(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", nargs="?", type=Path, default=HERE / "gridfit_components.json")
    parser.add_argument("--galaxies", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)

    from astropy.table import Table

    from hpcfit.gridfit.catalog import BandSpec, read_catalog
    from hpcfit.gridfit.fit_block import n_extra
    from hpcfit.gridfit.partials import LEAD
    from hpcfit.gridfit.reduce import BEST_RECORD
    from hpcfit.gridfit.results_table import result_columns, write_table

    g = args.galaxies
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        ecsv, filters = inputs._gridfit_catalogue(directory, g)
        fits = directory / "catalogue.fits"
        Table.read(ecsv).write(fits)
        bands = [BandSpec(n, f"{n}_flux", f"{n}_err", str(p)) for n, p in filters.items()]
        read = {}
        for kind, path in (("ecsv", ecsv), ("fits", fits)):
            read[kind] = best_cpu(lambda path=path: read_catalog(path, bands, distance_column="distance"),
                                  args.repeat) / g
        cat = read_catalog(fits, bands, distance_column="distance")
        _, arrays = cat.to_arrays()
        payload = sum(a.nbytes for a in arrays.values()) / g
        n_b, n_p, n_q = cat.n_bands, 2, 2 + 2  # modified blackbody: T, beta; default estimates add 2 scale ones
        row = 8 * (LEAD + BEST_RECORD + n_extra(n_p, n_b) + 2 + 3 * n_q)
        rng = np.random.default_rng(0)
        columns = result_columns(
            n_bands=np.full(g, n_b), n_upper=np.zeros(g, int), model_index=rng.integers(0, 10_000, g),
            chi2=rng.random(g), reduced_chi2=rng.random(g), param_names=("temperature", "beta"), param_units=("K", ""),
            params=rng.random((g, 2)), dust_mass=rng.random(g), dust_luminosity=rng.random(g),
            band_names=cat.band_names, model_flux=rng.random((g, n_b)),
            bayes={q: (rng.random(g), rng.random(g), u) for q, u in
                   (("temperature", "K"), ("beta", ""), ("dust_mass", "solMass"), ("log_dust_mass", "dex(solMass)"))})
        # the owners' fold: records of 40 chunks per galaxy, arriving in any order, folded in chunk order
        from hpcfit.gridfit.partials import fold_rows

        k_chunks, best_size, moments_size = 40, BEST_RECORD + n_extra(n_p, n_b), 2 + 3 * n_q
        rows = rng.random((g * k_chunks, LEAD + best_size + moments_size))
        rows[:, 0] = np.repeat(np.arange(g), k_chunks)
        rows[:, 1] = np.tile(np.arange(k_chunks), g)
        rows = rows[rng.permutation(len(rows))]
        t_fold = best_cpu(lambda: fold_rows(rows, 0, g, k_chunks, best_size, n_extra(n_p, n_b), n_q),
                          args.repeat) / (g * k_chunks)
        table = directory / "out_results.fits"
        t_table = best_cpu(lambda: write_table(table, np.asarray(cat.ids), columns), args.repeat) / g
    result = {"galaxies": g, "read_catalog_cpu_per_galaxy": read, "results_table_cpu_per_galaxy": t_table,
              "fold_cpu_per_galaxy_chunk": t_fold,
              "catalogue_broadcast_bytes_per_galaxy": payload, "exchange_row_bytes": row,
              "table_row_bytes": 8 * (4 + 2 * 4 + 2 + 3 + n_b + 2 * n_q)}
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
