"""The run's output: the HDF5 file every rank writes (``h5out``) and its summary (``inspect``)."""
