"""The cubefit job's building blocks: input arrays, world coordinates, model specs, chunk fitting, diagnostics."""
