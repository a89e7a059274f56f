# Two set-up commands on a fresh machine: `make demo` and `make test`.
# Each creates .venv when it is missing (torch pinned to 2.13.0, the CPU build).
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
EXTRAS  ?= dev

.PHONY: demo test test-slow lint bench-lecture clean

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
	$(BIN)/python -m pytest -q

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks

bench-lecture: $(STAMP)
	$(BIN)/python benchmarks/lecture_sort.py

clean:
	rm -rf $(VENV) runs
