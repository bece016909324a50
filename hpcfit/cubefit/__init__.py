"""The cubefit job: fit an astropy model to every spectrum (or plane) of an N-d cube, the job of astropy's
``parallel_fit_dask``, on MPI.

- ``job``: the config section (``cubefit:``) and the hooks check / plan / setup / work / write (the only module of
  the job that sees the communicator); the output contract is in its docstring.
- ``plot``: the parameter and status maps on WCSAxes (``hpcfit plot FILE``); ``demo``: the L1448 (or synthetic)
  demo config; ``result``: ``CubefitResult``, an output read back as astropy objects (``hpcfit.open``, ``hpcfit
  export``); ``fitted_model``: the fitted model with array parameters, as ``parallel_fit_dask`` returns it.
- ``rows``: one range of fits read and fitted (the job's work, and ``hpcfit.parallel_fit`` in one process).
- MPI-free science: ``arrays`` (read FITS/HDF5/npy inputs by flat ranges), ``boxes`` (flat ranges -> hyperslabs),
  ``world`` (world coordinates from a WCS or explicit arrays), ``model_spec`` (the model from the config, units,
  bounds, tied/fixed), ``fitters`` (astropy's fitters by name), ``fit_chunk`` (fit one chunk of spectra),
  ``batched_lm`` (the batched TRF / LM solver), ``astropy_batch`` (the per-spectrum astropy path and its
  agreement checks), ``diagnostics`` (logs and plots of failed fits), ``synthetic`` (test cubes with known truth).
"""
