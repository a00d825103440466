# Two commands: `make demo` and `make test`. Each creates .venv if it is missing and installs the package.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE ?= 1
export TRANSFORMERS_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false
export QUERIT_DATA ?= $(abspath ../shared/data)

.PHONY: demo test test-all install clean

$(BIN)/python:
	$(PY) -m venv $(VENV)

$(STAMP): $(BIN)/python setup.cfg pyproject.toml constraints.txt
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt torch==2.13.0
	$(BIN)/pip install -q -c constraints.txt -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/python examples/demo.py --data $(QUERIT_DATA)

test: $(STAMP)
	$(BIN)/python -m pytest -q -x --durations=15

test-all: $(STAMP)
	$(BIN)/python -m pytest -q -m "" --durations=25

clean:
	rm -rf $(VENV) .querit_cache
