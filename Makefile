# Set-up is part of every target: a fresh clone needs nothing but python3 (>= 3.10).
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test test-fast bench venv clean

$(BIN)/g3d: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $(BIN)/g3d

venv: $(BIN)/g3d

## The main job: 39 aligned views of cars from the built-in generator, then where to look.
demo: venv
	$(BIN)/g3d synth --class car --views 39 --out g3d-data/car
	@echo "contact sheet: g3d-data/car/previews/contact_sheet.png"

## The whole test suite, slow end-to-end tests included (what CI runs).
test: venv
	$(BIN)/python -m pytest -q tests

## Only the fast tests.
test-fast: venv
	$(BIN)/python -m pytest -q -m "not slow" tests

bench: venv
	$(BIN)/python bench/synth.py

clean:
	rm -rf $(VENV) g3d-data
