"""Forward-model building blocks: filters and synthetic photometry, dust-emission templates, blackbodies.

Everything here takes and returns numpy arrays; nothing imports MPI.
"""
