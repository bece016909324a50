"""The sample job's building blocks: counter-based random numbers, keyed permutations, hypercube designs and the
collective shuffle. Every random quantity is a function of (seed, global sample index), never of which rank
computed it, so results are identical for any rank count or job-array split."""
