# Set-up is part of every target: a fresh clone needs nothing but python3 (>= 3.10).
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test test-fast bench venv label-studio chromium clean

$(BIN)/g3d: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test,sfm,annotate]'
	touch $(BIN)/g3d

venv: $(BIN)/g3d

## The main job: 39 aligned views of cars from the built-in generator, then where to look.
demo: venv
	$(BIN)/g3d synth --class car --views 39 --out g3d-data/car

## Debian's Chromium, for the headless-browser test of g3d report (best effort: the test says how when it is missing).
chromium:
	@command -v chromium >/dev/null 2>&1 || { apt-get install -y -q chromium >/dev/null 2>&1 || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium >/dev/null 2>&1; }; } || echo "chromium not installed (needs apt-get as root): the g3d report test will say how"

## Label Studio server in its own environment (.venv-ls), for the annotate tests.
label-studio:
	bash scripts/label-studio-venv.sh

## The whole test suite, slow end-to-end tests included (what CI runs).
test: venv label-studio chromium
	$(BIN)/python -m pytest -q tests

## Only the fast tests.
test-fast: venv
	$(BIN)/python -m pytest -q -m "not slow" tests

bench: venv
	$(BIN)/python bench/synth.py

clean:
	rm -rf $(VENV) .venv-ls g3d-data
