# Two commands for a fresh machine with Python 3.11: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: demo test install install-test bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Stamp files make the installs idempotent; they are redone when pyproject.toml changes.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml $(VENV)/.installed
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

demo: install
	$(BIN)/flatsat demo

# the suite on PYTEST_WORKERS processes (pytest-xdist; 0: in this process), handed out two tests at a time in the
# order tests/conftest.py gives them (the longest first)
PYTEST_WORKERS ?= 2
# the sources are compiled first: where PYTHONDONTWRITEBYTECODE is set (as on this project's test machine), each
# of the suite's ~100 Python processes (boards, CLI runs) would otherwise compile them again (~0.2 s each)
test: install-test
	$(BIN)/python -m compileall -q emulator hil firmware_stubs tests
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist load --maxschedchunk 2 $(PYTEST_ARGS)

bench: install-test
	for b in bench/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis
	find emulator hil firmware_stubs tests -name __pycache__ -prune -exec rm -rf {} +
