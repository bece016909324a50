"""``python count_catalogue_reads.py ARGS``: run ``hpcfit ARGS`` counting, on each rank, the calls of gridfit's
catalogue parser (``hpcfit.gridfit.catalog.read_catalog``) and the catalogues rebuilt from broadcast arrays
(``Catalog.from_arrays``), then print one line per rank:
``catalogue-reads: rank R of N parsed P time(s), received B broadcast catalogue(s)``."""

from __future__ import annotations

import sys

from hpcfit.gridfit import catalog

COUNTS = {"reads": 0, "received": 0}
_read, _from_arrays = catalog.read_catalog, catalog.Catalog.from_arrays.__func__


def counted_read(*args, **kwargs):
    COUNTS["reads"] += 1
    return _read(*args, **kwargs)


def counted_from_arrays(cls, *args, **kwargs):
    COUNTS["received"] += 1
    return _from_arrays(cls, *args, **kwargs)


catalog.read_catalog = counted_read
catalog.Catalog.from_arrays = classmethod(counted_from_arrays)

if __name__ == "__main__":
    from hpcfit.cli import entry

    sys.argv[0] = "hpcfit"
    code = entry()
    from mpi4py import MPI

    rank, size = MPI.COMM_WORLD.Get_rank(), MPI.COMM_WORLD.Get_size()
    sys.stdout.write(f"catalogue-reads: rank {rank} of {size} parsed {COUNTS['reads']} time(s), received "
                     f"{COUNTS['received']} broadcast catalogue(s)\n")
    sys.stdout.flush()
    raise SystemExit(code)
