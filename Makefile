# hpcfit: two commands on a fresh machine.
#   make demo   set everything up (if needed) and fit a cube with mpiexec -n 2
#   make test   set everything up (if needed) and run the test suite
VENV      ?= .venv
PY        := $(VENV)/bin/python
NP        ?= 2
MPIEXEC   ?= $(shell command -v mpiexec.mpich || command -v mpiexec)
DEMO_DIR  ?= demo_output
# make mutants: seconds per job (4 jobs, so ~4x this in all) and which jobs
MUTANTS_BUDGET ?= 200
MUTANTS_JOBS   ?= cubefit,gridfit,sample,calibrate

.PHONY: setup test demo bench clean help docs mutants

help:
	@echo "make demo   - set up (first time: ~8 min) and run the cubefit demo under mpiexec -n $(NP)"
	@echo "make test   - set up and run the test suite"
	@echo "make setup  - only set up .venv (MPI + parallel HDF5 + mpi4py/h5py built from source)"
	@echo "make docs   - regenerate docs/config_reference.md and build the documentation site into site/ (mkdocs, strict)"
	@echo "make bench  - run the benchmarks in bench/ (minutes; prints ratios against the references)"
	@echo "make mutants - mutation testing of the science kernels, kill rate per job (~12 min on 2 cores:"
	@echo "               MUTANTS_BUDGET=$(MUTANTS_BUDGET) s per job; MUTANTS_JOBS=... to pick jobs; not part of make test)"

setup:
	@bash scripts/setup_env.sh

test: setup
	$(PY) -m pytest -q

demo: setup
	$(MPIEXEC) -n $(NP) $(VENV)/bin/hpcfit demo cubefit --output-dir $(DEMO_DIR)

bench: setup
	@bash bench/run_all.sh

mutants: setup
	$(PY) bench/mutants/run.py --budget $(MUTANTS_BUDGET) --jobs $(MUTANTS_JOBS)

clean:
	rm -rf $(DEMO_DIR) .pytest_cache site

# The documentation site (mkdocs.yml) in site/, strict: a warning or a broken link fails it. The config reference
# is regenerated first from the keys the engine and the jobs declare.
docs: setup
	$(VENV)/bin/hpcfit schema > docs/config_reference.md
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict --site-dir site
