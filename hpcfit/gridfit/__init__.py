"""Pieces of the gridfit job that are not MPI: the model grid (axes, parameter table, band fluxes of a slice), the
per-chunk fit and the fold of partial results, the CIGALE-like results table, the plot, and the demo data."""
