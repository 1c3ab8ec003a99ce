# Short names for what people type. `make test` is what CI runs.
PYTHON ?= python
VENV ?= .venv
CODIESP ?= ../shared/codiesp

.PHONY: install lint format typecheck pytest test clean

install:
	$(PYTHON) -m pip install -e '.[serve,train,dev]'

lint:
	ruff check .
	ruff format --check .

format:
	ruff check --fix .
	ruff format .

typecheck:
	mypy

pytest:
	pytest -q -p no:cacheprovider

test: lint typecheck pytest

clean:
	rm -rf .mypy_cache .ruff_cache .pytest_cache build *.egg-info
