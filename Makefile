# Two set-up commands on a fresh machine: `make demo` and `make test`.
# Each creates .venv when it is missing (torch pinned to 2.13.0, the CPU build).
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
EXTRAS  ?= dev,hf,rg,lora

.PHONY: demo test test-slow test-distributed lint bench bench-lecture bench-scaling clean

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e ".[$(EXTRAS)]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/rlvr train --config configs/sort-toy.yaml --run-dir runs/demo
	$(BIN)/rlvr report runs/demo

test: $(STAMP)
	$(BIN)/python -m pytest -q -n 2

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

# Ray rollout actors and a 2-rank gloo DDP learner on this machine; installs the ray extra first.
test-distributed: $(STAMP)
	$(BIN)/pip install --quiet -e ".[ray,$(EXTRAS)]"
	$(BIN)/python -m pytest -q -m distributed

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks

# The whole benchmark matrix at HEAD (W1 at both betas vs TRL, generation vs HF generate, the rollout
# breakdown, W1 time to solution vs TRL, W2 SmolLM2 vs TRL), with a progress line and an ETA, then
# docs/performance.md's tables from its JSON (benchmarks/run_all.py; ~50 minutes on an idle 2-core machine). Installs the bench extra (trl) first.
bench: $(STAMP)
	$(BIN)/pip install --quiet -e ".[bench,$(EXTRAS)]"
	$(BIN)/python benchmarks/run_all.py

bench-lecture: $(STAMP)
	$(BIN)/python benchmarks/lecture_sort.py

bench-scaling: $(STAMP)
	$(BIN)/pip install --quiet -e ".[ray,$(EXTRAS)]"
	$(BIN)/python benchmarks/scaling.py

clean:
	rm -rf $(VENV) runs
