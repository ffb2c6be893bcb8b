# The README's two commands: `make demo` runs the main job, `make test` runs the tests.
# Both (re)create the project-local environment in .venv first; with nothing changed that takes seconds.
.PHONY: setup demo test bench clean

VENV := .venv
PY := $(VENV)/bin/python

setup:
	@bash scripts/bootstrap.sh

demo: setup
	@$(VENV)/bin/isar-ros demo

test: setup
	@$(PY) -m pytest

bench: setup
	@$(PY) scripts/benchmark_core.py

clean:
	rm -rf build $(VENV)
