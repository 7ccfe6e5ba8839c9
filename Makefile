# amaqc — the two commands a newcomer needs: `make run` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup run test lint typecheck format bench clean

# torch/torchvision are pinned in pyproject.toml and installed with pip from the local mirror.
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --disable-pip-version-check -q -e '.[dev]'
	@touch $@

setup: $(STAMP)

run: setup
	@echo "amaqc $$($(BIN)/amaqc version): the HTTP service is not built yet (issue 4);"
	@echo "showing the model core that it will serve:"
	$(BIN)/amaqc models

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: setup
	$(BIN)/mypy

test: setup lint typecheck
	$(BIN)/python -m pytest

format: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: setup
	$(BIN)/python bench/inference.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
