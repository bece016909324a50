"""The engine's runtime: communicator, scheduling, checkpoints, signals, fatal errors, progress, provenance,
fault injection, node-shared arrays and the ``hpcfit`` logger. Imports no job and nothing of the engine."""
