"""The gridfit job: chi2 of every model of an SED grid (Draine & Li 2007 dust emission, modified blackbody) for
every galaxy of a catalogue, best fits and likelihood-weighted estimates (CIGALE-like), on MPI.

- ``job``: the config section (``gridfit:``) and the hooks check / plan / setup / work / write (the only module of
  the job that sees the communicator); the output contract is in its docstring. ``config_types``: the value types
  of that section (grid axes, bands).
- ``plot``: one galaxy's SED with its best model and the parameters' likelihoods; ``demo``: the DustPedia (or
  synthetic) demo config.
- MPI-free science: ``catalog`` (read and check the photometry), ``grid`` (axes, parameter table, band fluxes of a
  model slice; built-in and user models), ``chi2_stage`` (the decomposition into chi2 items and one item's work),
  ``fit_block`` (one galaxy block x one model chunk), ``chi2`` (the matrix-product chi2 and scales), ``reduce``
  (best fit and likelihood-weighted moments, folded in a fixed order), ``partials`` (the partial records' rows, their
  routing to the galaxies' owner ranks and the fold there), ``results_table`` (the CIGALE-like table),
  ``synthetic`` (catalogues drawn from the grid, top-hat filters).
"""
