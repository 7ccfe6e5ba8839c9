# amaqc — the two commands a newcomer needs: `make run` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup services browser dicom-tools run test lint typecheck format bench screenshots clean

# torch/torchvision are pinned in pyproject.toml and installed with pip from the local mirror.
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --disable-pip-version-check -q -e '.[dev]'
	@touch $@

setup: $(STAMP)

# PostgreSQL and Redis on 127.0.0.1 for the integration tests (started if down).
services:
	@bash .ci/services.sh

# Debian's Chromium for the browser tests (Playwright drives it; nothing is downloaded at test time).
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
browser:
	@test -x /usr/bin/chromium || { $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium || \
		{ $(SUDO) apt-get update -q && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; }; }

# DCMTK (storescp, dsrdump) and Orthanc: the real DICOM receivers of the PACS tests
# (tests/utils/dicom_nodes.py starts them on free ports; no system service is started).
dicom-tools:
	@{ test -x /usr/bin/storescp && test -x /usr/bin/dsrdump && test -x /usr/sbin/Orthanc; } || \
		{ $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q dcmtk orthanc || \
		{ $(SUDO) apt-get update -q && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q dcmtk orthanc; }; }

# The QC service on http://127.0.0.1:8000 with SQLite + a local broker under ./.amaqc
# (migrates, registers the served checkpoint, prints an admin key on first start; Ctrl-C stops).
run: setup
	$(BIN)/amaqc up

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# mypy --strict on model/, training/ and app/ ([tool.mypy] in pyproject.toml)
typecheck: setup
	$(BIN)/mypy

test: setup services browser dicom-tools lint typecheck
	$(BIN)/python -m pytest

format: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: setup
	$(BIN)/python bench/inference.py
	$(BIN)/python bench/train_speed.py
	$(BIN)/python bench/service.py

# Retake the README's UI screenshots (docs/img/ui-*.png): the served model on real MR slices
# (tests/app/test_screenshots.py; the first run fetches the test subject's package into .data/cache).
screenshots: setup browser
	AMAQC_SCREENSHOTS=1 $(BIN)/python -m pytest -q tests/app/test_screenshots.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
