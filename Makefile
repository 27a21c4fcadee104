# Two commands matter: `make demo` (the whole bot offline) and `make test` (what CI runs).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test lint demo run bench sandbox clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Reinstall only when the package definition changes.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy --strict bot services sandbox

test: lint
	$(BIN)/python -m pytest

demo: $(STAMP)
	$(BIN)/tiktok-bot demo

run: $(STAMP)
	$(BIN)/tiktok-bot run

sandbox: $(STAMP)
	$(BIN)/tiktok-bot sandbox

bench: $(STAMP)
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache demo-out
