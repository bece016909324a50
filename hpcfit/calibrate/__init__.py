"""The calibrate job: master bias/dark/flat from raw FITS frames, shared with every rank without copies, then every
science frame calibrated in parallel (the eloy / ccdproc use case). The pixel kernels are in
``hpcfit.calibrate.kernels`` and never see MPI.

- ``job``: the config section (``calibrate:``) and the hooks check / plan / setup / work / write; the output
  contract is in its docstring. ``masters`` and ``output`` are its collective stages (with ``job`` the only modules
  of the job that see the communicator).

- ``inputs``: every file under the inputs accounted for: the FITS files to scan (plain, ``.gz``, ``.fz``: see
  ``kernels.fitsforms``) and the files skipped, with why (``/skipped``).
- ``planning``: rank 0 turns the config and the frames' headers into a :class:`planning.CalibPlan` (groups to
  combine, ready master files, master sets, science batches, rejected frames) and reports config problems.
- ``masters``: the collective master building in ``setup``: row bands of every stack per rank, the whole-frame
  medians through three reductions, the masters in node-shared windows.
- ``science``: one work item: read, check and calibrate a batch of science frames, keep them in a scratch file
  (and optional FITS files), return a small result.
- ``fits_copies``: the CCDData-ready FITS copy of a calibrated frame (``fits_dir``); ``kernels.cosmics``: the
  frame mask and L.A.Cosmic through astroscrappy (``cosmic_rays``).
- ``output``: the collective ``write`` step: masters by row band, science frames by rounds from the scratch files,
  the tables.
- ``demo``: a synthetic night and its config (``hpcfit demo calibrate``; ``python -m hpcfit.calibrate.demo DIR``).
"""
