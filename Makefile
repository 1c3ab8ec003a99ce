# Short names for what people type. On a fresh machine `make demo` and `make test` first build
# the virtual environment ($(VENV)) from pyproject.toml; CI passes its own VENV.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_BUNDLE ?= bundles/demo
DEMO_INT8 ?= $(DEMO_BUNDLE)-int8
DEMO_DB ?= sqlite:///./plant_icd.db
HOST ?= 127.0.0.1
PORT ?= 8000
# Where CodiEsp is read from; empty: $$PLANT_ICD_CODIESP, ../shared/codiesp, the download cache,
# else the public Zenodo record is downloaded. `make demo CODIESP=/data/codiesp` points elsewhere.
CODIESP ?=

.PHONY: install demo lint format typecheck architecture pytest test clean

$(BIN)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[serve,train,dev]'
	touch $@

install: $(BIN)/.installed

# The int8 copy of the demo bundle is served when `plant-icd quantize` keeps it (dev MAP within
# 0.005 of fp32; 20 seconds here); if it refuses, a marker stops it being tried again.
demo: $(BIN)/.installed
	@if [ -f $(DEMO_BUNDLE)/bundle.json ]; then \
		echo "using the existing demo bundle $(DEMO_BUNDLE) (delete it to retrain)"; \
	else \
		$(BIN)/plant-icd train --corpus codiesp --codes D --lang en --preset demo \
			--out $(DEMO_BUNDLE) $(if $(CODIESP),--path $(CODIESP)); \
	fi
	@if [ ! -f $(DEMO_INT8)/bundle.json ] && [ ! -f $(DEMO_BUNDLE)/.int8-refused ]; then \
		$(BIN)/plant-icd quantize $(DEMO_BUNDLE) $(DEMO_INT8) $(if $(CODIESP),--path $(CODIESP)) \
			|| { touch $(DEMO_BUNDLE)/.int8-refused; echo "serving the fp32 bundle"; }; \
	fi
	PLANT_ICD_DATABASE_URL=$(DEMO_DB) $(BIN)/plant-icd db upgrade
	PLANT_ICD_DATABASE_URL=$(DEMO_DB) \
		PLANT_ICD_BUNDLE_DIR=$$(if [ -f $(DEMO_INT8)/bundle.json ]; then echo $(DEMO_INT8); \
			else echo $(DEMO_BUNDLE); fi) \
		$(BIN)/plant-icd serve --host $(HOST) --port $(PORT)

lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(BIN)/.installed
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

typecheck: $(BIN)/.installed
	$(BIN)/mypy

# The layer contracts in pyproject.toml: service -/-> training, torch; model -/-> training, service;
# model outside model.nn -/-> torch.
architecture: $(BIN)/.installed
	$(BIN)/lint-imports --no-logo

pytest: $(BIN)/.installed
	$(BIN)/python -m pytest -q -p no:cacheprovider

test: lint typecheck architecture pytest

clean:
	rm -rf .mypy_cache .ruff_cache .pytest_cache .hypothesis .import_linter_cache build *.egg-info
