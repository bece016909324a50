"""Helper of tests/test_calibrate_survey.py: the engine's prepare step (validation, survey on every rank, plan on
rank 0) of a calibrate config; rank 0 pickles the calibrate plan it made and the survey's rank count.

    [mpiexec -n N] python calibrate_plan.py CONFIG OUT.pkl
"""

import pickle
import sys

from hpcfit.engine.run import prepare_job
from hpcfit.registry import JOBS
from hpcfit.runtime.comm import world_comm

config, out = sys.argv[1], sys.argv[2]
comm = world_comm()
prepared = prepare_job(config, [], comm, plan=True, jobs=JOBS)
if comm.rank == 0:
    with open(out, "wb") as fh:
        pickle.dump({"ranks": comm.size, "calib": prepared.plan.info["calib"]}, fh)
