# Two entry points for a fresh machine: `make quickstart` and `make test`. Both create the virtual
# environment on first use (torch from the machine's local wheel store when it has one) and reuse it after.
PYTHON ?= python3.11
VENV ?= $(HOME)/.cache/scaling-sweep/venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.scaling-sweep-installed

.PHONY: install quickstart test lint bench

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch first and alone, pinned: pip takes it from the local wheel store instead of downloading GBs
	$(BIN)/python -m pip install -q torch==2.14.1 torchvision==0.29.1 torchaudio==2.11.0
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

quickstart: $(STAMP)
	$(BIN)/scaling-sweep quickstart $(ARGS)

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q $(ARGS)

bench: $(STAMP)
	$(BIN)/python benchmarks/overhead.py
