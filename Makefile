# wildscreen: `make serve` and `make test` are all a newcomer needs; `make help` lists the rest.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
SHARED ?= ../shared
HOST ?= 127.0.0.1
PORT ?= 50051
ARGS ?=

export WILDSCREEN_SHARED := $(abspath $(SHARED))

.DEFAULT_GOAL := help
.PHONY: help venv serve review test proto bench dataset cuda-pack train-default clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP) ## create .venv and install wildscreen with its dev tools

serve: $(STAMP) ## serve the current model in weights/ on 127.0.0.1:50051 (HOST=, PORT=, ARGS="--device cuda ...")
	$(VENV)/bin/wildscreen-serve --host $(HOST) --port $(PORT) --log-format text $(ARGS)

review: $(STAMP) ## serve the reviewer workbench on 127.0.0.1:8080 (data in review-data/; ARGS="--port 9000 ...")
	$(VENV)/bin/wildscreen-review serve $(ARGS)

test: $(STAMP) ## run the whole test suite
	$(PY) -m pytest $(ARGS)

proto: $(STAMP) ## regenerate the Python stubs in wildscreen/v1 from proto/
	$(PY) -m grpc_tools.protoc -I proto --python_out=. --pyi_out=. --grpc_python_out=. proto/wildscreen/v1/screening.proto

bench: $(STAMP) ## benchmark naive vs engine vs server; prints a table, writes bench/results.json
	$(PY) -m bench $(ARGS)

dataset: $(STAMP) ## build the default (v2) training set from ../shared (SHARED=) into data/default
	$(PY) -m training build-default --shared $(SHARED) --out data/default --proposer weights/v1.pt --v2 --composites 400 $(ARGS)

cuda-pack: $(STAMP) ## pack what training/recipes/cuda_v3.sh needs on a lent GPU into data/cuda-pack (~15 MB; after make dataset)
	$(PY) -m training.recipes.cuda_pack --out data/cuda-pack --shared $(SHARED) $(ARGS)

train-default: $(STAMP) ## remake the default model as weights/v1 was made (hours on a CPU)
	WILDSCREEN_SHARED=$(SHARED) training/recipes/default_v1.sh

clean: ## remove the venv and generated outputs (not weights/)
	rm -rf $(VENV) runs reports .pytest_cache
