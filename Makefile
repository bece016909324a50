# hpcfit: two commands on a fresh machine.
#   make demo   set everything up (if needed) and fit a cube with mpiexec -n 2
#   make test   set everything up (if needed) and run the test suite
VENV      ?= .venv
PY        := $(VENV)/bin/python
NP        ?= 2
MPIEXEC   ?= $(shell command -v mpiexec.mpich || command -v mpiexec)
DEMO_DIR  ?= demo_output

.PHONY: setup test demo bench clean help docs

help:
	@echo "make demo   - set up (first time: ~8 min) and run the cubefit demo under mpiexec -n $(NP)"
	@echo "make test   - set up and run the test suite"
	@echo "make setup  - only set up .venv (MPI + parallel HDF5 + mpi4py/h5py built from source)"
	@echo "make bench  - run the benchmarks in bench/ (minutes; prints ratios against the references)"

setup:
	@bash scripts/setup_env.sh

test: setup
	$(PY) -m pytest -q

demo: setup
	$(MPIEXEC) -n $(NP) $(VENV)/bin/hpcfit demo cubefit --output-dir $(DEMO_DIR)

bench: setup
	@bash bench/run_all.sh

clean:
	rm -rf $(DEMO_DIR) .pytest_cache

docs: setup
	$(VENV)/bin/hpcfit schema > docs/config_reference.md
