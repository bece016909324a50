"""Fitting: batched (vectorised) non-linear least squares and the adapter from astropy models to it."""
