# microseg: two commands on a fresh machine, `make demo` and `make test`.
# The environment lives outside the clone, keyed by the lock file's hash, and is built
# only when that hash changes (see scripts/env.sh). Two lines: requirements.lock (pinned:
# pyarrow 14, numpy 1, Petastorm, Horovod) and requirements-dbr.lock (Databricks Runtime
# 17.3 LTS ML's versions): `make env-dbr`, `make test-dbr`, `make demo-dbr`.
SHELL := /bin/bash
MICROSEG_CACHE ?= $(HOME)/.cache/microseg
ENV_HASH := $(shell cat requirements.lock scripts/env.sh scripts/horovod-toolchain.cmake | sha256sum | cut -c1-12)
ENV_DIR := $(MICROSEG_CACHE)/env-$(ENV_HASH)
PY := $(ENV_DIR)/bin/python
DBR_HASH := $(shell cat requirements-dbr.lock scripts/env.sh | sha256sum | cut -c1-12)
DBR_ENV_DIR := $(MICROSEG_CACHE)/env-dbr-$(DBR_HASH)
DBR_PY := $(DBR_ENV_DIR)/bin/python
DELTA_VERSION := $(shell sed -n 's/^delta-spark==//p' requirements.lock)

export MICROSEG_JARS := $(MICROSEG_CACHE)/jars/delta-$(DELTA_VERSION)
export PYTHONPATH := $(CURDIR)/lib$(if $(PYTHONPATH),:$(PYTHONPATH))
export PYTHONWARNINGS := ignore::FutureWarning,ignore::DeprecationWarning
export SPARK_LOCAL_IP := 127.0.0.1
export OMP_NUM_THREADS ?= 1

CONF ?=
ARGS ?=

.PHONY: help env demo test run bench report reliability clean-lakehouse env-path env-dbr test-dbr test-dbr-ci demo-dbr bench-dbr

help:
	@echo "make demo   run the whole pipeline on the embedded default (local Spark, Delta, MLflow)"
	@echo "make test   run the test suite"
	@echo "make env    create the environment (once per lock-file hash) at $(ENV_DIR)"
	@echo "make env-dbr / test-dbr / demo-dbr / bench-dbr   the same on the Databricks Runtime 17.3 LTS ML line"
	@echo "make run STAGE=<name> [ARGS='--set model.epochs=2']   run one stage"
	@echo "make report evaluation report (HTML) for the embedded default, after make demo"
	@echo "make reliability  fault-injection harness (SIGKILL trials, concurrent ingests)"
	@echo "make bench  speed figures -> bench/results.json (ratios against a reference in the same run)"

env:
	@bash scripts/env.sh "$(ENV_DIR)" "$(MICROSEG_CACHE)"

env-path:
	@echo $(ENV_DIR)

env-dbr:
	@bash scripts/env.sh "$(DBR_ENV_DIR)" "$(MICROSEG_CACHE)" requirements-dbr.lock 0

test-dbr: env-dbr
	$(DBR_PY) -m pytest $(ARGS)

# CI's selection on the Databricks line: what depends on the library versions most (the
# stack, the loaders, training with 2 ranks, the model, the embedding UDF, the config).
# The end-to-end flow, evaluation and bundle tests are left to `make test-dbr` (everything):
# with the pinned suite and a cold build of both environments they would crowd CI's limit.
DBR_CI_TESTS := tests/test_stack.py tests/test_loader_arrow.py tests/test_training.py tests/test_model.py \
	tests/test_score.py tests/test_config.py
test-dbr-ci: env-dbr
	$(DBR_PY) -m pytest $(DBR_CI_TESTS) $(ARGS)

demo-dbr: env-dbr
	$(DBR_PY) -m microseg run --stage all $(ARGS)

bench-dbr: env-dbr
	$(DBR_PY) -m bench $(ARGS)

demo: env
	$(PY) -m microseg run --stage all $(ARGS)

run: env
	$(PY) -m microseg run --stage $(STAGE) $(ARGS)

test: env
	$(PY) -m pytest $(ARGS)

bench: env
	$(PY) -m bench $(ARGS)

COLES ?= 1
report: env   # with the optional CoLES peer (built once into the cache) unless COLES=0
	PYTHONPATH="$(PYTHONPATH)$(if $(filter 1,$(COLES)),:$$(B=$(PY) bash scripts/coles-env.sh))" $(PY) -m microseg report $(ARGS)

reliability: env
	$(PY) -m reliability $(ARGS)

clean-lakehouse:
	rm -rf lakehouse
