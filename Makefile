PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
LOCK := requirements.lock
LOCK_TOOL := /tmp/imgcls-lock-tool
UV_VERSION := 0.13.9
UV_DIR := $(VENV)/uv-tool
UV := $(UV_DIR)/bin/uv

.PHONY: run test test-fast lint install lock clean plots

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# The lock names every package with its hashes, so nothing is resolved here; imgcls itself is
# built with the locked setuptools rather than whatever setuptools is newest. uv installs the same
# files as pip, several times faster; it comes from PyPI through pip, into a folder of its own so
# the environment holds exactly the lock. uv reads none of pip's settings, so every find-links and
# index pip is configured with (files or PIP_* variables) is passed on, all indexes weighed alike
# as pip does: the hashes decide what is installed. The machine's constraint file is not passed
# (uv refuses a requirement without == under --require-hashes); `make lock` applied it to the lock.
# --compile-bytecode writes the .pyc files pip writes by default: without them, where
# PYTHONDONTWRITEBYTECODE is set, every process compiled torch's modules again at import. The
# editable install leaves imgcls itself as sources, so compileall does the same for src/ (a later
# edit only makes Python compile that module in memory again, as it did before).
$(STAMP): $(BIN)/python $(LOCK) pyproject.toml
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --upgrade --target $(UV_DIR) uv==$(UV_VERSION)
	sources=$$($(BIN)/python -m pip config list \
		| sed -n "s/^[^.]*\.\(find-links\|extra-index-url\|index-url\)='\(.*\)'$$/\1 \2/p" \
		| while read -r key values; do for value in $$values; do printf -- '--%s %s ' $$key $$value; done; done) && \
	$(UV) pip install --quiet --python $(BIN)/python --index-strategy unsafe-best-match $$sources \
		--require-hashes --no-deps --compile-bytecode -r $(LOCK)
	$(UV) pip install --quiet --python $(BIN)/python --no-deps --no-build-isolation -e .
	$(BIN)/python -m compileall -q src
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

# The edit loop: the unit tests, without the end-to-end runs of dvc, git and the stages, nor the slow ones.
test-fast: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest -m "not e2e and not slow"

# Versions already in the lock are kept unless pyproject.toml rules them out; every platform's
# wheel hashes are recorded. uv ignores pip's config, so a pip constraint file that caps what
# this machine can install (torch) is passed on explicitly.
lock:
	$(PYTHON) -m venv $(LOCK_TOOL)
	$(LOCK_TOOL)/bin/python -m pip install --quiet uv==$(UV_VERSION)
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
