# SpikeLink: `make demo` and `make test` are the whole quick start (see README.md).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# TORCH=cpu pins torch==2.13.0+cpu; TORCH=gpu keeps the CUDA torch already in $(VENV).
TORCH ?= cpu
STAMP := $(VENV)/.installed-$(TORCH)
SPIKINGJELLY := spikingjelly==0.0.0.0.14

.PHONY: install test test-fast test-all demo lint clean-venv

install: $(STAMP)

$(STAMP): pyproject.toml constraints-$(TORCH).txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -c constraints-$(TORCH).txt -e '.[dev]'
	$(BIN)/python -m pip install -q --no-deps $(SPIKINGJELLY)
	touch $@

test: install
	$(BIN)/python -m pytest -q

# The unit tests only (no process, training run or handler fuzzing): under a minute.
test-fast: install
	$(BIN)/python -m pytest -q -m 'not slow and not heavy'

test-all: install
	$(BIN)/python -m pytest -q -m ''

demo: install
	$(BIN)/spikelink demo

lint: install
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

clean-venv:
	rm -rf $(VENV)
