"""Input and output: the run's HDF5 file, data cubes/images, catalogues."""
