"""Science kernels of the ``calibrate`` job (CCD reduction), free of MPI: plain numpy/astropy in, arrays out.

- ``frames``: header-only scan of raw FITS frames: discovery, classification (IMAGETYP or folder), night, filter,
  exposure, corrupt/truncated detection, grouping by (kind, night, filter) and master selection per science frame.
- ``headercards``: a fast read of the few header cards planning needs, astropy's values, astropy for anything odd.
- ``reading``: read a band of image rows of one frame (one pread, or astropy's section for a compressed file;
  BZERO/BSCALE applied, overscan, trim).
- ``combine``: sigma-clipped median/mean of a stack band, per-kind preparation of darks and flats, and an exact
  median of a whole frame assembled from per-band pieces (for flat normalisation when frames are split by rows).
- ``calibrate``: science = (raw - bias - dark_rate * t_exp) / flat, bad-pixel mask, optional uncertainty.
- ``fitsforms``: the file forms calibrate reads (plain, gzip-, tile-compressed) and where each keeps its image.
- ``cosmics``: per-frame uint8 masks (bad, saturated, cosmic ray) and L.A.Cosmic cleaning through astroscrappy.
- ``synthetic``: a synthetic night of raw frames on disk with known truth, for tests and demos.

The MPI engine (``hpcfit.calibrate.job``) drives these: every rank scans a share of the headers, rank 0 plans, each rank combines a row band
of every frame of a stack, masters are shared read-only, science frames are calibrated independently.
"""
