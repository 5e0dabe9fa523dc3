PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
LOCK := requirements.lock
LOCK_TOOL := /tmp/imgcls-lock-tool

.PHONY: run test lint install lock clean plots

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# The lock names every package with its hashes, so nothing is resolved here; imgcls itself is
# built with the locked setuptools rather than whatever setuptools is newest.
$(STAMP): $(BIN)/python $(LOCK) pyproject.toml
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --require-hashes --no-deps -r $(LOCK)
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/dvc repro

# The code CI checks: lint first, so a style error fails fast, before the slow tests.
LINTED := src stages tests benchmarks

lint: $(STAMP)
	$(BIN)/ruff check $(LINTED)
	$(BIN)/ruff format --check $(LINTED)

test: lint
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest

# Versions already in the lock are kept unless pyproject.toml rules them out; every platform's
# wheel hashes are recorded. uv ignores pip's config, so a pip constraint file that caps what
# this machine can install (torch) is passed on explicitly.
lock:
	$(PYTHON) -m venv $(LOCK_TOOL)
	$(LOCK_TOOL)/bin/python -m pip install --quiet uv==0.13.9
	printf 'setuptools>=68\n' | $(LOCK_TOOL)/bin/uv pip compile pyproject.toml - --extra dev \
		--universal --python-version 3.11 --generate-hashes --custom-compile-command 'make lock' \
		$(addprefix --constraint ,$(wildcard /etc/xdg/pip/constraints.txt)) --output-file $(LOCK)
	rm -rf $(LOCK_TOOL)

# dvc's own plots page loads Vega from a CDN and stays blank offline; this template carries it inline.
PLOTS_TEMPLATE := data/plots_page.html

plots: $(STAMP)
	$(BIN)/python -m imgcls.evaluate.plots_page $(PLOTS_TEMPLATE)
	$(BIN)/dvc plots show --html-template $(PLOTS_TEMPLATE) -o dvc_plots

clean:
	rm -rf $(VENV)
