"""The engine's runtime: communicator, error handling, scheduling, progress and provenance."""
