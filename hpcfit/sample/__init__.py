"""The sample job: draw N parameter vectors from a prior hypercube, run a forward SED model through a filter set
and store the rows collectively shuffled in one HDF5 file (agnfinder's photometry sampling), on MPI.

- ``job``: the config section (``sample:``) and the hooks check / plan / setup / work / write; ``shuffle``: the
  collective shuffle (the two modules of the job that see the communicator). The output contract is in ``job``.
- ``plot``: the figures of a sample file; ``demo``: the demo config.
- MPI-free: ``axes`` (the ``log_`` naming rule), ``counter_rng`` (counter-based random numbers), ``permutation``
  (keyed permutations), ``hypercube`` (uniform, Latin hypercube and Sobol' designs). The forward models are shared
  science in ``hpcfit.models.sed``.

Every random quantity is a function of (seed, global sample index), never of which rank computed it, so results
are identical for any rank count or job-array split.
"""
