# Set-up and everyday commands. `make demo` and `make test` work on a fresh machine:
# they create .venv if missing and install everything (torch pinned to the CPU wheel 2.13.0).
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
TORCH   := torch==2.13.0

.PHONY: install demo test test-slow test-wheel wheel lint format clean bench-personalize

$(BIN)/python:
	$(PY) -m venv $(VENV)

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet --disable-pip-version-check $(TORCH)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev,onnx,ray]' $(TORCH)
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/crop demo

test: $(STAMP)
	$(BIN)/python -m pytest

test-slow: $(STAMP)
	$(BIN)/python -m pytest -m slow

# The wheel built, installed with its dependencies (torch: the tested CPU build) in a fresh venv
# and run outside the repository (tests/test_wheel.py; also part of test-slow).
test-wheel: $(STAMP)
	$(BIN)/python -m pytest -m slow tests/test_wheel.py

wheel: $(STAMP)
	$(BIN)/python -m pip wheel --quiet --disable-pip-version-check --no-deps --no-build-isolation -w dist .

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

format: $(STAMP)
	$(BIN)/ruff format src tests benchmarks
	$(BIN)/ruff check --fix src tests benchmarks

bench-personalize: $(STAMP)
	$(BIN)/python benchmarks/personalize_one_user.py

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache
